"""Starting, running, replaying and awaiting workflows."""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal, overload

from django.dispatch import Signal

from .. import conf
from ..errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSQueueDeduplicatedError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from ..signals import workflow_finished, workflow_started
from ..types import Status, WorkflowHandle
from . import (
    after_commit,
    aio,
    cancellation,
    clock,
    enqueue,
    executor,
    handles,
    metrics,
    notifier,
    parking,
    registry,
    serialization,
    system_db,
    tracing,
    validation,
)
from .context import (
    RecordedOperation,
    StartOptions,
    WorkflowContext,
    current_workflow,
    start_options,
    workflow_context,
)

logger = logging.getLogger("django_dbos")

# How long a running workflow waits for a database that went away before it gives up.
DATABASE_OUTAGE_SECONDS = 600.0
MAX_REPLAYS_AFTER_OUTAGE = 50


# What recording a body's outcome returns when another execution owns the workflow now: the
# caller then adopts that execution's outcome.
ADOPT: Any = object()


class Superseded(BaseException):
    """Internal: another execution owns this workflow now; this one stops and adopts its outcome.

    A BaseException, so that a user's `except Exception:` around a step cannot swallow it.
    """


def take_start_options() -> StartOptions:
    """Return the options for the next start; the workflow id applies to one start only."""
    options = start_options.get()
    if options is None:
        return StartOptions()
    taken = options.nested()
    taken.workflow_id = options.take_workflow_id()
    return taken


@overload
def start(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    *,
    inline: Literal[True],
    queue: registry.QueueSpec | None = None,
) -> Any: ...


@overload
def start(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    *,
    inline: Literal[False],
    queue: registry.QueueSpec | None = None,
) -> WorkflowHandle[Any]: ...


def start(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    *,
    inline: bool,
    queue: registry.QueueSpec | None = None,
) -> Any:
    """Record a workflow and run it: here and now when inline, on the pool or the engine's
    event loop (returning a handle), or, with a queue, leave it ENQUEUED for a worker."""
    workflow_id, claimed, executor_id = _record_start(entry, args, kwargs, queue)
    if claimed is None:
        return _attach(workflow_id, inline)
    if inline:
        return execute(entry, claimed, executor_id, args, kwargs, recorded=None)
    if after_commit.in_transaction():
        # The row is part of the caller's transaction: run only once it commits.
        after_commit.start_at_commit(
            workflow_id, lambda: _launch(entry, claimed, executor_id, args, kwargs)
        )
        return handles.handle(workflow_id)
    return handles.handle(workflow_id, _launch(entry, claimed, executor_id, args, kwargs))


# `start`'s parameters and overloads again, for async callers: the two differ in their bodies.
@overload
async def start_async(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    *,
    inline: Literal[True],
    queue: registry.QueueSpec | None = None,
) -> Any: ...


@overload
async def start_async(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    *,
    inline: Literal[False],
    queue: registry.QueueSpec | None = None,
) -> WorkflowHandle[Any]: ...


async def start_async(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    *,
    inline: bool,
    queue: registry.QueueSpec | None = None,
) -> Any:
    """`start` for async callers: the row is written on a database thread; an async workflow
    called inline then runs here, on the caller's event loop."""
    workflow_id, claimed, executor_id = await aio.run_sync(
        _record_start, entry, args, kwargs, queue
    )
    if claimed is None:
        if inline:
            return await handles.await_result_async(workflow_id, None)
        return handles.handle(workflow_id, handles.running().get(workflow_id))
    if inline:
        return await execute_async(entry, claimed, executor_id, args, kwargs, None)
    return handles.handle(workflow_id, _launch(entry, claimed, executor_id, args, kwargs))


def _launch(
    entry: registry.Registered,
    claimed: system_db.ClaimedWorkflow,
    executor_id: str,
    args: tuple,
    kwargs: dict,
) -> Future[Any]:
    """Run a workflow just started here on the pool, or on the event loop if it is async."""
    future = handles.running().track(claimed.workflow_id)
    process = executor.current()
    if entry.is_async:
        process.loop.submit(execute_async(entry, claimed, executor_id, args, kwargs, None))
    else:
        resume = partial(submit, claimed, executor_id, parked=True)
        process.pool.submit(
            partial(execute, entry, claimed, executor_id, args, kwargs, None, resume=resume)
        )
    return future


