"""Parked waits: a workflow waiting long in sleep, recv or get_event gives its thread back, and
runs again from the start, replaying what it recorded, when woken."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.checks import run_checks

from django_dbos import DBOS, SetWorkflowID, WorkflowStatusString
from django_dbos.engine import executor, parking
from django_dbos.errors import DBOSAwaitedWorkflowCancelledError
from django_dbos.models import WorkflowStatus
from testproject.shop.workflows import fleet, journal_until_message

from .conftest import Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# How often each step really ran, by label: replay must never run a recorded step again.
ran: Counter[str] = Counter()
ran_lock = threading.Lock()


@pytest.fixture(autouse=True)
def _park_fast(settings) -> Iterator[None]:
    settings.DBOS = {**settings.DBOS, "PARK_WAITS_OVER_SECONDS": 0.2, "WORKFLOW_THREADS": 4}
    ran.clear()
    yield


@DBOS.step()
def count(label: str) -> str:
    with ran_lock:
        ran[label] += 1
    return label


@DBOS.workflow()
def wait_for_message(name: str) -> str:
    count(f"{name} before")
    message = DBOS.recv("go", timeout_seconds=3600)
    count(f"{name} after")
    return f"{name} got {message}"


@DBOS.workflow()
def nap_then_count(seconds: float) -> None:
    count("before nap")
    DBOS.sleep(seconds)
    count("after nap")


@DBOS.workflow()
def wait_for_event(publisher_id: str) -> object:
    count("before event")
    value = DBOS.get_event(publisher_id, "ready", timeout_seconds=3600)
    count("after event")
    return value


@DBOS.workflow()
def publish(value: str) -> None:
    DBOS.set_event("ready", value)


@DBOS.workflow()
def short_wait() -> object:
    return DBOS.recv("never", timeout_seconds=0.1)


cleanups: list[str] = []


@DBOS.workflow()
def wait_with_cleanup() -> object:
    try:
        return DBOS.recv("go", timeout_seconds=3600)
    except Exception:  # a user's broad except must not swallow the engine's unwinding
        cleanups.append("swallowed")
        raise
    finally:
        cleanups.append("finally")


def parked_row(workflow_id: str, timeout: float = 30) -> WorkflowStatus:
    return wait_until(
        lambda: WorkflowStatus.objects.filter(workflow_id=workflow_id).exclude(waiting="").first(),
        timeout=timeout,
        what=f"workflow {workflow_id} to park",
    )


def is_parked(workflow_id: str) -> bool:
    return workflow_id in parking.current().workflow_ids()


def test_a_workflow_waiting_a_message_parks_and_resumes_when_it_arrives():
    handle = DBOS.start_workflow(wait_for_message, "alice")
    row = parked_row(handle.workflow_id)
    assert row.status == WorkflowStatusString.PENDING.value
    assert row.waiting == "waiting for a message on topic 'go'"
    assert row.wake_at is not None
    assert is_parked(handle.workflow_id)
    wait_until(lambda: executor.current().pool.busy == 0, what="its thread to be given back")

    DBOS.send(handle.workflow_id, "a parcel", topic="go")

    assert handle.get_result(timeout=10) == "alice got a parcel"
    assert ran == {"alice before": 1, "alice after": 1}
    row = WorkflowStatus.objects.get(workflow_id=handle.workflow_id)
    assert (row.status, row.waiting, row.wake_at) == ("SUCCESS", "", None)
    assert not is_parked(handle.workflow_id)


def test_a_message_sent_right_after_the_start_is_received_parked_or_not(settings):
    settings.DBOS = {**settings.DBOS, "PARK_WAITS_OVER_SECONDS": 0}
    with SetWorkflowID("early-bird"):
        handle = DBOS.start_workflow(wait_for_message, "bob")
    DBOS.send("early-bird", 1, topic="go")
    assert handle.get_result(timeout=10) == "bob got 1"
    assert ran == {"bob before": 1, "bob after": 1}


def test_a_parked_sleep_wakes_at_its_time_and_runs_each_step_once():
    began = time.monotonic()
    handle = DBOS.start_workflow(nap_then_count, 1.0)
    row = parked_row(handle.workflow_id)
    assert row.waiting.startswith("sleeping until ")
    assert is_parked(handle.workflow_id)

    handle.get_result(timeout=10)

    assert 1.0 <= time.monotonic() - began < 5
    assert ran == {"before nap": 1, "after nap": 1}


def test_a_parked_get_event_resumes_when_the_event_is_set():
    handle = DBOS.start_workflow(wait_for_event, "publisher")
    row = parked_row(handle.workflow_id)
    assert row.waiting == "waiting for event 'ready' of workflow publisher"

    with SetWorkflowID("publisher"):
        DBOS.start_workflow(publish, "green").get_result(timeout=10)

    assert handle.get_result(timeout=10) == "green"
    assert ran == {"before event": 1, "after event": 1}


def test_cancelling_a_parked_workflow_ends_it_cancelled():
    handle = DBOS.start_workflow(wait_for_message, "carol")
    parked_row(handle.workflow_id)

    DBOS.cancel_workflow(handle.workflow_id)

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    wait_until(lambda: not is_parked(handle.workflow_id), what="the lot to forget it")
    assert WorkflowStatus.objects.get(workflow_id=handle.workflow_id).status == "CANCELLED"
    assert ran == {"carol before": 1}


def test_two_hundred_waiting_workflows_hold_no_more_threads_than_the_pool():
    handles = [DBOS.start_workflow(wait_for_message, f"w{i}") for i in range(200)]
    wait_until(lambda: len(parking.current()) == 200, timeout=60, what="all 200 workflows to park")
    pool = executor.current().pool
    assert pool.max_threads == 4
    assert len(pool._threads) <= 4

    for i, handle in enumerate(handles):
        DBOS.send(handle.workflow_id, i, topic="go")

    assert [handle.get_result(timeout=60) for handle in handles] == [
        f"w{i} got {i}" for i in range(200)
    ]
    assert set(ran.values()) == {1}
    assert len(ran) == 400
    assert len(parking.current()) == 0


def test_a_short_wait_keeps_its_thread():
    handle = DBOS.start_workflow(short_wait)
    assert handle.get_result(timeout=10) is None
    assert WorkflowStatus.objects.get(workflow_id=handle.workflow_id).waiting == ""


def test_a_workflow_called_inline_waits_on_its_callers_thread():
    workflow_id = "inline-waiter"

    def send_soon() -> None:
        wait_until(
            lambda: WorkflowStatus.objects.filter(workflow_id=workflow_id).exists(),
            what="the inline workflow to start",
        )
        time.sleep(0.3)
        DBOS.send(workflow_id, "hand-delivered", topic="go")

    sender = threading.Thread(target=send_soon)
    sender.start()
    with SetWorkflowID(workflow_id):
        assert wait_for_message("dave") == "dave got hand-delivered"
    sender.join()
    assert ran == {"dave before": 1, "dave after": 1}


def test_parking_unwinds_the_body_past_a_broad_except_but_runs_finally():
    cleanups.clear()
    handle = DBOS.start_workflow(wait_with_cleanup)
    parked_row(handle.workflow_id)
    wait_until(lambda: cleanups == ["finally"], what="the body to unwind")

    DBOS.send(handle.workflow_id, "done", topic="go")

    assert handle.get_result(timeout=10) == "done"
    assert cleanups == ["finally", "finally"]


def test_parking_can_be_turned_off(settings):
    settings.DBOS = {**settings.DBOS, "PARK_WAITS_OVER_SECONDS": None}
    handle = DBOS.start_workflow(wait_for_message, "erin")
    wait_until(lambda: ran["erin before"], what="the workflow to wait")
    time.sleep(0.3)
    assert not is_parked(handle.workflow_id)
    assert executor.current().pool.busy == 1
    DBOS.send(handle.workflow_id, "x", topic="go")
    assert handle.get_result(timeout=10) == "erin got x"


@pytest.mark.parametrize("value", [-1, "soon", True])
def test_a_bad_threshold_is_reported_by_the_system_checks(settings, value):
    settings.DBOS = {**settings.DBOS, "PARK_WAITS_OVER_SECONDS": value}
    errors = [error for error in run_checks(databases=[]) if error.id == "django_dbos.E010"]
    assert len(errors) == 1
    assert "PARK_WAITS_OVER_SECONDS" in errors[0].msg


def test_a_parked_workflow_survives_kill_9_of_its_worker(processes: Processes, tmp_path: Path):
    journal = tmp_path / "journal.txt"
    handle = fleet.enqueue(journal_until_message, str(journal))
    first = processes.worker()
    row = parked_row(handle.workflow_id, timeout=60)
    first_executor = row.executor_id
    assert journal.read_text().splitlines() == ["before"]

    first.send_signal(signal.SIGKILL)
    first.wait(10)
    processes.worker()
    wait_until(
        lambda: (
            WorkflowStatus.objects.filter(workflow_id=handle.workflow_id)
            .exclude(executor_id=first_executor)
            .exclude(waiting="")
            .exists()
        ),
        timeout=60,
        what="the second worker to recover the workflow and park it again",
    )

    DBOS.send(handle.workflow_id, "paid", topic="go")

    assert handle.get_result(timeout=30) == "paid"
    assert journal.read_text().splitlines() == ["before", "after paid"]
