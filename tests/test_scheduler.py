"""Cron schedules: one run per tick across workers, pause, edits, backfill, bad expressions."""

from __future__ import annotations

import datetime
import itertools
import time

import pytest
from django.core import checks

from django_dbos import (
    DBOS,
    DBOSConfigurationError,
    DBOSInvalidArgumentError,
    DBOSNotRegisteredError,
)
from django_dbos.engine import registry
from django_dbos.models import Schedule, WorkflowStatus
from testproject.shop.workflows import scheduled_tick

from .conftest import Processes, wait_until
from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

TICK = scheduled_tick.__dbos__.name
seen: list[tuple[datetime.datetime, datetime.datetime]] = []


@DBOS.workflow()
def every_second(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> str:
    seen.append((scheduled_time, actual_time))
    return scheduled_time.isoformat()


def runs_of(schedule_name: str) -> list[str]:
    prefix = f"sched-{schedule_name}-"
    return sorted(
        WorkflowStatus.objects.filter(workflow_id__startswith=prefix).values_list(
            "workflow_id", flat=True
        )
    )


def wait_for_runs(schedule_name: str, count: int, timeout: float = 15) -> list[str]:
    wait_until(lambda: len(runs_of(schedule_name)) >= count, timeout, f"{count} runs")
    return runs_of(schedule_name)


@pytest.fixture
def code_schedules(monkeypatch):
    """Schedules declared with @DBOS.scheduled during the test only (other tests' in-process
    workers must not fire them)."""
    monkeypatch.setattr(registry, "_schedules", {})


def test_two_workers_run_each_tick_of_a_code_schedule_once(code_schedules):
    DBOS.scheduled("* * * * * *")(every_second)
    seen.clear()
    with running_worker(), running_worker():
        time.sleep(3.5)

    runs = runs_of(every_second.__dbos__.name)
    assert len(runs) >= 3
    assert len(runs) == len(set(runs))
    scheduled = [when for when, _ in seen]
    assert len(scheduled) == len(set(scheduled)), "a tick ran twice"
    for scheduled_time, actual_time in seen:
        assert scheduled_time.tzinfo is not None and scheduled_time.microsecond == 0
        assert datetime.timedelta(0) <= actual_time - scheduled_time < datetime.timedelta(seconds=1)


def test_two_worker_processes_run_each_tick_once(processes: Processes):
    DBOS.create_schedule(
        schedule_name="every-second", workflow_fn=scheduled_tick, schedule="* * * * * *"
    )
    processes.worker()
    processes.worker()

    runs = wait_for_runs("every-second", 5, timeout=30)
    time.sleep(1)
    runs = runs_of("every-second")

    assert len(runs) == len(set(runs))
    ticks = sorted(datetime.datetime.fromisoformat(run.split("-", 3)[-1]) for run in runs)
    assert all(
        later - earlier == datetime.timedelta(seconds=1)
        for earlier, later in itertools.pairwise(ticks)
    )
    assert all(DBOS.retrieve_workflow(run).get_result(timeout=10) for run in runs)
    assert Schedule.objects.get(name="every-second").last_fired_at >= ticks[-2]


def test_a_paused_schedule_fires_no_more_ticks():
    DBOS.create_schedule(
        schedule_name="pausable", workflow_fn=scheduled_tick, schedule="* * * * * *"
    )
    with running_worker(scheduler=True):
        wait_for_runs("pausable", 1)
        DBOS.pause_schedule("pausable")
        time.sleep(2.5)  # the worker reads schedules every 2 s
        paused_at = len(runs_of("pausable"))
        time.sleep(2)
        assert len(runs_of("pausable")) == paused_at
        assert DBOS.get_schedule("pausable").status == "PAUSED"
        DBOS.resume_schedule("pausable")
        wait_for_runs("pausable", paused_at + 1)


def test_an_edited_schedule_is_picked_up_without_a_restart(admin_client):
    DBOS.create_schedule(schedule_name="editable", workflow_fn=scheduled_tick, schedule="0 0 1 1 *")
    schedule = Schedule.objects.get(name="editable")
    with running_worker():
        time.sleep(1)
        assert runs_of("editable") == []
        response = admin_client.post(
            f"/admin/django_dbos/schedule/{schedule.pk}/change/",
            {
                "name": "editable",
                "workflow_name": TICK,
                "cron": "* * * * * *",
                "timezone": "",
                "status": "ACTIVE",
                "context": "null",
                "queue_name": "",
            },
        )
        assert response.status_code == 302
        wait_for_runs("editable", 2)


def test_backfill_enqueues_exactly_the_missed_ticks_once():
    DBOS.create_schedule(schedule_name="hourly", workflow_fn=scheduled_tick, schedule="0 * * * *")
    start = datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.UTC)
    end = datetime.datetime(2026, 1, 1, 5, 30, tzinfo=datetime.UTC)

    first = DBOS.backfill_schedule("hourly", start, end)
    again = DBOS.backfill_schedule("hourly", start, end)

    assert [h.workflow_id for h in first] == [h.workflow_id for h in again]
    assert runs_of("hourly") == sorted(
        f"sched-hourly-2026-01-01T0{hour}:00:00+00:00" for hour in range(6)
    )
    with running_worker(scheduler=False):
        results = [handle.get_result(timeout=15) for handle in first]
    assert results == [f"2026-01-01T0{hour}:00:00+00:00" for hour in range(6)]


