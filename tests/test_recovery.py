"""Recovery: replaying recorded steps, dead executors, versions, attempts, and the fence."""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter

import pytest
from django.test import override_settings

from django_dbos import (
    DBOS,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSNotRegisteredError,
    DBOSUnexpectedStepError,
    Queue,
    WorkflowStatusString,
)
from django_dbos.engine import executor, registry, serialization, system_db
from django_dbos.engine.recovery import Recovery
from django_dbos.engine.workflows import run_claimed
from django_dbos.models import Executor, WorkflowStatus

from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

runs: Counter[str] = Counter()
step_two_reached = threading.Event()
let_step_two_finish = threading.Event()


@DBOS.step()
def numbered(number: int) -> int:
    runs[f"step {number}"] += 1
    return number * 10


@DBOS.workflow(max_recovery_attempts=2)
def four_steps() -> list[int]:
    return [numbered(n) for n in range(1, 5)]


@DBOS.step()
def blocking_step() -> str:
    step_two_reached.set()
    let_step_two_finish.wait(10)
    return "done"


@DBOS.workflow()
def interrupted() -> list:
    return [numbered(1), blocking_step(), numbered(3)]


@pytest.fixture(autouse=True)
def _reset():
    runs.clear()
    step_two_reached.clear()
    let_step_two_finish.clear()
    yield
    let_step_two_finish.set()


def leave_behind(
    workflow_id: str,
    recorded: list[tuple[str, object]],
    *,
    executor_id: str = "dead-executor",
    silent_for: float = 3600,
    version: str | None = None,
    name: str | None = None,
    queue_name: str | None = None,
) -> None:
    """Write what a process that died while running `four_steps` leaves in the database."""
    system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=name or four_steps.__dbos__.name,
            status="PENDING",
            inputs=serialization.dumps_arguments((), {}),
            executor_id=executor_id,
            application_version=version or registry.application_version(),
            queue_name=queue_name,
        )
    )
    for function_id, (step_name, output) in enumerate(recorded, start=1):
        system_db.record_operation(
            workflow_id,
            executor_id,
            function_id,
            step_name,
            output=serialization.dumps(output),
            started_at=system_db.now(),
        )
    if silent_for is not None:
        last_seen = system_db.now() - datetime.timedelta(seconds=silent_for)
        system_db.heartbeat(
            executor_id,
            hostname="elsewhere",
            pid=1,
            role="worker",
            application_version=registry.application_version(),
            started_at=last_seen,
        )
        Executor.objects.filter(executor_id=executor_id).update(last_heartbeat=last_seen)


def recover() -> int:
    process = executor.current()
    process.ensure_started()
    return Recovery(process).recover_dead()


STEP = numbered.__dbos__.name


def test_recovery_resumes_after_the_last_recorded_step():
    leave_behind("wf-1", [(STEP, 10), (STEP, 20)])

    assert recover() == 1
    assert DBOS.retrieve_workflow("wf-1").get_result(10) == [10, 20, 30, 40]
    assert runs == {"step 3": 1, "step 4": 1}
    status = DBOS.get_workflow_status("wf-1")
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.recovery_attempts == 1
    assert status.executor_id == executor.current().executor_id
    assert not Executor.objects.filter(executor_id="dead-executor").exists()


def test_a_second_claim_of_the_same_workflows_finds_nothing():
    leave_behind("wf-2", [])
    version = registry.application_version()

    first = system_db.claim_pending({"dead-executor"}, "worker-a", version)
    second = system_db.claim_pending({"dead-executor"}, "worker-b", version)

    assert [claimed.workflow_id for claimed in first] == ["wf-2"]
    assert second == []
    assert WorkflowStatus.objects.get(workflow_id="wf-2").executor_id == "worker-a"


def test_live_executors_keep_their_workflows():
    leave_behind("wf-live", [], executor_id="alive", silent_for=0)

    assert recover() == 0
    assert DBOS.get_workflow_status("wf-live").executor_id == "alive"


@override_settings(DBOS={"APPLICATION_VERSION": "testproject-1", "EXECUTOR_TIMEOUT_SECONDS": 0.5})
def test_an_executor_without_a_row_is_dead_only_after_the_timeout():
    leave_behind("wf-orphan", [], executor_id="vanished", silent_for=None)
    process = executor.current()
    process.ensure_started()
    recovery = Recovery(process)

    assert recovery.recover_dead() == 0  # a flush may have removed a live executor's row
    time.sleep(0.6)
    assert recovery.recover_dead() == 1
    assert DBOS.retrieve_workflow("wf-orphan").get_result(10) == [10, 20, 30, 40]


def test_workflows_of_another_application_version_are_left_alone():
    leave_behind("wf-old", [], version="some-older-version")

    assert recover() == 0
    assert DBOS.get_workflow_status("wf-old").status == WorkflowStatusString.PENDING
    assert DBOS.get_workflow_status("wf-old").executor_id == "dead-executor"


