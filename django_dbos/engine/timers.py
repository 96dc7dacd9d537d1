"""Durable time: sleeps and wait deadlines that survive a restart."""

from __future__ import annotations

import time
from typing import Any

from . import serialization
from .context import WorkflowContext, workflow_context
from .workflows import record_operation

SLEEP = "DBOS.sleep"
# Longer durations are clamped to this (about 100 years): a wait that long never ends anyway,
# and the deadline must stay a representable time.
LONGEST_WAIT_SECONDS = 100 * 365 * 24 * 3600.0


def check_duration(value: Any, name: str) -> float:
    """Return a wait duration in seconds, refusing what is not a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"{name} must be a number of seconds, not {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must not be negative (got {value}).")
    return min(float(value), LONGEST_WAIT_SECONDS)


def durable_deadline(ctx: WorkflowContext, function_id: int, seconds: float) -> float:
    """Return the wake-up time recorded at this position, recording now + seconds the first time.

    A workflow recovered in the middle of a wait finds the original deadline here, so it only
    waits for the time that is left.
    """
    operation = ctx.recorded_operation(function_id, SLEEP)
    if operation is not None:
        return float(serialization.loads(operation.output))
    wake_at = time.time() + seconds
    record_operation(ctx, function_id, SLEEP, output=serialization.dumps(wake_at))
    return wake_at


def sleep(seconds: float) -> None:
    """Sleep durably inside a workflow (the wake-up time is recorded); plainly elsewhere."""
    seconds = check_duration(seconds, "seconds")
    ctx = workflow_context()
    if ctx is None:
        time.sleep(seconds)
        return
    wake_at = durable_deadline(ctx, ctx.next_function_id(), seconds)
    remaining = wake_at - time.time()
    if remaining > 0:
        time.sleep(remaining)
