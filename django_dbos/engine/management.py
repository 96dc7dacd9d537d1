"""Operating on workflows from outside: cancel, resume, fork, list, wait for the first."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import DBOSNonExistentWorkflowError
from ..models import Status
from . import cancellation, executor, notifier, registry, system_db, validation
from .context import start_options
from .queues import INTERNAL_QUEUE
from .workflows import run_claimed


def _existing(workflow_id: str) -> Any:
    row = system_db.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")
    return row


def cancel(workflow_id: str) -> None:
    """Cancel a workflow and its descendants (except detached ones) that have not finished."""
    _existing(workflow_id)
    cancellation.cancel(workflow_id)


def resume(workflow_id: str) -> Any:
    """Run a cancelled or failed workflow again from its last completed step; return a future
    when it runs in this process (None when it went back to its queue or needs nothing)."""
    _existing(workflow_id)
    process = executor.current()
    claimed = system_db.resume_workflow(workflow_id, process.ensure_started())
    if claimed is None:
        return None
    return process.pool.submit(run_claimed, claimed, process.executor_id)


def fork(workflow_id: str, start_step: int, application_version: str | None = None) -> Any:
    """Start a new workflow that replays `workflow_id`'s operations before `start_step` and runs
    the rest anew; return (new workflow id, future or None)."""
    original = _existing(workflow_id)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 1:
        raise ValueError(f"start_step must be a function id of 1 or more, not {start_step!r}.")
    if application_version is not None:
        validation.name(application_version, "application_version", allow_empty=False)
    options = start_options.get()
    new_id = validation.workflow_id(
        options.workflow_id if options and options.workflow_id else str(uuid.uuid4())
    )
    if options is not None:
        options.workflow_id = None
    version = application_version or original.application_version
    runs_here = original.queue_name is None and version == registry.application_version()
    process = executor.current()
    row = system_db.NewWorkflow(
        workflow_id=new_id,
        name=original.name,
        status=Status.PENDING if runs_here else Status.ENQUEUED,
        inputs=original.inputs,
        executor_id=process.ensure_started() if runs_here else None,
        application_version=version,
        queue_name=None if runs_here else (original.queue_name or INTERNAL_QUEUE),
        priority=original.priority,
        queue_partition_key=original.queue_partition_key,
        timeout_ms=original.timeout_ms,
        authenticated_user=original.authenticated_user,
        forked_from=original.workflow_id,
    )
    system_db.fork_workflow(original, row, start_step)
    if not runs_here:
        return new_id, None
    claimed = system_db.ClaimedWorkflow(new_id, original.name, original.inputs, 0, None)
    return new_id, process.pool.submit(run_claimed, claimed, process.executor_id)


def wait_first(workflow_ids: Sequence[str]) -> str:
    """Wait until one of the workflows ends; return its id."""
    if not workflow_ids:
        raise ValueError("wait_first needs at least one handle.")
    listener = notifier.current()
    with listener.subscribe(*[notifier.key("w", wid) for wid in workflow_ids]) as event:
        while True:
            outcomes = system_db.get_outcomes(workflow_ids)
            for workflow_id in workflow_ids:
                outcome = outcomes.get(workflow_id)
                if outcome is None:
                    raise DBOSNonExistentWorkflowError(
                        f"There is no workflow with id {workflow_id!r}."
                    )
                if outcome[0] not in (Status.PENDING, Status.ENQUEUED):
                    return workflow_id
            listener.wait(event, None)
