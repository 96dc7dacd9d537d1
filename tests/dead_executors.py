"""What a process that died leaves behind, written through the engine's own system_db, and the
real recovery that takes it over: the recovery tests' shared fixtures."""

from __future__ import annotations

import datetime

from django_dbos.engine import executor, registry, serialization, system_db
from django_dbos.engine.recovery import Recovery
from django_dbos.models import Executor, WorkflowStatus


def mark_dead(executor_id: str) -> None:
    """Give an executor a heartbeat an hour old: workers take it for dead."""
    last_seen = system_db.now() - datetime.timedelta(hours=1)
    system_db.heartbeat(
        executor_id,
        hostname="elsewhere",
        pid=1,
        role="worker",
        application_version=registry.application_version(),
        started_at=last_seen,
    )
    Executor.objects.filter(executor_id=executor_id).update(last_heartbeat=last_seen)


def leave_behind(
    workflow_id: str,
    workflow: object,
    args: tuple,
    recorded: list[tuple[int, str, object]],
    *,
    executor_id: str = "dead-executor",
) -> None:
    """Write what a process that died while running `workflow` leaves in the database."""
    system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=workflow.__dbos__.name,  # type: ignore[attr-defined]
            status="PENDING",
            inputs=serialization.dumps_arguments(args, {}),
            executor_id=executor_id,
            application_version=registry.application_version(),
        )
    )
    for function_id, name, output in recorded:
        assert system_db.record_operation(
            workflow_id,
            executor_id,
            function_id,
            name,
            output=serialization.dumps(output),
            started_at=system_db.now(),
        )
    mark_dead(executor_id)


def pretend_its_process_died(workflow_id: str, executor_id: str = "dead-executor") -> None:
    """Turn a finished workflow back into one whose process died before it could finish."""
    WorkflowStatus.objects.filter(workflow_id=workflow_id).update(
        status="PENDING", output=None, error=None, executor_id=executor_id
    )
    mark_dead(executor_id)


def recover() -> int:
    """Run the worker's recovery once in this process; return how many it claimed."""
    process = executor.current()
    process.ensure_started()
    return Recovery(process).recover_dead()
