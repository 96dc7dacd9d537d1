"""The pytest plugin (django_dbos.testing): fixtures, the frozen clock, crashes and the replayer."""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from django_dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowStatusString,
)
from django_dbos.engine import clock
from django_dbos.models import Executor, OperationOutput, WorkflowStatus
from django_dbos.testing import (
    ReplayMismatch,
    assert_replays,
    crash_at_every_step,
    recover,
    replay,
    simulate_crash,
)
from testproject.shop.models import LedgerEntry

DAY = 24 * 3600
ran: Counter[str] = Counter()
order: list[str] = []
code = {"reordered": False, "extra_step": False}
held = threading.Event()

serial = Queue("testing-serial", concurrency=1)
plain = Queue("testing-plain")
limited = Queue("testing-limited", limiter={"limit": 2, "period": 60})


@pytest.fixture(autouse=True)
def _reset():
    ran.clear()
    order.clear()
    held.clear()
    yield
    held.set()


@DBOS.step()
def count(label: str) -> str:
    ran[label] += 1
    return label


@DBOS.transaction()
def book(reference: str) -> int:
    return LedgerEntry.objects.create(reference=reference, amount=1).pk


@DBOS.workflow()
def five_operations(reference: str) -> list[str]:
    """Five operations, the third a transaction: its row must exist once, whatever crashes."""
    done = [count("one"), count("two")]
    book(reference)
    return [*done, count("four"), count("five")]


@DBOS.workflow()
def three_day_trial(user: str) -> str:
    DBOS.sleep(3 * DAY)
    return count(f"trial of {user} ended")


@DBOS.workflow()
def nap_a_day(label: str) -> str:
    DBOS.sleep(DAY)
    return count(label)


@DBOS.workflow()
def wait_for_payment(hours: float) -> str | None:
    return DBOS.recv("payment", timeout_seconds=hours * 3600)


@DBOS.workflow()
def wait_for_event(workflow_id: str) -> str | None:
    return DBOS.get_event(workflow_id, "ready", timeout_seconds=DAY)


@DBOS.step()
def blocked_step() -> None:
    held.wait(30)


@DBOS.workflow()
def slow(label: str) -> str:
    blocked_step()
    return label


@DBOS.workflow()
def noted(label: str) -> str:
    order.append(label)
    return label


@DBOS.workflow()
def hourly(scheduled_time: datetime.datetime, context: object) -> str:
    return scheduled_time.isoformat()


@DBOS.step()
def create_account(user: str) -> str:
    return count(f"account {user}")


@DBOS.step()
def send_welcome(user: str) -> str:
    return count(f"welcome {user}")


@DBOS.step()
def send_survey(user: str) -> str:
    return count(f"survey {user}")


@DBOS.workflow()
def onboarding(user: str) -> list[str]:
    """Two steps, which the tests reorder (as a careless edit would) or follow with a third."""
    if code["reordered"]:
        steps = [send_welcome(user), create_account(user)]
    else:
        steps = [create_account(user), send_welcome(user)]
    if code["extra_step"]:
        steps.append(send_survey(user))
    return steps


@DBOS.workflow()
def patched_onboarding(user: str) -> list[str]:
    steps = [create_account(user)]
    if code["extra_step"] and DBOS.patch("survey"):
        steps.append(send_survey(user))
    return [*steps, send_welcome(user)]


@DBOS.step()
def refuse(label: str) -> None:
    raise ValueError(f"no {label}")


@DBOS.workflow()
def fails_at_step_two(label: str) -> str:
    count(label)
    refuse(label)
    return "unreachable"


@DBOS.workflow()
def writes_outside_a_step(reference: str) -> str:
    LedgerEntry.objects.create(reference=reference, amount=1)  # repeated by every recovery
    return count(reference)


# The dbos fixture ---------------------------------------------------------------------------


def test_dbos_is_the_facade_on_empty_system_tables(dbos):
    assert dbos is DBOS
    assert WorkflowStatus.objects.count() == 0
    assert Executor.objects.count() == 0


def test_a_test_may_end_with_a_workflow_still_waiting(dbos):
    handle = dbos.start_workflow(wait_for_payment, 24)
    while not OperationOutput.objects.filter(workflow_id=handle.workflow_id).exists():
        time.sleep(0.01)
    # The fixture cancels it at the end, so its thread stops at once (checked just below).