def _record_start(
    entry: registry.Registered, args: tuple, kwargs: dict, queue: registry.QueueSpec | None
) -> tuple[str, system_db.ClaimedWorkflow | None, str]:
    """Write a new workflow's row (and, in a parent, the child's checkpoint).

    Returns its id and, when it is this process's to run now, the claimed workflow and this
    executor's id; None when it is queued, or is an existing workflow to attach to.
    """
    parent = workflow_context()
    options = take_start_options()
    function_id = 0
    if parent is not None:
        function_id = next_operation(parent)
        recorded = parent.recorded_operation(function_id, entry.name)
        if recorded is not None:
            if recorded.error is not None:
                raise serialization.loads_error(recorded.error)
            return recorded.child_workflow_id or "", None, ""
    if options.workflow_id is not None:
        workflow_id = validation.workflow_id(options.workflow_id)
    elif parent is not None:
        workflow_id = validation.workflow_id(f"{parent.workflow_id}-{function_id}")
    else:
        workflow_id = str(uuid.uuid4())
    inputs = serialization.dumps_arguments(args, kwargs)
    timeout_ms, deadline, detached = _timeout(options, parent, queued=queue is not None)
    trace_context = tracing.carrier()

    executor_id = ""
    if queue is None:
        executor_id = executor.current().ensure_started()
        row = system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=entry.name,
            status=Status.PENDING,
            inputs=inputs,
            executor_id=executor_id,
            application_version=registry.application_version(),
            timeout_ms=timeout_ms,
            deadline=deadline,
            parent_workflow_id=parent.workflow_id if parent else None,
            detached=detached,
            trace_context=trace_context,
            attributes=options.attributes,
        )
        inserted = system_db.insert_workflow(row)
    else:
        row = system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=entry.name,
            status=Status.ENQUEUED,
            inputs=inputs,
            executor_id=None,
            timeout_ms=timeout_ms,
            deadline=deadline,
            parent_workflow_id=parent.workflow_id if parent else None,
            detached=detached,
            trace_context=trace_context,
            attributes=options.attributes,
            **enqueue.enqueue_fields(
                queue.name, queue, options.enqueue, registry.application_version()
            ),
        )
        with tracing.enqueue_span(entry.name, workflow_id, queue.name):
            inserted = system_db.insert_workflow(row, wake_key=system_db.QUEUE_ACTIVITY)
    if not inserted:
        try:
            check_existing(row)
        except (DBOSQueueDeduplicatedError, DBOSWorkflowConflictIDError) as exc:
            if parent is not None:  # the refusal is the start's outcome, replayed as such
                record_operation(
                    parent, function_id, entry.name, error=serialization.dumps_error(exc)
                )
            raise
    if parent is not None:
        record_operation(parent, function_id, entry.name, child_workflow_id=workflow_id)
    if inserted and queue is not None and after_commit.in_transaction():
        after_commit.start_at_commit(workflow_id)  # workers see it once the caller commits
    if not inserted or queue is not None:
        return workflow_id, None, executor_id
    claimed = system_db.ClaimedWorkflow(
        workflow_id, entry.name, inputs, 0, deadline, trace_context=trace_context
    )
    return workflow_id, claimed, executor_id


def submit(
    claimed: system_db.ClaimedWorkflow, executor_id: str, *, parked: bool = False
) -> Future[Any]:
    """Run a claimed workflow here (on the pool, or the event loop if it is async); return the
    future of its result. If it parks, it comes back here when woken (`parked=True`)."""
    future = handles.running().track(claimed.workflow_id)
    process = executor.current()
    if registry.is_async_workflow(claimed.name):
        process.loop.submit(run_claimed_async(claimed, executor_id))
    else:
        resume = partial(submit, claimed, executor_id, parked=True)
        process.pool.submit(run_claimed, claimed, executor_id, resume, parked)
    return future