def test_too_many_recoveries_stop_the_workflow():
    leave_behind("wf-doomed", [(STEP, 10)])
    WorkflowStatus.objects.filter(workflow_id="wf-doomed").update(recovery_attempts=2)

    assert recover() == 1
    status = DBOS.get_workflow_status("wf-doomed")
    assert status.status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    assert status.recovery_attempts == 3
    with pytest.raises(DBOSMaxRecoveryAttemptsExceededError):
        DBOS.retrieve_workflow("wf-doomed").get_result(5)
    assert runs == {}


# A workflow whose name the code no longer registers (removed, or renamed, without a new
# application version), or that a DBOSClient enqueued under a misspelt name.
REMOVED = "trec.removed_workflow"
queue_of_removed = Queue("trec-removed")


def test_a_recovered_workflow_that_nothing_registers_ends_in_error_keeping_its_steps():
    leave_behind("wf-removed", [(STEP, 10)], name=REMOVED)

    assert recover() == 1

    with pytest.raises(DBOSNotRegisteredError, match=r"trec\.removed_workflow.*resume"):
        DBOS.retrieve_workflow("wf-removed").get_result(5)
    assert DBOS.get_workflow_status("wf-removed").status == WorkflowStatusString.ERROR
    # Its recorded steps stay: resumed on code that registers it, it goes on after them.
    assert [step.function_id for step in DBOS.list_workflow_steps("wf-removed")] == [1]


def test_a_dequeued_workflow_that_nothing_registers_ends_in_error_the_same_way():
    leave_behind("wf-removed-queued", [(STEP, 10)], name=REMOVED, queue_name=queue_of_removed.name)
    assert recover() == 0  # back to ENQUEUED on its queue, for a worker's dispatcher
    assert DBOS.get_workflow_status("wf-removed-queued").status == WorkflowStatusString.ENQUEUED

    refused = pytest.raises(DBOSNotRegisteredError, match=r"trec\.removed_workflow.*resume")
    with running_worker(recovery=False), refused:
        DBOS.retrieve_workflow("wf-removed-queued").get_result(10)

    assert DBOS.get_workflow_status("wf-removed-queued").status == WorkflowStatusString.ERROR
    assert [step.function_id for step in DBOS.list_workflow_steps("wf-removed-queued")] == [1]


def test_replay_refuses_code_that_calls_another_step_at_a_recorded_position():
    leave_behind("wf-changed", [("some.removed_step", 1)])

    recover()
    with pytest.raises(DBOSUnexpectedStepError, match=r"some\.removed_step"):
        DBOS.retrieve_workflow("wf-changed").get_result(10)
    assert DBOS.get_workflow_status("wf-changed").status == WorkflowStatusString.ERROR
    assert runs == {}


def test_a_worker_recovers_what_its_own_executor_id_left_behind():
    process = executor.current()
    process.ensure_started()
    leave_behind("wf-mine", [(STEP, 10)], executor_id=process.executor_id, silent_for=None)

    assert Recovery(process).recover_own() == 1
    assert DBOS.retrieve_workflow("wf-mine").get_result(10) == [10, 20, 30, 40]
    assert runs == {"step 2": 1, "step 3": 1, "step 4": 1}


def test_an_execution_that_lost_ownership_stops_and_adopts_the_recorded_outcome():
    handle = DBOS.start_workflow(interrupted)
    assert step_two_reached.wait(10)
    # Meanwhile another executor took the workflow over and finished it.
    WorkflowStatus.objects.filter(workflow_id=handle.workflow_id).update(executor_id="other")
    system_db.finish_workflow(
        handle.workflow_id, "other", "SUCCESS", serialization.dumps(["theirs"]), None
    )
    let_step_two_finish.set()

    assert handle.get_result(10) == ["theirs"]
    assert runs == {"step 1": 1}  # step 3 never ran here
    steps = DBOS.list_workflow_steps(handle.workflow_id)
    assert [step.function_id for step in steps] == [1]  # step 2's checkpoint was refused


def test_two_executions_of_one_workflow_the_first_checkpoint_wins_and_the_other_stops():
    handle = DBOS.start_workflow(interrupted)
    assert step_two_reached.wait(10)
    process = executor.current()
    row = WorkflowStatus.objects.get(workflow_id=handle.workflow_id)
    claimed = system_db.ClaimedWorkflow(row.workflow_id, row.name, row.inputs, 0, None)
    step_two_reached.clear()
    second = process.pool.submit(run_claimed, claimed, process.executor_id)
    assert step_two_reached.wait(10)  # the second execution replayed step 1 and is in step 2
    let_step_two_finish.set()

    assert handle.get_result(10) == second.result(10) == [10, "done", 30]
    assert runs == {"step 1": 1, "step 3": 1}
    assert [s.function_id for s in DBOS.list_workflow_steps(handle.workflow_id)] == [1, 2, 3]
