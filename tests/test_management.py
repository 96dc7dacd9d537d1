"""Managing workflows: resume, fork, list, wait_first, and patching code under running workflows."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.utils import timezone

from django_dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSNonExistentWorkflowError,
    DBOSWorkflowConflictIDError,
    Queue,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowStatusString,
)
from django_dbos.models import WorkflowStatus

from .workers import Gates, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

list_queue = Queue("tm-list")
queued_queue = Queue("tm-queued", concurrency=1)

gates = Gates()
runs: Counter[str] = Counter()
_lock = threading.Lock()
patch_results: list[bool] = []
code = {"version": "old"}
flaky = {"fails": True}
sleep_for = {"seconds": 0.0}


def ran(name: str) -> None:
    with _lock:
        runs[name] += 1


class FlakyError(Exception):
    pass


@DBOS.step()
def waiting_step(name: str) -> str:
    ran(name)
    gates.pass_through(name)
    return name


@DBOS.step()
def counted_step(name: str) -> str:
    ran(name)
    return name


@DBOS.step()
def flaky_step() -> str:
    ran("flaky")
    if flaky["fails"]:
        raise FlakyError("the first attempt fails")
    return "flaky ok"


@DBOS.workflow()
def three_gated_steps() -> list[str]:
    return [waiting_step("step 1"), waiting_step("step 2"), waiting_step("step 3")]


@DBOS.workflow()
def fails_once() -> list[str]:
    return [counted_step("before"), flaky_step()]


@DBOS.workflow()
def quick(name: str) -> str:
    return counted_step(name)


@DBOS.workflow()
def gated(name: str) -> str:
    return waiting_step(name)


@DBOS.workflow()
def failing(name: str) -> None:
    raise FlakyError(name)


@DBOS.workflow()
def evented() -> list[str]:
    first = counted_step("a")  # 1
    DBOS.set_event("k", 1)  # 2
    second = waiting_step("b")  # 3
    DBOS.set_event("k", 2)  # 4
    third = counted_step("c")  # 5
    return [first, second, third]


@DBOS.step()
def adjustable_sleep() -> None:
    time.sleep(sleep_for["seconds"])


@DBOS.workflow()
def sleeps_then_counts() -> str:
    adjustable_sleep()
    return counted_step("after the sleep")


@DBOS.workflow()
def stepless(name: str) -> str:
    return name


@DBOS.step()
def old_step() -> str:
    ran("old step")
    return "old"


@DBOS.step()
def new_step() -> str:
    ran("new step")
    return "new"


@DBOS.workflow()
def versioned(tag: str) -> str:
    counted_step("first")
    if code["version"] == "old":
        result = old_step()
    elif code["version"] == "patched":
        patched = DBOS.patch("x")
        with _lock:
            patch_results.append(patched)
        result = new_step() if patched else old_step()
    else:
        deprecated = DBOS.deprecate_patch("x")
        with _lock:
            patch_results.append(deprecated)
        result = new_step()
    waiting_step(f"end {tag}")
    return result


@pytest.fixture(autouse=True)
def _reset():
    gates.reset()
    runs.clear()
    patch_results.clear()
    code["version"] = "old"
    flaky["fails"] = True
    sleep_for["seconds"] = 0.0
    yield
    gates.open_all()


def status_of(workflow_id: str) -> WorkflowStatus:
    return DBOS.get_workflow_status(workflow_id)


def cancel_while_waiting(handle, gate: str) -> None:
    """Cancel a workflow that waits at `gate`, let it go, and see its execution stop."""
    assert gates.wait_reached(gate)
    DBOS.cancel_workflow(handle.workflow_id)
    gates.open(gate)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)


# Resume ---------------------------------------------------------------------------------------


def test_resuming_a_cancelled_workflow_runs_it_on_from_its_last_completed_step():
    handle = DBOS.start_workflow(three_gated_steps)
    gates.open("step 1")
    cancel_while_waiting(handle, "step 2")
    assert runs == {"step 1": 1, "step 2": 1}
    gates.open("step 3")

    resumed = DBOS.resume_workflow(handle.workflow_id)

    assert resumed.workflow_id == handle.workflow_id
    assert resumed.get_result(timeout=10) == ["step 1", "step 2", "step 3"]
    assert runs == {"step 1": 1, "step 2": 2, "step 3": 1}  # step 1 was not run again
    assert status_of(handle.workflow_id).status == WorkflowStatusString.SUCCESS
    assert [s.function_id for s in DBOS.list_workflow_steps(handle.workflow_id)] == [1, 2, 3]


def test_resuming_a_failed_workflow_discards_the_error_of_its_last_step():
    with pytest.raises(FlakyError):
        DBOS.start_workflow(fails_once).get_result(timeout=10)
    failed = DBOS.list_workflows(name=fails_once.__dbos__.name)[0]
    assert failed.status == WorkflowStatusString.ERROR
    assert isinstance(DBOS.list_workflow_steps(failed.workflow_id)[1].error, FlakyError)
    flaky["fails"] = False

    resumed = DBOS.resume_workflow(failed.workflow_id)

    assert resumed.get_result(timeout=10) == ["before", "flaky ok"]
    assert runs == {"before": 1, "flaky": 2}
    status = status_of(failed.workflow_id)
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.error is None
    steps = DBOS.list_workflow_steps(failed.workflow_id)
    assert [(s.output, s.error) for s in steps] == [("before", None), ("flaky ok", None)]


def test_resuming_resets_the_recovery_attempts():
    handle = DBOS.start_workflow(three_gated_steps)
    cancel_while_waiting(handle, "step 1")
    WorkflowStatus.objects.filter(workflow_id=handle.workflow_id).update(
        status=WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED, recovery_attempts=101
    )
    gates.open_all()

    resumed = DBOS.resume_workflow(handle.workflow_id)

    assert resumed.get_result(timeout=10) == ["step 1", "step 2", "step 3"]
    status = status_of(handle.workflow_id)
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.recovery_attempts == 0


def test_resuming_a_successful_workflow_changes_nothing():
    handle = DBOS.start_workflow(quick, "once")
    assert handle.get_result(timeout=10) == "once"
    before = status_of(handle.workflow_id)

    resumed = DBOS.resume_workflow(handle.workflow_id)

    assert resumed.get_result(timeout=10) == "once"
    assert runs == {"once": 1}
    assert status_of(handle.workflow_id) == before


def test_resuming_an_unknown_workflow_raises():
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.resume_workflow("no-such-workflow")


def test_a_resumed_queued_workflow_goes_back_to_its_queue():
    with running_worker(before_stop=gates.open_all):
        handle = queued_queue.enqueue(gated, "queued")
        cancel_while_waiting(handle, "queued")

        resumed = DBOS.resume_workflow(handle.workflow_id)

        assert resumed.get_result(timeout=10) == "queued"
    assert runs == {"queued": 2}
    status = status_of(handle.workflow_id)
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.queue_name == "tm-queued"


# Fork -----------------------------------------------------------------------------------------


def test_a_fork_reuses_the_steps_before_its_start_step_and_runs_the_rest():
    gates.open("b")
    original = DBOS.start_workflow(evented)
    assert original.get_result(timeout=10) == ["a", "b", "c"]
    steps = DBOS.list_workflow_steps(original.workflow_id)
    assert [s.function_id for s in steps] == [1, 2, 3, 4, 5]
    gates.close("b")

    with SetWorkflowID("the-fork"):
        fork = DBOS.fork_workflow(original.workflow_id, 3)

    assert fork.workflow_id == "the-fork"
    assert gates.wait_reached("b")
    assert DBOS.get_event("the-fork", "k", timeout_seconds=0) == 1  # as it was before step 3
    gates.open("b")
    assert fork.get_result(timeout=10) == ["a", "b", "c"]
    assert DBOS.get_event("the-fork", "k", timeout_seconds=0) == 2
    assert runs == {"a": 1, "b": 2, "c": 2}  # step 1 was copied, steps 3 and 5 ran again
    status = status_of("the-fork")
    assert status.forked_from == original.workflow_id
    assert status.status == WorkflowStatusString.SUCCESS
    assert status_of(original.workflow_id).forked_from is None


def test_a_fork_from_step_one_runs_everything_again_under_a_new_id():
    gates.open_all()
    original = DBOS.start_workflow(evented)
    original.get_result(timeout=10)

    fork = DBOS.fork_workflow(original.workflow_id, 1)

    assert fork.workflow_id != original.workflow_id
    assert fork.get_result(timeout=10) == ["a", "b", "c"]
    assert runs == {"a": 2, "b": 2, "c": 2}
    assert status_of(fork.workflow_id).forked_from == original.workflow_id


def test_forking_an_unknown_workflow_or_from_step_zero_raises():
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.fork_workflow("no-such-workflow", 1)
    handle = DBOS.start_workflow(quick, "x")
    handle.get_result(timeout=10)
    with pytest.raises(ValueError):
        DBOS.fork_workflow(handle.workflow_id, 0)


def test_forking_into_a_taken_workflow_id_raises_and_changes_nothing():
    with SetWorkflowID("taken"):
        assert stepless("mine") == "mine"
    gates.open_all()
    original = DBOS.start_workflow(evented)
    original.get_result(timeout=10)

    with SetWorkflowID("taken"), pytest.raises(DBOSWorkflowConflictIDError):
        DBOS.fork_workflow(original.workflow_id, 3)

    assert DBOS.list_workflow_steps("taken") == []
    assert DBOS.get_event("taken", "k", timeout_seconds=0) is None


def test_a_fork_keeps_the_timeout_of_the_original():
    with SetWorkflowTimeout(0.3):
        original = DBOS.start_workflow(sleeps_then_counts)
    assert original.get_result(timeout=10) == "after the sleep"
    sleep_for["seconds"] = 0.8

    fork = DBOS.fork_workflow(original.workflow_id, 1)

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        fork.get_result(timeout=10)


# List -----------------------------------------------------------------------------------------


def ids(statuses) -> list[str]:
    return [status.workflow_id for status in statuses]


def test_list_workflows_filters_sorts_and_pages():
    first = DBOS.start_workflow(quick, "one")
    first.get_result(timeout=10)
    failed = DBOS.start_workflow(failing, "boom")
    with pytest.raises(FlakyError):
        failed.get_result(timeout=10)
    middle = timezone.now()
    third = DBOS.start_workflow(quick, "three")
    third.get_result(timeout=10)
    queued = list_queue.enqueue(quick, "queued")
    everything = [first.workflow_id, failed.workflow_id, third.workflow_id, queued.workflow_id]
    quick_name = quick.__dbos__.name

    assert ids(DBOS.list_workflows()) == everything
    assert ids(DBOS.list_workflows(sort_desc=True)) == everything[::-1]
    assert ids(DBOS.list_workflows(status="SUCCESS")) == [first.workflow_id, third.workflow_id]
    assert ids(DBOS.list_workflows(status=["ERROR", "ENQUEUED"])) == [
        failed.workflow_id,
        queued.workflow_id,
    ]
    assert ids(DBOS.list_workflows(name=quick_name)) == [
        first.workflow_id,
        third.workflow_id,
        queued.workflow_id,
    ]
    assert ids(DBOS.list_workflows(queue_name="tm-list")) == [queued.workflow_id]
    assert ids(DBOS.list_workflows(workflow_ids=[third.workflow_id, first.workflow_id])) == [
        first.workflow_id,
        third.workflow_id,
    ]
    assert ids(DBOS.list_workflows(limit=2)) == everything[:2]
    assert ids(DBOS.list_workflows(limit=2, offset=1)) == everything[1:3]
    assert ids(DBOS.list_workflows(offset=3)) == everything[3:]
    assert ids(DBOS.list_workflows(limit=1, sort_desc=True)) == [queued.workflow_id]
    assert ids(DBOS.list_workflows(start_time=middle)) == everything[2:]
    assert ids(DBOS.list_workflows(end_time=middle)) == everything[:2]
    failed_at = status_of(failed.workflow_id).created_at
    assert ids(DBOS.list_workflows(start_time=failed_at, end_time=middle)) == [failed.workflow_id]
    assert DBOS.list_workflows(status="CANCELLED") == []


def test_list_workflows_loads_inputs_and_outputs_unless_told_not_to():
    handle = DBOS.start_workflow(quick, "loaded")
    handle.get_result(timeout=10)
    failed = DBOS.start_workflow(failing, "boom")
    with pytest.raises(FlakyError):
        failed.get_result(timeout=10)

    done, error = DBOS.list_workflows()
    assert done.input == {"args": ["loaded"], "kwargs": {}}
    assert done.output == "loaded"
    assert isinstance(error.error, FlakyError)

    done, error = DBOS.list_workflows(load_input=False, load_output=False)
    assert done.input is None
    assert done.output is None
    assert error.error is None
    assert done.status == WorkflowStatusString.SUCCESS  # the rest is still there
    assert done.name == quick.__dbos__.name


def test_list_queued_workflows_shows_only_waiting_and_running_queued_workflows():
    with running_worker(before_stop=gates.open_all):
        finished = queued_queue.enqueue(quick, "finished")
        assert finished.get_result(timeout=10) == "finished"
        running = queued_queue.enqueue(gated, "running")
        assert gates.wait_reached("running")
        waiting = [queued_queue.enqueue(quick, f"waiting {i}") for i in range(2)]
        not_queued = DBOS.start_workflow(gated, "not queued")
        assert gates.wait_reached("not queued")

        listed = DBOS.list_queued_workflows(queue_name="tm-queued")
        assert ids(listed) == [running.workflow_id, *ids_of(waiting)]
        assert [s.status for s in listed] == ["PENDING", "ENQUEUED", "ENQUEUED"]
        all_queued = ids(DBOS.list_queued_workflows())
        assert not_queued.workflow_id not in all_queued
        assert finished.workflow_id not in all_queued
        assert ids(DBOS.list_queued_workflows(status="ENQUEUED", queue_name="tm-queued")) == (
            ids_of(waiting)
        )
        assert ids(DBOS.list_queued_workflows(name=gated.__dbos__.name)) == [running.workflow_id]
        assert ids(DBOS.list_queued_workflows(queue_name="tm-other")) == []
        gates.open_all()
        assert [h.get_result(timeout=10) for h in waiting] == ["waiting 0", "waiting 1"]

    assert ids(DBOS.list_queued_workflows(queue_name="tm-queued")) == []


def ids_of(handles) -> list[str]:
    return [handle.workflow_id for handle in handles]


def test_wait_first_returns_the_handle_of_the_first_workflow_to_finish():
    slow = DBOS.start_workflow(gated, "slow")
    fast = DBOS.start_workflow(gated, "fast")
    assert gates.wait_reached("slow")
    gates.open("fast")

    assert DBOS.wait_first([slow, fast]) is fast
    assert status_of(slow.workflow_id).status == WorkflowStatusString.PENDING
    gates.open("slow")
    assert slow.get_result(timeout=10) == "slow"
    with pytest.raises(ValueError):
        DBOS.wait_first([])


# Patches --------------------------------------------------------------------------------------


def test_patch_is_false_for_an_execution_of_the_old_code_and_true_for_a_new_one():
    old = DBOS.start_workflow(versioned, "old")
    cancel_while_waiting(old, "end old")
    code["version"] = "patched"  # a deploy of the patched code

    assert DBOS.resume_workflow(old.workflow_id).get_result(timeout=10) == "old"
    new = DBOS.start_workflow(versioned, "new")
    cancel_while_waiting(new, "end new")
    assert DBOS.resume_workflow(new.workflow_id).get_result(timeout=10) == "new"

    assert patch_results == [False, True, True]  # the new execution's replay is new code too
    assert runs["old step"] == 1 and runs["new step"] == 1
    old_names = [s.function_name for s in DBOS.list_workflow_steps(old.workflow_id)]
    new_names = [s.function_name for s in DBOS.list_workflow_steps(new.workflow_id)]
    assert "DBOS.patch-x" not in old_names
    assert new_names[1] == "DBOS.patch-x"


def test_deprecate_patch_is_true_and_replays_executions_with_and_without_the_marker():
    code["version"] = "patched"
    patched = DBOS.start_workflow(versioned, "patched")
    cancel_while_waiting(patched, "end patched")
    code["version"] = "deprecated"
    fresh = DBOS.start_workflow(versioned, "fresh")
    cancel_while_waiting(fresh, "end fresh")
    assert runs["new step"] == 2

    assert DBOS.resume_workflow(patched.workflow_id).get_result(timeout=10) == "new"
    assert DBOS.resume_workflow(fresh.workflow_id).get_result(timeout=10) == "new"

    assert patch_results == [True, True, True, True]
    assert runs["new step"] == 2  # both replayed their recorded step
    assert runs["old step"] == 0
    fresh_names = [s.function_name for s in DBOS.list_workflow_steps(fresh.workflow_id)]
    assert "DBOS.patch-x" not in fresh_names
