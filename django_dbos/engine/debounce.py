"""Debouncing: one workflow per burst of calls with a key, started once the calls stop.

There is no helper workflow (as in DBOS Transact 3.4): the target workflow is enqueued delayed,
with a deduplication id made of its name and the key, and each later call of the burst "bounces"
it: one guarded UPDATE gives it the call's arguments and pushes its dispatch back, while it
still waits. Once a worker claims it, the claim releases the deduplication id, and the next
call enqueues a new workflow. Every step is one statement that re-checks the row, so callers in
any number of processes agree on one workflow per burst.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import DBOSException, DBOSInvalidArgumentError, DBOSQueueDeduplicatedError
from . import clock, enqueue, registry, serialization, system_db, validation, workflows
from .context import WorkflowContext, start_options, workflow_context
from .steps import inside_step, replayed

# The operation a debounce inside a workflow records: the id of the workflow it debounced.
OPERATION = "DBOS.debounce"
# A call loses a race each time another process enqueues or starts this key's workflow between
# two of its statements; this many losses in a row means something holds the key for good.
MAX_ATTEMPTS = 50
# The enqueue options a debounce sets itself, and why a caller may not.
OWNED_OPTIONS = {
    "deduplication_id": "the debounce key is the workflow's deduplication id",
    "delay_seconds": "the debounce period is the workflow's delay",
    "priority": "a debounced workflow has no priority",
    "queue_partition_key": "partitioned queues do not deduplicate, which debouncing needs",
}

# Enqueues a new debounced workflow with these enqueue options (its deduplication id and
# delay), returning its id; raises DBOSQueueDeduplicatedError when the id is taken.
EnqueueFresh = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class Debounce:
    """What a debouncer debounces: a workflow (by name) on a queue, and the cap of a burst."""

    workflow_name: str
    queue_name: str
    timeout_seconds: float | None

    @classmethod
    def checked(
        cls, workflow_name: str, queue_name: str, timeout_seconds: float | None
    ) -> Debounce:
        if timeout_seconds is not None:
            timeout_seconds = validation.duration(timeout_seconds, "debounce_timeout_sec")
        return cls(workflow_name, queue_name, timeout_seconds)


def reject_owned_options(options: Mapping[str, Any]) -> None:
    """Refuse enqueue options that a debounce sets itself."""
    for option, reason in OWNED_OPTIONS.items():
        if options.get(option) is not None:
            raise DBOSInvalidArgumentError(
                f"A debounced workflow cannot be enqueued with {option}: {reason}. Remove it "
                "from the SetEnqueueOptions (or the options) around the debounce."
            )


def debounce_here(
    target: Debounce,
    entry: registry.Registered,
    queue: registry.QueueSpec,
    key: str,
    period: float,
    args: tuple,
    kwargs: dict,
) -> str:
    """Debounce a workflow registered in this process; return the id of the burst's workflow.

    A SetWorkflowID around the call names the workflow if this call enqueues it; a call that
    joins a burst returns the existing workflow's id.
    """
    options = workflows.take_start_options()
    reject_owned_options(options.enqueue)

    def enqueue_fresh(fields: dict[str, Any]) -> str:
        attempt = options.nested()  # each attempt uses the SetWorkflowID id again
        attempt.enqueue.update(fields)
        token = start_options.set(attempt)
        try:
            handle = workflows.start(entry, args, kwargs, inline=False, queue=queue)
        finally:
            start_options.reset(token)
        if queue.name != enqueue.INTERNAL_QUEUE:
            enqueue.ensure_row(queue)
        return handle.workflow_id

    return debounce(target, key, period, args, kwargs, enqueue_fresh)


def debounce(
    target: Debounce,
    key: str,
    period: float,
    args: tuple,
    kwargs: dict,
    enqueue_fresh: EnqueueFresh,
) -> str:
    """Join the burst of `key` (pushing its workflow back, with these arguments) or start one;
    return the id of its workflow.

    Inside a workflow this is one operation: its outcome is recorded, and a replay returns the
    recorded workflow id without bouncing anything.
    """
    validation.name(key, "debounce key", allow_empty=False)
    period = validation.duration(period, "debounce_period_sec")
    deduplication_id = validation.name(
        f"{target.workflow_name}-{key}", "deduplication id of the debounce (name-key)"
    )
    inputs = serialization.dumps_arguments(args, kwargs)
    join = partial(_join_or_enqueue, target, deduplication_id, period, inputs, enqueue_fresh)
    ctx = workflow_context()
    return join() if ctx is None else _debounce_in_workflow(ctx, join)


def _debounce_in_workflow(ctx: WorkflowContext, join: Callable[[], str]) -> str:
    """`join` as one recorded operation of the calling workflow: the bounce and its checkpoint
    commit together, so a recovery never bounces a second time."""
    function_id = workflows.next_operation(ctx)
    done, workflow_id = replayed(ctx, function_id, OPERATION)
    if done:
        return str(workflow_id)
    try:
        # Inside a step: the debounced workflow belongs to every caller of its burst, it is
        # no child of this one.
        with inside_step(ctx), system_db.write_transaction():
            workflow_id = join()
            workflows.record_operation(
                ctx, function_id, OPERATION, output=serialization.dumps(workflow_id)
            )
    except DBOSQueueDeduplicatedError as exc:
        workflows.record_operation(
            ctx, function_id, OPERATION, error=serialization.dumps_error(exc)
        )
        raise
    return workflow_id


def _join_or_enqueue(
    target: Debounce,
    deduplication_id: str,
    period: float,
    inputs: str,
    enqueue_fresh: EnqueueFresh,
) -> str:
    """Bounce the waiting workflow of the key, else enqueue one, until one of the two wins."""
    for _ in range(MAX_ATTEMPTS):
        moment = clock.now()
        bounced = system_db.bounce(
            target.queue_name,
            deduplication_id,
            target.workflow_name,
            inputs,
            moment + datetime.timedelta(seconds=period),
        )
        if bounced is not None:
            return bounced
        holder = system_db.deduplication_holder(target.queue_name, deduplication_id)
        if holder is not None:
            if not holder.debounced or holder.name != target.workflow_name:
                raise DBOSQueueDeduplicatedError(
                    f"Queue {target.queue_name!r} has workflow {holder.workflow_id!r} "
                    f"({holder.name}) with deduplication id {deduplication_id!r}, which this "
                    "debounce would use: choose another debounce key."
                )
            # Enqueued by another caller once the bounce had looked (or claimed since, which
            # frees the id): look again.
            continue
        deadline = None
        if target.timeout_seconds is not None:
            deadline = moment + datetime.timedelta(seconds=target.timeout_seconds)
        try:
            return enqueue_fresh(
                {
                    "deduplication_id": deduplication_id,
                    "delay_seconds": period,
                    "debounced": True,
                    "debounce_deadline": deadline,
                }
            )
        except DBOSQueueDeduplicatedError:
            continue  # another caller enqueued it first: bounce that one
    raise DBOSException(
        f"Could not debounce {deduplication_id!r} on queue {target.queue_name!r}: other callers "
        f"won {MAX_ATTEMPTS} races in a row. Try again."
    )