def test_a_worker_start_backfills_ticks_missed_since_the_last_one():
    DBOS.create_schedule(
        schedule_name="catch-up",
        workflow_fn=scheduled_tick,
        schedule="*/10 * * * *",
        automatic_backfill=True,
    )
    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(
        second=0, microsecond=0
    ) - datetime.timedelta(hours=1)
    Schedule.objects.filter(name="catch-up").update(last_fired_at=an_hour_ago)

    with running_worker():
        runs = wait_for_runs("catch-up", 6)
    with running_worker():  # a second start backfills nothing new
        time.sleep(1)

    assert runs_of("catch-up") == runs
    assert len(runs) in (6, 7)  # the ticks of the last hour, and perhaps the current one


def test_trigger_runs_a_schedule_now():
    DBOS.create_schedule(
        schedule_name="on-demand",
        workflow_fn=scheduled_tick,
        schedule="0 0 1 1 *",
        context={"a": 1},
    )
    handle = DBOS.trigger_schedule("on-demand")

    with running_worker(scheduler=False):
        assert handle.get_result(timeout=15).startswith(
            str(datetime.datetime.now(datetime.UTC).year)
        )


def test_schedules_are_listed_and_deleted():
    DBOS.create_schedule(schedule_name="a-one", workflow_fn=scheduled_tick, schedule="* * * * *")
    DBOS.create_schedule(
        schedule_name="b-two", workflow_fn=scheduled_tick, schedule="* * * * *", context=[1]
    )
    DBOS.pause_schedule("b-two")

    assert [s.schedule_name for s in DBOS.list_schedules()] == ["a-one", "b-two"]
    assert [s.schedule_name for s in DBOS.list_schedules(status="PAUSED")] == ["b-two"]
    assert [s.schedule_name for s in DBOS.list_schedules(schedule_name_prefix="a-")] == ["a-one"]
    assert DBOS.get_schedule("b-two").context == [1]
    DBOS.delete_schedule("a-one")
    assert DBOS.get_schedule("a-one") is None
    with pytest.raises(DBOSNotRegisteredError):
        DBOS.pause_schedule("a-one")


@pytest.mark.parametrize("cron", ["nope", "* * *", "61 * * * * *", "* * * * * * *"])
def test_a_bad_cron_is_refused_by_the_api_and_nothing_is_saved(cron):
    with pytest.raises(DBOSInvalidArgumentError, match="cron"):
        DBOS.create_schedule(schedule_name="bad", workflow_fn=scheduled_tick, schedule=cron)
    assert not Schedule.objects.exists()


def test_a_bad_time_zone_or_a_taken_name_is_refused():
    with pytest.raises(DBOSInvalidArgumentError, match="time zone"):
        DBOS.create_schedule(
            schedule_name="tz",
            workflow_fn=scheduled_tick,
            schedule="* * * * *",
            cron_timezone="Mars/Base",
        )
    DBOS.create_schedule(schedule_name="taken", workflow_fn=scheduled_tick, schedule="* * * * *")
    with pytest.raises(DBOSConfigurationError, match="exists"):
        DBOS.create_schedule(
            schedule_name="taken", workflow_fn=scheduled_tick, schedule="0 * * * *"
        )
    assert Schedule.objects.count() == 1


def test_a_bad_cron_is_a_validation_error_in_the_admin(admin_client):
    response = admin_client.post(
        "/admin/django_dbos/schedule/add/",
        {
            "name": "bad",
            "workflow_name": TICK,
            "cron": "every minute",
            "status": "ACTIVE",
            "context": "null",
        },
    )

    assert response.status_code == 200
    assert "&#x27;every minute&#x27; has 2 fields" in response.content.decode()
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("broken", "action", "error"),
    [
        ({"cron": "every minute"}, "run_now", "'every minute' has 2 fields"),
        ({"cron": "every minute"}, "backfill_missed_ticks", "'every minute' has 2 fields"),
        ({"workflow_name": "gone.workflow"}, "run_now", "gone.workflow"),
    ],
)
def test_a_schedule_action_that_is_refused_says_why(admin_client, broken, action, error):
    """A row broken behind the admin's back (a bad cron, a workflow removed from the code)."""
    for name in ("broken", "fine"):
        DBOS.create_schedule(schedule_name=name, workflow_fn=scheduled_tick, schedule="0 * * * *")
    Schedule.objects.filter(name="broken").update(**broken)
    selected = list(Schedule.objects.order_by("name").values_list("pk", flat=True))

    response = admin_client.post(
        "/admin/django_dbos/schedule/",
        {"action": action, "_selected_action": selected},
        follow=True,
    )

    assert response.status_code == 200
    [refusal, summary] = [str(message) for message in response.context["messages"]]
    assert refusal.startswith("broken: ")
    assert error in refusal
    assert summary.endswith(" 1 schedule(s).")  # the other one was done


def test_a_bad_cron_in_code_is_a_system_check_error(code_schedules):
    DBOS.scheduled("61 25 * * *")(every_second)

    errors = [e for e in checks.run_checks(databases=[]) if e.id == "django_dbos.E009"]

    assert len(errors) == 1
    assert every_second.__dbos__.name in errors[0].msg
    assert "61 25 * * *" in errors[0].msg


def test_scheduled_must_decorate_a_workflow():
    with pytest.raises(DBOSConfigurationError, match=r"@DBOS\.workflow"):

        @DBOS.scheduled("* * * * *")
        def not_a_workflow(scheduled_time, actual_time) -> None: ...
