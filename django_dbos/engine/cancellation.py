"""Cancellation and timeouts: a workflow stops before its next operation once cancelled.

Checking costs nothing on the hot path: each running workflow holds a notifier subscription
that a cancellation wakes (in any process), and its deadline is compared with the clock. The
database stays the truth: a wake-up is confirmed there before the workflow is stopped, and every
checkpoint of a cancelled workflow is refused anyway.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections

from ..errors import DBOSWorkflowCancelledError
from ..types import Status
from . import aio, clock, notifier, system_db
from .context import WorkflowContext

logger = logging.getLogger("django_dbos")


def cancel(workflow_id: str) -> list[str]:
    """Cancel a workflow and its unfinished descendants (not detached ones); return their ids."""
    tree = [workflow_id, *system_db.descendants(workflow_id)]
    cancelled = system_db.cancel_workflows(
        tree, wake_keys=lambda wid: [notifier.key("c", wid), notifier.key("w", wid)]
    )
    listener = notifier.current()
    for cancelled_id in cancelled:
        listener.wake(notifier.key("c", cancelled_id))
        listener.wake(notifier.key("w", cancelled_id))
    return cancelled


@contextmanager
def deadline_timer(workflow_id: str, deadline: datetime.datetime | None) -> Iterator[None]:
    """Cancel the workflow when its deadline passes, even in the middle of a long step."""
    if deadline is None:
        yield
        return
    timer = clock.call_at(deadline, _expire, workflow_id)
    try:
        yield
    finally:
        timer.cancel()


def _expire(workflow_id: str) -> None:
    try:
        if cancel(workflow_id):
            logger.info("Workflow %s passed its deadline and was cancelled.", workflow_id)
    except Exception:
        logger.exception("Could not cancel workflow %s at its deadline.", workflow_id)
    finally:
        connections.close_all()


def may_have_stopped(ctx: WorkflowContext) -> bool:
    """Whether `check` has anything to look at (it reads the database only then)."""
    hint = ctx.cancel_hint
    return (hint is not None and hint.is_set()) or (
        ctx.deadline is not None and clock.now() >= ctx.deadline
    )


def check(ctx: WorkflowContext) -> None:
    """Raise DBOSWorkflowCancelledError if the workflow was cancelled or its deadline passed."""
    hint = ctx.cancel_hint
    if hint is not None and hint.is_set():
        hint.clear()
        outcome = system_db.get_outcome(ctx.workflow_id)
        if outcome is not None and outcome[0] == Status.CANCELLED:
            raise DBOSWorkflowCancelledError(f"Workflow {ctx.workflow_id!r} was cancelled.")
    if ctx.deadline is not None and clock.now() >= ctx.deadline:
        logger.info("Workflow %s passed its deadline; cancelling it.", ctx.workflow_id)
        cancel(ctx.workflow_id)
        raise DBOSWorkflowCancelledError(
            f"Workflow {ctx.workflow_id!r} timed out (its deadline was {ctx.deadline})."
        )


def bounded(ctx: WorkflowContext | None, remaining: float | None) -> float | None:
    """Shorten a wait so that it ends by the workflow's deadline."""
    if ctx is None or ctx.deadline is None:
        return remaining
    until_deadline = max(0.0, (ctx.deadline - clock.now()).total_seconds())
    return until_deadline if remaining is None else min(remaining, until_deadline)


async def wait_async(ctx: WorkflowContext | None, event: aio.LoopEvent, remaining: float) -> None:
    """`wait` for a coroutine. It looks at the engine's clock again after each safety-net
    interval (a test's frozen clock, which does not pass by itself, wakes every waiter when it
    moves)."""
    timeout = bounded(ctx, remaining)
    interval = notifier.current().poll_interval()
    await event.wait(interval if timeout is None else min(interval, timeout))
    if ctx is not None and may_have_stopped(ctx):
        await aio.run_sync(check, ctx)


def wait(ctx: WorkflowContext | None, event: threading.Event, remaining: float | None) -> None:
    """Sleep on a notifier subscription, but no longer than the workflow's deadline, then stop
    if the workflow was cancelled or timed out meanwhile.

    In a workflow, `remaining` is in seconds of the engine's clock; outside one (get_event), it
    is the caller's own patience, in real seconds."""
    if ctx is None:
        notifier.current().wait(event, remaining)
        return
    clock.wait(event, bounded(ctx, remaining), notifier.current().wait)
    check(ctx)