def test_nothing_is_left_running_from_the_test_before(dbos):
    assert not [t.name for t in threading.enumerate() if t.name.startswith("dbos-workflow")]
    assert WorkflowStatus.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_fixture_goes_with_a_transactional_django_db_mark(dbos):
    assert five_operations("marked") == ["one", "two", "four", "five"]
    assert LedgerEntry.objects.filter(reference="marked").count() == 1


# The frozen clock ---------------------------------------------------------------------------


def test_a_three_day_sleep_passes_in_no_time(dbos, dbos_clock):
    began = time.monotonic()
    with dbos_clock.frozen() as frozen:
        start = frozen.now()
        handle = dbos.start_workflow(three_day_trial, "ada")
        frozen.advance(days=2)
        assert handle.get_status().status == WorkflowStatusString.PENDING
        frozen.advance(days=1)
        assert handle.get_result(timeout=5) == "trial of ada ended"
    elapsed = time.monotonic() - began

    assert elapsed < 1, f"a three-day sleep took {elapsed:.3f} s"
    (sleep, _) = DBOS.list_workflow_steps(handle.workflow_id)
    assert sleep.output == (start + datetime.timedelta(days=3)).timestamp()


def test_the_engine_is_back_on_the_real_clock_after_the_block(dbos, dbos_clock):
    with dbos_clock.frozen(at=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)):
        assert clock.now() == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
        dbos_clock.advance(hours=1)
        assert clock.now().hour == 1
    assert clock.installed() is None
    assert abs(clock.time() - time.time()) < 1
    with pytest.raises(RuntimeError, match="frozen"):
        dbos_clock.advance(days=1)


def test_recv_and_get_event_time_out_when_the_clock_passes_their_deadline(dbos, dbos_clock):
    with dbos_clock.frozen():
        payment = dbos.start_workflow(wait_for_payment, 2)
        event = dbos.start_workflow(wait_for_event, payment.workflow_id)
        dbos_clock.advance(hours=1)
        dbos.send(payment.workflow_id, "paid", topic="payment")
        assert payment.get_result(timeout=5) == "paid"

        late = dbos.start_workflow(wait_for_payment, 2)
        dbos_clock.advance(hours=2)
        assert late.get_result(timeout=5) is None
        assert event.get_status().status == WorkflowStatusString.PENDING
        dbos_clock.advance(days=1)
        assert event.get_result(timeout=5) is None


def test_a_workflow_timeout_passes_with_the_clock_even_in_a_step(dbos, dbos_clock):
    with dbos_clock.frozen():
        with SetWorkflowTimeout(3600):
            waiting = dbos.start_workflow(wait_for_payment, 24)
            busy = dbos.start_workflow(slow, "busy")
        dbos_clock.advance(minutes=59)
        assert waiting.get_status().status == WorkflowStatusString.PENDING
        dbos_clock.advance(minutes=1)

        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            waiting.get_result(timeout=5)
        assert busy.get_status().status == WorkflowStatusString.CANCELLED  # still in its step
        held.set()
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            busy.get_result(timeout=5)


def test_a_delayed_enqueue_waits_for_the_clock(dbos, dbos_worker, dbos_clock):
    with dbos_clock.frozen():
        with SetEnqueueOptions(delay_seconds=3600):
            later = plain.enqueue(noted, "later")
        now = plain.enqueue(noted, "now")

        assert [h.workflow_id for h in dbos_worker.drain()] == [now.workflow_id]
        dbos_clock.advance(minutes=59)
        assert dbos_worker.drain() == []
        dbos_clock.advance(minutes=1)
        assert [h.workflow_id for h in dbos_worker.drain()] == [later.workflow_id]
    assert order == ["now", "later"]


def test_drain_leaves_a_queued_workflow_asleep_until_the_clock_moves(dbos, dbos_worker, dbos_clock):
    with dbos_clock.frozen():
        handle = plain.enqueue(nap_a_day, "napper")

        assert dbos_worker.drain(timeout=5) == []
        assert handle.get_status().status == WorkflowStatusString.PENDING
        dbos_clock.advance(days=1)
        assert [h.workflow_id for h in dbos_worker.drain()] == [handle.workflow_id]
    assert ran == {"napper": 1}


