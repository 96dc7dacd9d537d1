"""Cancellation and timeouts: a cancelled workflow stops before its next step, with its
children (except detached ones); a timeout cancels at its deadline, counted from the dequeue."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from django_dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSNonExistentWorkflowError,
    Queue,
    SetWorkflowTimeout,
    WorkflowStatusString,
)
from django_dbos.models import WorkflowStatus

from .conftest import wait_until
from .workers import Gates, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

single_slot = Queue("tc-single-slot", concurrency=1)

gates = Gates()
runs: Counter[str] = Counter()
_lock = threading.Lock()


def ran(name: str) -> None:
    with _lock:
        runs[name] += 1


@DBOS.step()
def waiting_step(name: str) -> str:
    ran(name)
    gates.pass_through(name)
    return name


@DBOS.workflow()
def three_gated_steps() -> list[str]:
    return [waiting_step("step 1"), waiting_step("step 2"), waiting_step("step 3")]


@DBOS.workflow()
def waits_between_steps() -> list[str]:
    first = quick_step("step 1")
    gates.pass_through("between the steps")  # in the workflow body, not in a step
    return [first, quick_step("step 2")]


@DBOS.step()
def sleeping_step(seconds: float) -> None:
    ran("sleeping")
    time.sleep(seconds)


@DBOS.step()
def quick_step(name: str) -> str:
    ran(name)
    return name


@DBOS.workflow()
def sleeps_then_steps(seconds: float) -> str:
    sleeping_step(seconds)
    return quick_step("after the sleep")


@DBOS.workflow()
def child(name: str) -> str:
    return waiting_step(name)


@DBOS.workflow()
def parent_of_one(child_name: str) -> str:
    handle = DBOS.start_workflow(child, child_name)
    DBOS.set_event("child", handle.workflow_id)
    return handle.get_result()


@DBOS.workflow()
def parent_of_a_detached_child(child_name: str) -> str:
    with SetWorkflowTimeout(None):
        handle = DBOS.start_workflow(child, child_name)
    DBOS.set_event("child", handle.workflow_id)
    return waiting_step("parent waits")


@DBOS.workflow()
def quick(name: str) -> str:
    return quick_step(name)


@DBOS.workflow()
def holds_the_slot(name: str) -> str:
    return waiting_step(name)


@pytest.fixture(autouse=True)
def _reset():
    gates.reset()
    runs.clear()
    yield
    gates.open_all()


def status_of(workflow_id: str) -> str:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else "MISSING"


def wait_for_status(workflow_id: str, status: str, timeout: float = 10) -> None:
    wait_until(lambda: status_of(workflow_id) == status, timeout, f"{workflow_id} to be {status}")


# Cancel ---------------------------------------------------------------------------------------


def test_a_cancelled_workflow_stops_before_its_next_step():
    handle = DBOS.start_workflow(three_gated_steps)
    gates.open("step 1")
    assert gates.wait_reached("step 2")

    DBOS.cancel_workflow(handle.workflow_id)
    assert status_of(handle.workflow_id) == WorkflowStatusString.CANCELLED
    gates.open("step 2")

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert runs == {"step 1": 1, "step 2": 1}  # step 3's body never ran
    assert [s.function_id for s in DBOS.list_workflow_steps(handle.workflow_id)] == [1]
    assert status_of(handle.workflow_id) == WorkflowStatusString.CANCELLED


def test_a_cancelled_workflow_stops_before_the_step_after_the_one_it_was_in():
    handle = DBOS.start_workflow(three_gated_steps)
    assert gates.wait_reached("step 1")

    DBOS.cancel_workflow(handle.workflow_id)
    gates.open("step 1")

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert runs == {"step 1": 1}  # step 2's body never ran
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow(handle.workflow_id).get_result(timeout=5)


def test_a_workflow_cancelled_between_two_steps_does_not_start_the_second():
    handle = DBOS.start_workflow(waits_between_steps)
    assert gates.wait_reached("between the steps")

    DBOS.cancel_workflow(handle.workflow_id)
    gates.open("between the steps")

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert runs == {"step 1": 1}


def test_cancelling_a_workflow_cancels_its_children():
    handle = DBOS.start_workflow(parent_of_one, "in the child")
    assert gates.wait_reached("in the child")
    child_id = DBOS.get_event(handle.workflow_id, "child", timeout_seconds=5)

    DBOS.cancel_workflow(handle.workflow_id)

    assert status_of(child_id) == WorkflowStatusString.CANCELLED
    assert DBOS.get_workflow_status(child_id).parent_workflow_id == handle.workflow_id
    gates.open("in the child")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow(child_id).get_result(timeout=10)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert status_of(handle.workflow_id) == WorkflowStatusString.CANCELLED


def test_a_cancelled_enqueued_workflow_never_runs():
    blocker = single_slot.enqueue(holds_the_slot, "blocker")
    cancelled = single_slot.enqueue(quick, "cancelled")
    after = single_slot.enqueue(quick, "after")

    DBOS.cancel_workflow(cancelled.workflow_id)
    assert status_of(cancelled.workflow_id) == WorkflowStatusString.CANCELLED
    with running_worker(before_stop=gates.open_all):
        assert gates.wait_reached("blocker")
        gates.open("blocker")
        assert blocker.get_result(timeout=10) == "blocker"
        assert after.get_result(timeout=10) == "after"

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        cancelled.get_result(timeout=5)
    assert runs == {"blocker": 1, "after": 1}
    assert status_of(cancelled.workflow_id) == WorkflowStatusString.CANCELLED
    assert WorkflowStatus.objects.get(workflow_id=cancelled.workflow_id).started_at is None


def test_cancelling_a_finished_workflow_changes_nothing():
    handle = DBOS.start_workflow(quick, "done")
    assert handle.get_result(timeout=10) == "done"

    DBOS.cancel_workflow(handle.workflow_id)

    assert status_of(handle.workflow_id) == WorkflowStatusString.SUCCESS
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result(timeout=5) == "done"


def test_cancelling_an_unknown_workflow_raises():
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.cancel_workflow("no-such-workflow")


# Timeouts -------------------------------------------------------------------------------------


def test_a_workflow_past_its_timeout_is_cancelled_even_in_the_middle_of_a_step():
    with SetWorkflowTimeout(0.3):
        handle = DBOS.start_workflow(sleeps_then_steps, 1.0)

    wait_for_status(handle.workflow_id, WorkflowStatusString.CANCELLED, timeout=0.9)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert runs == {"sleeping": 1}  # the step after the sleep never ran
    assert DBOS.list_workflow_steps(handle.workflow_id) == []  # the late step was not recorded


def test_a_workflow_that_ends_within_its_timeout_succeeds():
    with SetWorkflowTimeout(5):
        handle = DBOS.start_workflow(sleeps_then_steps, 0.05)

    assert handle.get_result(timeout=10) == "after the sleep"
    assert status_of(handle.workflow_id) == WorkflowStatusString.SUCCESS


def test_a_queued_workflows_timeout_counts_from_its_dequeue():
    blocker = single_slot.enqueue(holds_the_slot, "blocker")
    with SetWorkflowTimeout(0.5):
        queued = single_slot.enqueue(quick, "queued")

    with running_worker(before_stop=gates.open_all):
        assert gates.wait_reached("blocker")
        time.sleep(0.8)  # the queued workflow waits longer than its timeout
        gates.open("blocker")
        assert blocker.get_result(timeout=10) == "blocker"
        assert queued.get_result(timeout=10) == "queued"

    row = WorkflowStatus.objects.get(workflow_id=queued.workflow_id)
    assert row.status == WorkflowStatusString.SUCCESS
    assert row.started_at - row.created_at >= row.deadline - row.started_at


def test_a_queued_workflow_that_runs_past_its_timeout_is_cancelled():
    with SetWorkflowTimeout(0.3):
        handle = single_slot.enqueue(sleeps_then_steps, 0.8)

    with running_worker(), pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)

    assert status_of(handle.workflow_id) == WorkflowStatusString.CANCELLED
    assert runs == {"sleeping": 1}


def test_children_inherit_the_deadline_and_are_cancelled_with_the_parent():
    with SetWorkflowTimeout(0.4):
        handle = DBOS.start_workflow(parent_of_one, "in the child")
    assert gates.wait_reached("in the child")
    child_id = DBOS.get_event(handle.workflow_id, "child", timeout_seconds=5)
    parent_row = WorkflowStatus.objects.get(workflow_id=handle.workflow_id)
    child_row = WorkflowStatus.objects.get(workflow_id=child_id)
    assert child_row.deadline == parent_row.deadline

    wait_for_status(handle.workflow_id, WorkflowStatusString.CANCELLED)
    wait_for_status(child_id, WorkflowStatusString.CANCELLED, timeout=2)
    gates.open("in the child")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow(child_id).get_result(timeout=10)


def test_a_child_started_detached_survives_its_parents_timeout():
    with SetWorkflowTimeout(0.3):
        handle = DBOS.start_workflow(parent_of_a_detached_child, "detached child")
    assert gates.wait_reached("detached child")
    child_id = DBOS.get_event(handle.workflow_id, "child", timeout_seconds=5)

    wait_for_status(handle.workflow_id, WorkflowStatusString.CANCELLED)
    time.sleep(0.2)  # past the parent's deadline, the child is still running
    assert status_of(child_id) == WorkflowStatusString.PENDING
    gates.open("detached child")

    assert DBOS.retrieve_workflow(child_id).get_result(timeout=10) == "detached child"
    assert status_of(child_id) == WorkflowStatusString.SUCCESS
    assert WorkflowStatus.objects.get(workflow_id=child_id).deadline is None


def test_a_child_started_detached_survives_its_parents_cancellation():
    handle = DBOS.start_workflow(parent_of_a_detached_child, "detached child")
    assert gates.wait_reached("detached child")
    child_id = DBOS.get_event(handle.workflow_id, "child", timeout_seconds=5)

    DBOS.cancel_workflow(handle.workflow_id)

    assert status_of(handle.workflow_id) == WorkflowStatusString.CANCELLED
    assert status_of(child_id) == WorkflowStatusString.PENDING
    gates.open("detached child")
    assert DBOS.retrieve_workflow(child_id).get_result(timeout=10) == "detached child"
    gates.open("parent waits")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
