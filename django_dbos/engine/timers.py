"""Durable time: sleeps and wait deadlines that survive a restart."""

from __future__ import annotations

import time

from . import cancellation, clock, notifier, serialization, validation
from .context import WorkflowContext, workflow_context
from .workflows import next_operation, record_operation

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
    with notifier.current().subscribe(notifier.key("c", ctx.workflow_id)) as cancelled:
        while (remaining := wake_at - clock.time()) > 0:
            cancellation.wait(ctx, cancelled, remaining)
