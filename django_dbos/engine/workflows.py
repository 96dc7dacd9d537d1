"""Starting, running, replaying and awaiting workflows."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

from django.db import transaction

from ..errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from ..models import Status
from . import executor, notifier, registry, serialization, system_db
from .context import (
    RecordedOperation,
    StartOptions,
    WorkflowContext,
    current_workflow,
    start_options,
    workflow_context,
)

logger = logging.getLogger("django_dbos")

MAX_WORKFLOW_ID_LENGTH = 255


class Superseded(BaseException):
    """Internal: another execution owns this workflow now; this one stops and adopts its outcome.

    A BaseException, so that a user's `except Exception:` around a step cannot swallow it.
    """


# Workflows executing in this process, so that a handle or a second start of the same id waits
# on the running execution instead of polling the database.
_running: dict[str, Future[Any]] = {}
_running_lock = threading.Lock()


def take_start_options() -> StartOptions:
    """Return the options for the next start; the workflow id applies to one start only."""
    options = start_options.get()
    if options is None:
        return StartOptions()
    taken = StartOptions(
        workflow_id=options.workflow_id,
        timeout_seconds=options.timeout_seconds,
        timeout_set=options.timeout_set,
        enqueue=dict(options.enqueue),
    )
    options.workflow_id = None
    return taken


def validate_workflow_id(workflow_id: Any) -> str:
    if not isinstance(workflow_id, str) or not workflow_id:
        raise DBOSException(f"A workflow id must be a non-empty string, not {workflow_id!r}.")
    if len(workflow_id) > MAX_WORKFLOW_ID_LENGTH:
        raise DBOSException(
            f"Workflow id {workflow_id[:40]!r}... is {len(workflow_id)} characters long; "
            f"the limit is {MAX_WORKFLOW_ID_LENGTH}."
        )
    return workflow_id


def start(entry: registry.Registered, args: tuple, kwargs: dict, *, inline: bool) -> Any:
    """Record a workflow and run it: here and now when inline, else on the pool (a handle)."""
    from ..api import WorkflowHandle

    parent = workflow_context()
    options = take_start_options()
    function_id = 0
    if parent is not None:
        function_id = parent.next_function_id()
        recorded = parent.recorded_operation(function_id, entry.name)
        if recorded is not None:
            return _attach(recorded.child_workflow_id or "", inline)
    if options.workflow_id is not None:
        workflow_id = validate_workflow_id(options.workflow_id)
    elif parent is not None:
        workflow_id = validate_workflow_id(f"{parent.workflow_id}-{function_id}")
    else:
        workflow_id = str(uuid.uuid4())
    inputs = serialization.dumps_arguments(args, kwargs)

    process = executor.current()
    executor_id = process.ensure_started()
    inserted = system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=entry.name,
            status=Status.PENDING,
            inputs=inputs,
            executor_id=executor_id,
            application_version=registry.application_version(),
            parent_workflow_id=parent.workflow_id if parent else None,
        )
    )
    if parent is not None:
        record_operation(parent, function_id, entry.name, child_workflow_id=workflow_id)
    if not inserted:
        existing = system_db.get_workflow(workflow_id)
        if existing is not None and existing.name != entry.name:
            raise DBOSWorkflowConflictIDError(
                f"Workflow id {workflow_id!r} is already used by workflow {existing.name!r}; "
                f"it cannot also run {entry.name!r}. Choose another id."
            )
        return _attach(workflow_id, inline)

    if inline:
        return execute(entry, workflow_id, executor_id, args, kwargs, recorded=None)
    if transaction.get_connection(system_db.alias()).in_atomic_block:
        # The row is part of the caller's transaction: run only once it commits.
        transaction.on_commit(
            lambda: process.pool.submit(
                execute, entry, workflow_id, executor_id, args, kwargs, None
            ),
            using=system_db.alias(),
        )
        return WorkflowHandle(workflow_id)
    future = process.pool.submit(execute, entry, workflow_id, executor_id, args, kwargs, None)
    return WorkflowHandle(workflow_id, future)


def _attach(workflow_id: str, inline: bool) -> Any:
    """Join an existing workflow: wait for its result (inline) or return a handle to it."""
    from ..api import WorkflowHandle

    if inline:
        return await_result(workflow_id, None)
    with _running_lock:
        future = _running.get(workflow_id)
    return WorkflowHandle(workflow_id, future)


def execute(
    entry: registry.Registered,
    workflow_id: str,
    executor_id: str,
    args: tuple,
    kwargs: dict,
    recorded: dict[int, RecordedOperation] | None,
) -> Any:
    """Run a workflow body that this executor owns and record its outcome."""
    ctx = WorkflowContext(workflow_id, entry.name, executor_id, recorded)
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    with _running_lock:
        _running[workflow_id] = future
    workflow_token = current_workflow.set(ctx)
    options_token = start_options.set(None)
    try:
        result = _run_body(entry, ctx, args, kwargs)
    except BaseException as exc:
        future.set_exception(exc)
        raise
    else:
        future.set_result(result)
        return result
    finally:
        start_options.reset(options_token)
        current_workflow.reset(workflow_token)
        with _running_lock:
            if _running.get(workflow_id) is future:
                del _running[workflow_id]


def _run_body(entry: registry.Registered, ctx: WorkflowContext, args: tuple, kwargs: dict) -> Any:
    try:
        result = entry.func(*args, **kwargs)
    except Superseded:
        return await_result(ctx.workflow_id, None)
    except DBOSWorkflowCancelledError as exc:
        raise DBOSAwaitedWorkflowCancelledError(
            f"Workflow {ctx.workflow_id!r} was cancelled."
        ) from exc
    except Exception as exc:
        if not _finish(ctx, Status.ERROR, error=serialization.dumps_error(exc)):
            return await_result(ctx.workflow_id, None)
        raise
    try:
        output = serialization.dumps(result, f"result of workflow {entry.name!r}")
    except DBOSSerializationError as exc:
        _finish(ctx, Status.ERROR, error=serialization.dumps_error(exc))
        raise
    if not _finish(ctx, Status.SUCCESS, output=output):
        return await_result(ctx.workflow_id, None)
    return result


def _finish(
    ctx: WorkflowContext, status: str, *, output: str | None = None, error: str | None = None
) -> bool:
    """Record the outcome (if this execution still owns the workflow) and wake its waiters."""
    done_key = notifier.key("w", ctx.workflow_id)
    finished = system_db.finish_workflow(
        ctx.workflow_id, ctx.executor_id, status, output, error, wake_key=done_key
    )
    if finished:
        notifier.current().wake(done_key)
    return finished


def record_operation(
    ctx: WorkflowContext,
    function_id: int,
    function_name: str,
    *,
    output: str | None = None,
    error: str | None = None,
    child_workflow_id: str | None = None,
    started_at: Any = None,
) -> None:
    """Record an operation of the running workflow, or stop it if it lost ownership."""
    recorded = system_db.record_operation(
        ctx.workflow_id,
        ctx.executor_id,
        function_id,
        function_name,
        output=output,
        error=error,
        child_workflow_id=child_workflow_id,
        started_at=started_at or system_db.now(),
    )
    if not recorded:
        raise lost_ownership(ctx)


def lost_ownership(ctx: WorkflowContext) -> BaseException:
    """Explain why a checkpoint of this execution was refused, as the exception to raise."""
    row = system_db.get_workflow(ctx.workflow_id)
    if row is None:
        return DBOSNonExistentWorkflowError(
            f"Workflow {ctx.workflow_id!r} was deleted while it was running."
        )
    if row.status == Status.CANCELLED:
        return DBOSWorkflowCancelledError(f"Workflow {ctx.workflow_id!r} was cancelled.")
    logger.info(
        "Workflow %s is now run by another execution (executor %s); this one stops.",
        ctx.workflow_id,
        row.executor_id,
    )
    return Superseded(ctx.workflow_id)


def run_claimed(claimed: system_db.ClaimedWorkflow, executor_id: str) -> Any:
    """Re-run a recovered workflow from the start, replaying its recorded operations."""
    entry = registry.get_workflow(claimed.name)
    args, kwargs = serialization.loads_arguments(claimed.inputs)
    recorded = system_db.load_operations(claimed.workflow_id)
    return execute(entry, claimed.workflow_id, executor_id, args, kwargs, recorded)


def local_future(workflow_id: str) -> Future[Any] | None:
    with _running_lock:
        return _running.get(workflow_id)


def await_result(workflow_id: str, timeout: float | None) -> Any:
    """Wait until a workflow ends and return its result, or raise its error.

    Raises TimeoutError when `timeout` seconds pass first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    listener = notifier.current()
    with listener.subscribe(notifier.key("w", workflow_id)) as event:
        while True:
            outcome = system_db.get_outcome(workflow_id)
            if outcome is None:
                raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")
            finished = _outcome(workflow_id, *outcome)
            if finished is not None:
                return finished[0]
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"Workflow {workflow_id!r} did not finish within {timeout} s.")
            listener.wait(event, remaining)


def _outcome(workflow_id: str, status: str, output: str | None, error: str | None) -> tuple | None:
    """Return (result,) for a finished workflow, raise its error, or None while it runs."""
    if status == Status.SUCCESS:
        return (serialization.loads(output),)
    if status == Status.ERROR:
        raise serialization.loads_error(error or "")
    if status == Status.CANCELLED:
        raise DBOSAwaitedWorkflowCancelledError(f"Workflow {workflow_id!r} was cancelled.")
    if status == Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
        raise DBOSMaxRecoveryAttemptsExceededError(
            f"Workflow {workflow_id!r} was recovered too many times and was stopped."
        )
    return None
