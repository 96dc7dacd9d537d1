"""Durable sleep: the wake-up time is recorded, so a restarted workflow sleeps only what is left."""

from __future__ import annotations

import datetime
import math
import time

import pytest

from django_dbos import DBOS, SetWorkflowID, WorkflowStatusString
from django_dbos.engine import registry, serialization, system_db
from django_dbos.models import Executor, OperationOutput, WorkflowStatus

from .dead_executors import recover

pytestmark = pytest.mark.django_db(transaction=True)


@DBOS.step()
def now() -> float:
    return time.time()


@DBOS.workflow()
def nap(seconds: float) -> str:
    DBOS.sleep(seconds)
    return "rested"


@DBOS.workflow()
def long_nap() -> float:
    DBOS.sleep(3600)
    return now()


@DBOS.workflow()
def two_naps() -> list:
    DBOS.sleep(0.1)
    DBOS.sleep(0.1)
    return ["done"]


def leave_behind_sleeping(workflow_id: str, workflow: object, wake_at: float) -> None:
    """What a process that died in the middle of the workflow's first sleep leaves behind."""
    system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=workflow.__dbos__.name,  # type: ignore[attr-defined]
            status="PENDING",
            inputs=serialization.dumps_arguments((), {}),
            executor_id="dead-executor",
            application_version=registry.application_version(),
        )
    )
    assert system_db.record_operation(
        workflow_id,
        "dead-executor",
        1,
        "DBOS.sleep",
        output=serialization.dumps(wake_at),
        started_at=system_db.now(),
    )
    last_seen = system_db.now() - datetime.timedelta(hours=1)
    system_db.heartbeat(
        "dead-executor",
        hostname="elsewhere",
        pid=1,
        role="worker",
        application_version=registry.application_version(),
        started_at=last_seen,
    )
    Executor.objects.filter(executor_id="dead-executor").update(last_heartbeat=last_seen)


def test_sleep_in_a_workflow_sleeps_and_records_its_wake_up_time():
    before = time.time()
    with SetWorkflowID("napper"):
        assert nap(0.3) == "rested"
    after = time.time()

    assert after - before >= 0.3
    (step,) = DBOS.list_workflow_steps("napper")
    assert (step.function_id, step.function_name) == (1, "DBOS.sleep")
    assert isinstance(step.output, float)
    assert before + 0.3 <= step.output <= after


def test_each_sleep_is_its_own_recorded_operation():
    with SetWorkflowID("two-naps"):
        assert two_naps() == ["done"]

    steps = DBOS.list_workflow_steps("two-naps")
    assert [(s.function_id, s.function_name) for s in steps] == [
        (1, "DBOS.sleep"),
        (2, "DBOS.sleep"),
    ]
    assert steps[1].output >= steps[0].output + 0.1


def test_a_restarted_workflow_sleeps_only_for_what_is_left():
    wake_at = time.time() + 1.0
    leave_behind_sleeping("sleeper", long_nap, wake_at)
    started = time.monotonic()

    assert recover() == 1

    woke_at = DBOS.retrieve_workflow("sleeper").get_result(10)
    assert time.monotonic() - started < 5  # the code says sleep(3600)
    assert woke_at >= wake_at
    assert DBOS.get_workflow_status("sleeper").status == WorkflowStatusString.SUCCESS
    assert DBOS.list_workflow_steps("sleeper")[0].output == wake_at


def test_a_workflow_restarted_after_its_wake_up_time_does_not_sleep_at_all():
    leave_behind_sleeping("overslept", long_nap, time.time() - 60)
    started = time.monotonic()

    assert recover() == 1

    DBOS.retrieve_workflow("overslept").get_result(10)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("seconds", [-1, -0.001, math.nan, "1", True, None])
def test_sleep_refuses_what_is_not_a_non_negative_number(seconds):
    with pytest.raises(ValueError, match="seconds"):
        DBOS.sleep(seconds)


def test_a_negative_sleep_in_a_workflow_fails_the_workflow_and_records_no_wake_up():
    with pytest.raises(ValueError, match="negative"), SetWorkflowID("bad-nap"):
        nap(-5)

    assert DBOS.get_workflow_status("bad-nap").status == WorkflowStatusString.ERROR
    assert DBOS.list_workflow_steps("bad-nap") == []


def test_sleep_outside_a_workflow_just_sleeps():
    started = time.monotonic()
    DBOS.sleep(0.2)
    assert time.monotonic() - started >= 0.2

    DBOS.sleep(0)
    assert WorkflowStatus.objects.count() == 0
    assert OperationOutput.objects.count() == 0
