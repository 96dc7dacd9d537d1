"""Durable time: sleeps and wait deadlines that survive a restart, and parking long waits."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Sequence

from django.db import transaction

from .. import conf
from . import aio, cancellation, clock, notifier, parking, serialization, system_db, validation
from .context import WorkflowContext, workflow_context
from .workflows import lost_ownership, next_operation, next_operation_async, record_operation

SLEEP = "DBOS.sleep"


def durable_deadline(ctx: WorkflowContext, function_id: int, seconds: float) -> float:
    """Return the wake-up time recorded at this position, recording now + seconds the first time.

    A workflow recovered in the middle of a wait finds the original deadline here, so it only
    waits for the time that is left.
    """
    operation = ctx.recorded_operation(function_id, SLEEP)
    if operation is not None:
        return float(serialization.loads(operation.output))
    wake_at = clock.time() + seconds
    record_operation(ctx, function_id, SLEEP, output=serialization.dumps(wake_at))
    return wake_at


def sleep(seconds: float) -> None:
    """Sleep durably inside a workflow (the wake-up time is recorded); plainly elsewhere."""
    seconds = validation.duration(seconds, "seconds")
    ctx = workflow_context()
    if ctx is None:
        time.sleep(seconds)
        return
    wake_at = durable_deadline(ctx, next_operation(ctx), seconds)
    cancelled_key = notifier.key("c", ctx.workflow_id)
    with notifier.current().subscribe(cancelled_key) as cancelled:
        while (remaining := wake_at - clock.time()) > 0:
            waiting = f"sleeping until {utc(wake_at):%Y-%m-%d %H:%M:%S} UTC"
            park_if_long(ctx, cancelled, remaining, [cancelled_key], wake_at, waiting)
            cancellation.wait(ctx, cancelled, remaining)


async def sleep_async(seconds: float) -> None:
    """`sleep` for async workflows: it waits on the event loop, holding no thread."""
    seconds = validation.duration(seconds, "seconds")
    ctx = workflow_context()
    if ctx is None:
        await asyncio.sleep(seconds)
        return
    function_id = await next_operation_async(ctx)
    wake_at = await aio.run_sync(durable_deadline, ctx, function_id, seconds)
    cancelled_key = notifier.key("c", ctx.workflow_id)
    with notifier.current().subscribe(cancelled_key, waiter=aio.LoopEvent()) as cancelled:
        while (remaining := wake_at - clock.time()) > 0:
            await cancellation.wait_async(ctx, cancelled, remaining)


def utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def park_if_long(
    ctx: WorkflowContext,
    event: threading.Event,
    remaining: float,
    wake_keys: Sequence[str],
    wake_at: float,
    waiting: str,
) -> None:
    """Give the thread back (raise `Parked`) if this wait may last longer than
    PARK_WAITS_OVER_SECONDS and the workflow can be re-run from the start; return otherwise.

    `event` is the wait's notifier subscription, taken before it last looked at the database:
    if it was woken since, the wait looks again instead of parking.
    """
    threshold = conf.get("PARK_WAITS_OVER_SECONDS")
    if (
        ctx.resume is None
        or threshold is None
        or remaining <= threshold
        or transaction.get_connection(system_db.alias()).in_atomic_block
    ):
        return
    if ctx.deadline is not None:
        wake_at = min(wake_at, ctx.deadline.timestamp())
    wake_moment = utc(wake_at)
    lot = parking.current()
    parked = lot.enter(ctx.workflow_id, wake_keys, wake_moment, ctx.resume)
    if event.is_set():
        lot.leave(parked)
        return
    try:
        if not system_db.park_workflow(
            ctx.workflow_id, ctx.executor_id, ctx.execution, waiting, wake_moment
        ):
            raise lost_ownership(ctx)
    except BaseException:
        lot.leave(parked)
        raise
    raise parking.Parked(parked)
