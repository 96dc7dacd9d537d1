"""Operating on workflows from outside: cancel, resume, fork, list, wait for the first."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import (
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSPayloadExpiredError,
    DBOSWorkflowConflictIDError,
)
from ..types import Status
from . import (
    after_commit,
    cancellation,
    clock,
    executor,
    notifier,
    registry,
    system_db,
    validation,
)
from .context import start_options
from .enqueue import INTERNAL_QUEUE
from .workflows import submit


def _existing(workflow_id: str) -> system_db.WorkflowRow:
    row = system_db.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")
    return row


def _replayable(row: system_db.WorkflowRow, action: str) -> system_db.WorkflowRow:
    """A workflow whose inputs and step outputs expired cannot run again: refuse to."""
    if row.payload_expired_at is not None:
        raise DBOSPayloadExpiredError(
            f"Workflow {row.workflow_id!r} cannot be {action}: its inputs and step outputs "
            'expired under the retention policy (DBOS["RETENTION"]["PAYLOAD_DAYS"]) on '
            f"{row.payload_expired_at.isoformat(timespec='seconds')}."
        )
    return row


def cancel(workflow_id: str) -> None:
    """Cancel a workflow and its descendants (except detached ones) that have not finished."""
    _existing(workflow_id)
    cancellation.cancel(workflow_id)


def _runs_here(name: str, application_version: str | None, queue_name: str | None) -> bool:
    """Whether this process should run a resumed or forked workflow itself: it has the code, of
    the right version, and the workflow belongs to no queue. Otherwise a worker runs it."""
    if queue_name is not None:
        return False
    if application_version not in (None, registry.application_version()):
        return False
    try:
        registry.get_workflow(name)
    except DBOSNotRegisteredError:
        return False
    return True


def resume(workflow_id: str) -> Future[Any] | None:
    """Run a cancelled or failed workflow again from its last completed step; return a future
    when it runs in this process (None when a worker will run it, or nothing was to be done)."""
    row = _replayable(_existing(workflow_id), "resumed")
    if not _runs_here(row.name, row.application_version, row.queue_name):
        system_db.resume_workflow(
            workflow_id, executor_id=None, queue_name=row.queue_name or INTERNAL_QUEUE
        )
        return None
    process = executor.current()
    claimed = system_db.resume_workflow(
        workflow_id, executor_id=process.ensure_started(), queue_name=None
    )
    if claimed is None:
        return None
    return submit(claimed, process.executor_id)


def fork(
    workflow_id: str, start_step: int, application_version: str | None = None
) -> tuple[str, Future[Any] | None]:
    """Start a new workflow that replays `workflow_id`'s operations before `start_step` and runs
    the rest anew; return (new workflow id, future or None)."""
    original = _replayable(_existing(workflow_id), "forked")
    validation.function_id(start_step, "start_step")
    if application_version is not None:
        validation.name(application_version, "application_version", allow_empty=False)
    options = start_options.get()
    chosen = options.take_workflow_id() if options is not None else None
    new_id = validation.workflow_id(chosen or str(uuid.uuid4()))
    version = application_version or original.application_version
    runs_here = _runs_here(original.name, version, original.queue_name)
    process = executor.current()
    deadline = None
    if runs_here and original.timeout_ms:
        deadline = clock.now() + datetime.timedelta(milliseconds=original.timeout_ms)
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
        deadline=deadline,
        authenticated_user=original.authenticated_user,
        forked_from=original.workflow_id,
        attributes=original.attributes,  # as DBOS does: a fork is found as its original was
    )
    outcome = system_db.fork_workflow(original.workflow_id, row, start_step)
    if outcome == "original_gone":
        # Deleted or scrubbed since it was read: raise what reading it now says.
        _replayable(_existing(workflow_id), "forked")
        raise DBOSException(f"Workflow {workflow_id!r} changed while it was forked; fork it again.")
    if outcome == "id_taken":
        raise DBOSWorkflowConflictIDError(
            f"Cannot fork into workflow id {new_id!r}: a workflow with that id exists."
        )
    if not runs_here:
        return new_id, None
    claimed = system_db.ClaimedWorkflow(new_id, original.name, original.inputs, 0, deadline)
    return new_id, submit(claimed, process.executor_id)


def wait_first(workflow_ids: Sequence[str]) -> str:
    """Wait until one of the workflows ends; return its id."""
    if not workflow_ids:
        raise DBOSInvalidArgumentError("wait_first needs at least one handle.")
    for workflow_id in workflow_ids:
        after_commit.refuse_to_wait(workflow_id, "wait_first()")
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