def check_existing(row: system_db.NewWorkflow) -> None:
    """After an insert found its id taken: fine if it is the same workflow (idempotency), else
    raise the conflict (another workflow's id, or a taken deduplication id)."""
    existing = system_db.get_workflow(row.workflow_id)
    if existing is None:
        raise DBOSQueueDeduplicatedError(
            f"Queue {row.queue_name!r} already has an active workflow with deduplication id "
            f"{row.deduplication_id!r}; it was not enqueued again."
        )
    if existing.name != row.name:
        raise DBOSWorkflowConflictIDError(
            f"Workflow id {row.workflow_id!r} is already used by workflow {existing.name!r}; "
            f"it cannot also run {row.name!r}. Choose another id."
        )


def _timeout(
    options: StartOptions, parent: WorkflowContext | None, *, queued: bool
) -> tuple[int | None, datetime.datetime | None, bool]:
    """Return (timeout_ms, deadline, detached) for a new workflow.

    A timeout counts from the start (from the dequeue for a queued workflow); a child inherits
    its parent's deadline unless it is started under SetWorkflowTimeout(None): detached.
    """
    if options.timeout_set:
        if options.timeout_seconds is None:
            return None, None, parent is not None
        seconds = validation.duration(options.timeout_seconds, "The workflow timeout")
        deadline = None if queued else clock.now() + datetime.timedelta(seconds=seconds)
        return int(seconds * 1000), deadline, False
    if parent is not None and parent.deadline is not None:
        return None, parent.deadline, False
    return None, None, False


def _attach(workflow_id: str, inline: bool) -> Any:
    """Join an existing workflow: wait for its result (inline) or return a handle to it."""
    if inline:
        return handles.await_result(workflow_id, None)
    return handles.handle(workflow_id, handles.running().get(workflow_id))


def execute(
    entry: registry.Registered,
    claimed: system_db.ClaimedWorkflow,
    executor_id: str,
    args: tuple,
    kwargs: dict,
    recorded: dict[int, RecordedOperation] | None,
    resume: Callable[[], Any] | None = None,
) -> Any:
    """Run a workflow body that this executor owns and record its outcome.

    With `resume`, a long wait may park the workflow: this returns `parking.PARKED`, and
    `resume()` runs it again once it is woken.
    """
    future = handles.running().track(claimed.workflow_id)
    parked = None
    with _execution(entry, claimed, executor_id, recorded, resume) as ctx:
        try:
            result = _run_until_recorded(entry, ctx, args, kwargs)
        except parking.Parked as stop:
            parked = stop.workflow
        except BaseException as exc:
            handles.running().settle(ctx.workflow_id, future, error=exc)
            raise
        else:
            handles.running().settle(ctx.workflow_id, future, result=result)
            return result
    parking.current().settle(parked)
    return parking.PARKED


async def execute_async(
    entry: registry.Registered,
    claimed: system_db.ClaimedWorkflow,
    executor_id: str,
    args: tuple,
    kwargs: dict,
    recorded: dict[int, RecordedOperation] | None,
) -> Any:
    """`execute` for an async workflow, on the current event loop (it never parks: waiting
    holds no thread)."""
    future = handles.running().track(claimed.workflow_id)
    with _execution(entry, claimed, executor_id, recorded, None) as ctx:
        try:
            result = await _run_until_recorded_async(entry, ctx, args, kwargs)
        except BaseException as exc:
            handles.running().settle(ctx.workflow_id, future, error=exc)
            raise
        handles.running().settle(ctx.workflow_id, future, result=result)
        return result