def test_a_rate_limit_counts_clock_time(dbos, dbos_worker, dbos_clock):
    with dbos_clock.frozen():
        handles = [limited.enqueue(noted, f"r{i}") for i in range(3)]

        with pytest.raises(TimeoutError, match="frozen"):
            dbos_worker.drain(timeout=1)
        assert sorted(order) == ["r0", "r1"]
        dbos_clock.advance(minutes=1)
        dbos_worker.drain()
    assert [h.get_result(timeout=5) for h in handles] == ["r0", "r1", "r2"]


def test_cron_ticks_fire_for_the_time_that_passed(dbos, dbos_worker, dbos_clock):
    with dbos_clock.frozen(at=datetime.datetime(2030, 1, 1, 0, 30, tzinfo=datetime.UTC)):
        DBOS.create_schedule(schedule_name="hourly", workflow_fn=hourly, schedule="0 * * * *")
        assert dbos_worker.drain() == []
        dbos_clock.advance(hours=3)
        results = [handle.get_result() for handle in dbos_worker.drain()]

    assert sorted(results) == [f"2030-01-01T0{hour}:00:00+00:00" for hour in (1, 2, 3)]


# The in-process worker ----------------------------------------------------------------------


def test_a_queue_of_concurrency_one_drains_in_order(dbos, dbos_worker):
    enqueued = [serial.enqueue(noted, f"w{i}") for i in range(5)]

    finished = dbos_worker.drain()

    assert [h.workflow_id for h in finished] == [h.workflow_id for h in enqueued]
    assert [h.get_result() for h in finished] == ["w0", "w1", "w2", "w3", "w4"]
    assert order == ["w0", "w1", "w2", "w3", "w4"]
    assert dbos_worker.drain() == []  # each finished workflow is returned once


def test_drain_runs_children_enqueued_by_drained_workflows(dbos, dbos_worker):
    plain.enqueue(fan_out, 3)

    finished = dbos_worker.drain()

    assert len(finished) == 4
    assert sorted(order) == ["child 0", "child 1", "child 2"]


@DBOS.workflow()
def fan_out(children: int) -> int:
    for number in range(children):
        plain.enqueue(noted, f"child {number}")
    return children


def test_drain_says_what_is_still_busy_when_it_times_out(dbos, dbos_worker):
    stuck = plain.enqueue(slow, "stuck")

    with pytest.raises(TimeoutError, match=stuck.workflow_id):
        dbos_worker.drain(timeout=0.5)
    held.set()
    assert [h.workflow_id for h in dbos_worker.drain()] == [stuck.workflow_id]


# Crashes ------------------------------------------------------------------------------------


def test_a_crash_after_a_step_leaves_the_workflow_pending_until_recovery(dbos):
    handle = simulate_crash(five_operations, "crash-2", at_step=2)

    status = handle.get_status()
    assert status.status == WorkflowStatusString.PENDING
    assert [s.function_id for s in DBOS.list_workflow_steps(handle.workflow_id)] == [1, 2]
    assert ran == {"one": 1, "two": 1}

    assert [h.workflow_id for h in recover()] == [handle.workflow_id]
    assert handle.get_result(timeout=10) == ["one", "two", "four", "five"]
    assert ran == {"one": 1, "two": 1, "four": 1, "five": 1}  # steps 1 and 2 did not run again
    assert handle.get_status().recovery_attempts == 1
    assert LedgerEntry.objects.filter(reference="crash-2").count() == 1


def test_a_crash_after_the_last_step_happens_before_the_outcome_is_recorded(dbos):
    with SetWorkflowID("last-step"):
        handle = simulate_crash(five_operations, "last", at_step=5)

    assert handle.workflow_id == "last-step"
    assert handle.get_status().status == WorkflowStatusString.PENDING
    recover()
    assert handle.get_result(timeout=10) == ["one", "two", "four", "five"]
    assert ran == {"one": 1, "two": 1, "four": 1, "five": 1}


def test_a_crash_past_the_last_step_is_refused(dbos):
    with pytest.raises(ValueError, match="only 5 operations"):
        simulate_crash(five_operations, "too-far", at_step=6)


