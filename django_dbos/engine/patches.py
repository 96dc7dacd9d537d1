"""Patching: changing a workflow's code safely while executions of the old code are in flight.

`patch(name)` records a marker the first time new code passes it. On replay, a recorded marker
means the execution took the new code (True); any other operation at that position means it
took the old code (False), and the marker then takes no function id, so the old recorded
operations still line up.
"""

from __future__ import annotations

from ..errors import DBOSException
from . import serialization
from .context import WorkflowContext, workflow_context
from .workflows import next_operation, record_operation

PATCH_PREFIX = "DBOS.patch-"


def _context(operation: str) -> WorkflowContext:
    ctx = workflow_context()
    if ctx is None:
        raise DBOSException(f"DBOS.{operation}() can only be called inside a workflow.")
    return ctx


def patch(name: str) -> bool:
    """Return True where the code after this call is the new code, for this execution."""
    ctx = _context("patch")
    marker = PATCH_PREFIX + name
    position = ctx.function_id + 1
    if ctx.recorded and position in ctx.recorded:
        if ctx.recorded[position].function_name != marker:
            return False
        ctx.function_id = position
        return True
    record_operation(ctx, next_operation(ctx), marker, output=serialization.dumps(True))
    return True


def deprecate_patch(name: str) -> bool:
    """Retire a patch once no execution of the old code is left: always True, and a recorded
    marker is still consumed so older executions replay."""
    ctx = _context("deprecate_patch")
    position = ctx.function_id + 1
    recorded = ctx.recorded.get(position) if ctx.recorded else None
    if recorded is not None and recorded.function_name == PATCH_PREFIX + name:
        ctx.function_id = position
    return True