@contextmanager
def _execution(
    entry: registry.Registered,
    claimed: system_db.ClaimedWorkflow,
    executor_id: str,
    recorded: dict[int, RecordedOperation] | None,
    resume: Callable[[], Any] | None,
) -> Iterator[WorkflowContext]:
    """Make the context of one execution current, watching for its cancellation and deadline."""
    workflow_id = claimed.workflow_id
    with (
        notifier.current().subscribe(notifier.key("c", workflow_id)) as cancel_hint,
        cancellation.deadline_timer(workflow_id, claimed.deadline),
        tracing.workflow_span(
            entry.name,
            workflow_id,
            executor_id=executor_id,
            execution=claimed.execution,
            recovery_attempts=claimed.recovery_attempts,
            queue_name=claimed.queue_name,
            trace_context=claimed.trace_context,
        ),
    ):
        ctx = WorkflowContext(
            workflow_id,
            entry.name,
            executor_id,
            claimed.execution,
            recorded,
            deadline=claimed.deadline,
            cancel_hint=cancel_hint,
            queue_name=claimed.queue_name,
            resume=resume,
            is_async=entry.is_async,
        )
        workflow_token = current_workflow.set(ctx)
        options_token = start_options.set(None)
        try:
            yield ctx
        finally:
            start_options.reset(options_token)
            current_workflow.reset(workflow_token)


def _run_until_recorded(
    entry: registry.Registered, ctx: WorkflowContext, args: tuple, kwargs: dict
) -> Any:
    """Run the body; if the database goes away under one of its checkpoints, wait for it and
    replay from the start (the workflow stays this execution's: nobody else may take it while
    this process heartbeats, so giving it up would strand it)."""
    for _ in range(MAX_REPLAYS_AFTER_OUTAGE):
        try:
            return _run_body(entry, ctx, args, kwargs)
        except system_db.DatabaseUnavailable as exc:
            _wait_out_outage(ctx, exc)
    raise _too_many_outages(ctx)


async def _run_until_recorded_async(
    entry: registry.Registered, ctx: WorkflowContext, args: tuple, kwargs: dict
) -> Any:
    for _ in range(MAX_REPLAYS_AFTER_OUTAGE):
        try:
            return await _run_body_async(entry, ctx, args, kwargs)
        except system_db.DatabaseUnavailable as exc:
            await aio.run_sync(_wait_out_outage, ctx, exc)
    raise _too_many_outages(ctx)


def _wait_out_outage(ctx: WorkflowContext, exc: system_db.DatabaseUnavailable) -> None:
    """Wait for the database to come back, then get ready to replay the body from the start."""
    logger.warning(
        "Workflow %s lost its database connection (%s); it resumes when the database is back.",
        ctx.workflow_id,
        exc,
    )
    if not system_db.wait_until_reachable(give_up_after=DATABASE_OUTAGE_SECONDS):
        raise DBOSException(
            f"Workflow {ctx.workflow_id!r} stopped: the database was unreachable for "
            f"{DATABASE_OUTAGE_SECONDS:.0f} s. A worker recovers it once this process's "
            "executor stops heartbeating."
        )
    ctx.recorded = system_db.load_operations(ctx.workflow_id)
    ctx.function_id = 0
    ctx.in_step = False


def _too_many_outages(ctx: WorkflowContext) -> DBOSException:
    return DBOSException(
        f"Workflow {ctx.workflow_id!r} stopped: it lost its database connection "
        f"{MAX_REPLAYS_AFTER_OUTAGE} times. A worker recovers it once this process's executor "
        "stops heartbeating."
    )


def next_operation(ctx: WorkflowContext) -> int:
    """Take the next function id, stopping first if the workflow was cancelled or timed out."""
    if ctx.is_async and aio.on_event_loop():
        raise DBOSException(
            f"Workflow {ctx.name!r} is async: await its steps (declare them `async def`) and use "
            "the _async DBOS functions (DBOS.recv_async, ...); run a sync step or DBOS function "
            "with `await asyncio.to_thread(...)`."
        )
    cancellation.check(ctx)
    return ctx.next_function_id()


async def next_operation_async(ctx: WorkflowContext) -> int:
    """`next_operation` on an event loop: the database is only asked when a cancellation or
    the deadline may have come."""
    if cancellation.may_have_stopped(ctx):
        await aio.run_sync(cancellation.check, ctx)
    return ctx.next_function_id()


def _run_body(entry: registry.Registered, ctx: WorkflowContext, args: tuple, kwargs: dict) -> Any:
    _signal(workflow_started, ctx)
    try:
        result = entry.func(*args, **kwargs)
    except BaseException as exc:
        outcome = _record_failure(ctx, exc)
    else:
        outcome = _record_success(entry, ctx, result)
    return handles.await_result(ctx.workflow_id, None) if outcome is ADOPT else outcome