def test_a_crash_in_a_durable_sleep_recovers_into_the_rest_of_the_sleep(dbos, dbos_clock):
    with dbos_clock.frozen():
        handle = simulate_crash(three_day_trial, "bob", at_step=1)  # dies asleep
        dbos_clock.advance(days=1)
        recover()
        dbos_clock.advance(days=1)
        assert handle.get_status().status == WorkflowStatusString.PENDING
        dbos_clock.advance(days=1)
        assert handle.get_result(timeout=5) == "trial of bob ended"


def test_crash_at_every_step_books_the_transaction_once_each_time(dbos):
    def booked() -> int:
        return LedgerEntry.objects.filter(reference="every-step").count()

    runs = crash_at_every_step(
        five_operations,
        "every-step",
        reset=lambda: LedgerEntry.objects.filter(reference="every-step").delete(),
        end_state=booked,
    )

    assert [run.at_step for run in runs] == [-1, 0, 1, 2, 3, 4, 5]
    assert [run.end_state for run in runs] == [1] * 7
    assert {run.at_step: run.operation for run in runs}[3] == book.__dbos__.name
    assert all(run.outcome == ("returned", ["one", "two", "four", "five"]) for run in runs)


def test_crash_at_every_step_holds_for_a_workflow_that_fails(dbos):
    runs = crash_at_every_step(fails_at_step_two, "entry")

    assert [run.at_step for run in runs] == [-1, 0, 1, 2]
    assert all(run.outcome == ("raised", "ValueError: no entry") for run in runs)
    assert ran == {"entry": 4}  # once per run: a recovery never runs a recorded step again


def test_crash_at_every_step_catches_a_write_outside_any_step(dbos):
    with pytest.raises(AssertionError, match=r"A crash at start .* changed its end state"):
        crash_at_every_step(
            writes_outside_a_step,
            "outside",
            reset=lambda: LedgerEntry.objects.filter(reference="outside").delete(),
            end_state=lambda: LedgerEntry.objects.filter(reference="outside").count(),
        )


# The replayer -------------------------------------------------------------------------------


def test_unchanged_code_replays_without_running_a_step(dbos):
    with SetWorkflowID("onboard-1"):
        onboarding("ada")
    ran.clear()

    found = assert_replays("onboard-1")

    assert found.ok and found.replayed == found.recorded
    assert ran == {}


def test_a_reordered_step_is_rejected_with_the_difference(dbos, monkeypatch):
    with SetWorkflowID("onboard-2"):
        onboarding("ada")
    monkeypatch.setitem(code, "reordered", True)

    with pytest.raises(ReplayMismatch) as failure:
        assert_replays("onboard-2")

    report = str(failure.value)
    assert "operation 1" in report
    assert ">>    1" in report
    assert f"{create_account.__dbos__.name}  {send_welcome.__dbos__.name}" in report
    assert "DBOS.patch" in report
    assert ran == {"account ada": 1, "welcome ada": 1}  # the replay ran nothing


def test_a_step_added_after_the_end_of_a_finished_workflow_is_rejected(dbos, monkeypatch):
    with SetWorkflowID("onboard-3"):
        onboarding("ada")
    monkeypatch.setitem(code, "extra_step", True)

    found = replay("onboard-3")

    assert not found.ok
    assert found.mismatch == 3
    assert "ended" in found.reason


def test_a_patched_change_replays(dbos, monkeypatch):
    with SetWorkflowID("onboard-4"):
        patched_onboarding("ada")
    monkeypatch.setitem(code, "extra_step", True)

    assert_replays("onboard-4")


def test_a_pending_workflow_replays_up_to_where_it_is(dbos, dbos_clock):
    with dbos_clock.frozen():
        handle = dbos.start_workflow(three_day_trial, "carl")
        dbos_clock.settle()
        assert assert_replays(handle.workflow_id).ok


def test_manage_py_dbos_workflow_replay(dbos, monkeypatch, capsys):
    with SetWorkflowID("onboard-5"):
        onboarding("ada")

    call_command("dbos", "workflow", "replay", "onboard-5")
    assert "replays on the current code: 2 operations match" in capsys.readouterr().out

    monkeypatch.setitem(code, "reordered", True)
    with pytest.raises(CommandError, match="does not replay"):
        call_command("dbos", "workflow", "replay", "onboard-5")
