"""Events: set_event and get_event, the latest value, the history, waits and replay."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from django_dbos import DBOS, DBOSException, SetWorkflowID, WorkflowStatusString
from django_dbos.engine import serialization, system_db
from django_dbos.models import WorkflowEvent, WorkflowEventHistory, WorkflowStatus

from .conftest import wait_until
from .dead_executors import pretend_its_process_died, recover

pytestmark = pytest.mark.django_db(transaction=True)

gates: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return gates.setdefault(name, threading.Event())


@pytest.fixture(autouse=True)
def _open_gates_at_the_end():
    yield
    for event in gates.values():
        event.set()
    gates.clear()


@DBOS.step()
def wait_at(name: str) -> str:
    assert gate(name).wait(20), f"gate {name} never opened"
    return name


@DBOS.workflow()
def publish(values: list) -> str:
    for value in values:
        DBOS.set_event("progress", value)
    DBOS.set_event("other", "unrelated")
    return "published"


@DBOS.workflow()
def publish_after(gate_name: str, value: object) -> None:
    wait_at(gate_name)
    DBOS.set_event("late", value)


@DBOS.workflow()
def publish_then_change(gate_name: str) -> None:
    DBOS.set_event("price", 100)
    wait_at(gate_name)
    DBOS.set_event("price", 200)


@DBOS.workflow()
def read_price(workflow_id: str) -> object:
    return DBOS.get_event(workflow_id, "price", timeout_seconds=5)


@DBOS.workflow()
def read_late(workflow_id: str) -> object:
    return DBOS.get_event(workflow_id, "late", timeout_seconds=10)


@DBOS.workflow()
def read_missing(workflow_id: str) -> object:
    return DBOS.get_event(workflow_id, "missing", timeout_seconds=0.2)


@DBOS.workflow()
def publish_after_a_pause(gate_name: str) -> str:
    gate(gate_name).wait(20)  # plain code, not a step: nothing is recorded while it waits
    DBOS.set_event("stale", "from a stale execution")
    return "mine"


@DBOS.workflow()
def publish_none() -> None:
    DBOS.set_event("nothing", None)


@DBOS.step()
def set_event_in_a_step() -> None:
    DBOS.set_event("key", "value")


@DBOS.workflow()
def calls_set_event_in_a_step() -> None:
    set_event_in_a_step()


def history(workflow_id: str, key: str) -> list:
    rows = WorkflowEventHistory.objects.filter(workflow_id=workflow_id, key=key).order_by(
        "function_id"
    )
    return [serialization.loads(row.value) for row in rows]


def in_thread(func, *args):
    """Run `func` on another thread (with its own database connection); return the future."""

    def run():
        try:
            return func(*args)
        finally:
            connections.close_all()

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def test_the_latest_value_wins_and_every_value_is_kept_in_the_history():
    with SetWorkflowID("publisher"):
        assert publish(["queued", {"step": 2}, "shipped"]) == "published"

    assert DBOS.get_event("publisher", "progress", timeout_seconds=1) == "shipped"
    assert DBOS.get_event("publisher", "other", timeout_seconds=1) == "unrelated"
    assert WorkflowEvent.objects.filter(workflow_id="publisher").count() == 2
    assert history("publisher", "progress") == ["queued", {"step": 2}, "shipped"]
    assert history("publisher", "other") == ["unrelated"]


def test_get_event_waits_for_the_event_to_be_set():
    with SetWorkflowID("late-publisher"):
        DBOS.start_workflow(publish_after, "late", {"ready": True})
    waiter = in_thread(DBOS.get_event, "late-publisher", "late", 10)
    time.sleep(0.3)
    assert not waiter.done()  # nothing was published yet

    gate("late").set()

    assert waiter.result(5) == {"ready": True}


def test_get_event_returns_none_when_its_timeout_passes():
    with SetWorkflowID("silent"):
        publish([])
    started = time.monotonic()

    assert DBOS.get_event("silent", "progress", timeout_seconds=0.2) is None
    assert 0.2 <= time.monotonic() - started < 3
    assert DBOS.get_event("no-such-workflow", "progress", timeout_seconds=0.1) is None


def test_a_workflow_records_a_timed_out_get_event_as_none():
    with SetWorkflowID("silent"):
        publish([])
    with SetWorkflowID("reader"):
        assert read_missing("silent") is None

    steps = DBOS.list_workflow_steps("reader")
    assert [(s.function_id, s.function_name, s.output) for s in steps][1:] == [
        (2, "DBOS.getEvent", None)
    ]


def test_a_replayed_workflow_sees_the_value_it_read_not_the_current_one():
    with SetWorkflowID("pricer"):
        pricer = DBOS.start_workflow(publish_then_change, "price")
    with SetWorkflowID("reader"):
        assert read_price("pricer") == 100
    gate("price").set()
    pricer.get_result(10)
    assert DBOS.get_event("pricer", "price", timeout_seconds=1) == 200

    with SetWorkflowID("reader"):
        assert read_price("pricer") == 100  # the recorded result of the finished workflow
    pretend_its_process_died("reader")
    assert recover() == 1

    assert DBOS.retrieve_workflow("reader").get_result(10) == 100
    assert DBOS.get_workflow_status("reader").status == WorkflowStatusString.SUCCESS
    assert DBOS.get_workflow_status("reader").recovery_attempts == 1


def test_a_replayed_publisher_does_not_publish_again():
    with SetWorkflowID("publisher"):
        publish(["a", "b"])
    pretend_its_process_died("publisher")
    assert recover() == 1
    assert DBOS.retrieve_workflow("publisher").get_result(10) == "published"

    assert history("publisher", "progress") == ["a", "b"]
    assert DBOS.get_event("publisher", "progress", timeout_seconds=1) == "b"


def test_set_event_outside_a_workflow_raises_a_clear_error():
    with pytest.raises(DBOSException, match=r"DBOS\.set_event\(\) can only be called inside"):
        DBOS.set_event("key", "value")
    with pytest.raises(DBOSException, match=r"inside a workflow"):
        calls_set_event_in_a_step()
    assert WorkflowEvent.objects.count() == 0


def test_a_workflow_waiting_in_get_event_gets_the_value_set_meanwhile():
    with SetWorkflowID("reader"):
        reader = DBOS.start_workflow(read_late, "late-publisher")
    wait_until(
        lambda: [s.function_name for s in DBOS.list_workflow_steps("reader")] == ["DBOS.sleep"],
        10,
        "the reader to wait for the event",
    )
    with SetWorkflowID("late-publisher"):
        DBOS.start_workflow(publish_after, "late", "now")
    gate("late").set()

    assert reader.get_result(10) == "now"
    steps = DBOS.list_workflow_steps("reader")
    assert [(s.function_name, s.output) for s in steps][1:] == [("DBOS.getEvent", "now")]


def test_an_event_whose_value_is_none_is_found_at_once():
    with SetWorkflowID("none"):
        publish_none()
    started = time.monotonic()

    assert DBOS.get_event("none", "nothing", timeout_seconds=5) is None
    assert time.monotonic() - started < 2


def test_an_execution_that_lost_its_workflow_publishes_nothing():
    with SetWorkflowID("stale"):
        handle = DBOS.start_workflow(publish_after_a_pause, "stale")
    # Meanwhile another executor took the workflow over and finished it.
    WorkflowStatus.objects.filter(workflow_id="stale").update(executor_id="other")
    system_db.finish_workflow("stale", "other", "SUCCESS", serialization.dumps("theirs"), None)
    gate("stale").set()

    assert handle.get_result(10) == "theirs"
    assert WorkflowEvent.objects.filter(workflow_id="stale").count() == 0
    assert WorkflowEventHistory.objects.filter(workflow_id="stale").count() == 0