async def _run_body_async(
    entry: registry.Registered, ctx: WorkflowContext, args: tuple, kwargs: dict
) -> Any:
    if workflow_started.receivers:
        await aio.run_sync(_signal, workflow_started, ctx)
    try:
        result = await entry.func(*args, **kwargs)
    except BaseException as exc:
        outcome = await aio.run_sync(_record_failure, ctx, exc)
    else:
        outcome = await aio.run_sync(_record_success, entry, ctx, result)
    return await handles.await_result_async(ctx.workflow_id, None) if outcome is ADOPT else outcome


def _record_failure(ctx: WorkflowContext, exc: BaseException) -> Any:
    """Record how the body failed and raise what its caller sees; return ADOPT instead when
    another execution owns the outcome."""
    if isinstance(exc, Superseded):
        return ADOPT
    if isinstance(exc, DBOSWorkflowCancelledError):
        metrics.workflow_finished(ctx.name, Status.CANCELLED)
        _signal(workflow_finished, ctx, status=Status.CANCELLED)
        raise DBOSAwaitedWorkflowCancelledError(
            f"Workflow {ctx.workflow_id!r} was cancelled."
        ) from exc
    if not isinstance(exc, Exception):  # parked, the database away, the process stopping
        raise exc
    system_db.unavailable_if_disconnected(exc)  # the database went away under the body
    if not _finish(ctx, Status.ERROR, error=serialization.dumps_error(exc)):
        return ADOPT
    raise exc


def _record_success(entry: registry.Registered, ctx: WorkflowContext, result: Any) -> Any:
    """Record the result; return it, or ADOPT when another execution owns the outcome."""
    try:
        output = serialization.dumps(result, f"result of workflow {entry.name!r}")
    except DBOSSerializationError as exc:
        _finish(ctx, Status.ERROR, error=serialization.dumps_error(exc))
        raise
    if not _finish(ctx, Status.SUCCESS, output=output):
        return ADOPT
    return result


def _finish(
    ctx: WorkflowContext, status: str, *, output: str | None = None, error: str | None = None
) -> bool:
    """Record the outcome (if this execution still owns the workflow) and wake its waiters."""
    done_key = notifier.key("w", ctx.workflow_id)
    wake_keys = [done_key] if ctx.queue_name is None else [done_key, system_db.QUEUE_ACTIVITY]
    finished = system_db.finish_workflow(
        ctx.workflow_id,
        ctx.executor_id,
        status,
        output,
        error,
        execution=ctx.execution,
        wake_keys=wake_keys,
    )
    if finished:
        notifier.current().wake(done_key)
        metrics.workflow_finished(ctx.name, status)
        _signal(workflow_finished, ctx, status=status)
    return finished


def _signal(signal: Signal, ctx: WorkflowContext, **arguments: Any) -> None:
    if not signal.receivers:
        return
    for receiver, response in signal.send_robust(
        sender=ctx.name, workflow_id=ctx.workflow_id, **arguments
    ):
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r failed for workflow %s: %r", receiver, ctx.workflow_id, response
            )


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
        execution=ctx.execution,
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


def run_claimed(
    claimed: system_db.ClaimedWorkflow,
    executor_id: str,
    resume: Callable[[], Any] | None = None,
    parked: bool = False,
) -> Any:
    """Run a claimed workflow (recovered, dequeued, resumed, forked, woken) from the start,
    replaying whatever it has recorded. See `execute` for `resume`."""
    entry, args, kwargs, recorded = _load_claimed(claimed, executor_id, parked)
    return execute(entry, claimed, executor_id, args, kwargs, recorded, resume)


async def run_claimed_async(claimed: system_db.ClaimedWorkflow, executor_id: str) -> Any:
    """`run_claimed` for an async workflow, on the current event loop."""
    entry, args, kwargs, recorded = await aio.run_sync(_load_claimed, claimed, executor_id, False)
    return await execute_async(entry, claimed, executor_id, args, kwargs, recorded)


def _load_claimed(
    claimed: system_db.ClaimedWorkflow, executor_id: str, parked: bool
) -> tuple[registry.Registered, tuple, dict, dict[int, RecordedOperation]]:
    """Read what running a claimed workflow again needs: its arguments and recorded operations
    (and, after a park, clear what it waited for).

    A lost connection is waited out: this executor owns the workflow while it heartbeats, so
    giving up would strand it.
    """
    for _ in range(MAX_REPLAYS_AFTER_OUTAGE):
        try:
            return _read_claimed(claimed, executor_id, parked)
        except Exception as exc:
            if not system_db.is_disconnect(exc):
                raise
            logger.warning(
                "Workflow %s could not be loaded (%s); it runs when the database is back.",
                claimed.workflow_id,
                exc,
            )
            if not system_db.wait_until_reachable(give_up_after=DATABASE_OUTAGE_SECONDS):
                raise
    raise DBOSException(
        f"Workflow {claimed.workflow_id!r} could not be loaded: the database connection was "
        f"lost {MAX_REPLAYS_AFTER_OUTAGE} times."
    )


def _read_claimed(
    claimed: system_db.ClaimedWorkflow, executor_id: str, parked: bool
) -> tuple[registry.Registered, tuple, dict, dict[int, RecordedOperation]]:
    if parked:
        system_db.unpark_workflow(claimed.workflow_id, executor_id, claimed.execution)
    entry = registry.get_workflow(claimed.name)
    try:
        args, kwargs = serialization.loads_arguments(claimed.inputs)
    except DBOSSerializationError as exc:  # it can never run: end it, rather than hang
        end_in_error(claimed, executor_id, exc)
        raise
    return entry, args, kwargs, system_db.load_operations(claimed.workflow_id)


def runnable(claimed: system_db.ClaimedWorkflow, executor_id: str) -> registry.Registered | None:
    """The registered workflow to run a claimed (dequeued or recovered) workflow with, or None
    after ending it, when it must not run.

    A workflow whose name nothing registers in this process ends in ERROR with a
    DBOSNotRegisteredError: seen in the admin, raised by `get_result()`, resumable once code
    that registers it is deployed. It is not left PENDING on this live worker, where nothing
    would ever run it, nor would its waiters ever wake (workers of another application version
    never claim it, so a deploy that pins a new version never gets here). A workflow recovered
    more often than its `max_recovery_attempts` ends in MAX_RECOVERY_ATTEMPTS_EXCEEDED.
    """
    try:
        entry = registry.get_workflow(claimed.name)
    except DBOSNotRegisteredError as exc:
        end_in_error(
            claimed,
            executor_id,
            DBOSNotRegisteredError(
                f"Workflow {claimed.workflow_id!r} cannot run on executor {executor_id}: {exc} "
                "Once a worker that registers it runs, resume the workflow."
            ),
        )
        return None
    limit = entry.options.get("max_recovery_attempts") or int(conf.get("MAX_RECOVERY_ATTEMPTS"))
    if claimed.recovery_attempts > limit:
        logger.error(
            "Workflow %s was recovered %d times (its limit is %d); it is now %s.",
            claimed.workflow_id,
            claimed.recovery_attempts,
            limit,
            Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
        )
        if system_db.give_up(claimed.workflow_id):
            metrics.workflow_finished(claimed.name, Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED)
        return None
    return entry


def end_in_error(
    claimed: system_db.ClaimedWorkflow, executor_id: str, error: DBOSException
) -> None:
    """End a claimed workflow that can never run in ERROR, saying why, and wake its waiters."""
    logger.error("Cannot run workflow %s: %s", claimed.workflow_id, error)
    ended = system_db.finish_workflow(
        claimed.workflow_id,
        executor_id,
        Status.ERROR,
        None,
        serialization.dumps_error(error),
        execution=claimed.execution,
        wake_keys=[notifier.key("w", claimed.workflow_id), system_db.QUEUE_ACTIVITY],
    )
    if ended:
        metrics.workflow_finished(claimed.name, Status.ERROR)
