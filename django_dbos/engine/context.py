"""What the engine knows about the code running now: the current workflow and start options.

Both live in context variables, so they follow a workflow through its own thread (and, later,
its own task on an event loop) and never leak into another.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..errors import DBOSUnexpectedStepError


@dataclass(frozen=True)
class RecordedOperation:
    """One row of the operation outputs, as replay needs it."""

    function_id: int
    function_name: str
    output: str | None
    error: str | None
    child_workflow_id: str | None


@dataclass
class WorkflowContext:
    """The state of one execution of a workflow body."""

    workflow_id: str
    name: str
    executor_id: str
    execution: int
    # None for a fresh workflow: nothing is recorded, so no step needs to look anything up.
    recorded: dict[int, RecordedOperation] | None = None
    deadline: datetime.datetime | None = None
    # Set (in any process) when the workflow may have been cancelled; the database confirms.
    cancel_hint: threading.Event | None = None
    queue_name: str | None = None
    # How to run this workflow again once woken, when it may park (see engine/parking.py);
    # None when it runs on its caller's thread, which waits for its result.
    resume: Callable[[], Any] | None = None
    is_async: bool = False
    function_id: int = 0
    in_step: bool = False

    def next_function_id(self) -> int:
        self.function_id += 1
        return self.function_id

    def awaiting_unfinished(self, workflow_id: str) -> None:
        """This workflow's code waits for another that has not ended (a child, say): an
        execution waits; a replay (engine/replay.py) stops, its record ending there."""

    def recorded_operation(self, function_id: int, function_name: str) -> RecordedOperation | None:
        """Return what was recorded at this position, checking that the code still agrees."""
        if not self.recorded:
            return None
        operation = self.recorded.get(function_id)
        if operation is not None and operation.function_name != function_name:
            raise DBOSUnexpectedStepError(
                f"Workflow {self.workflow_id!r} recorded {operation.function_name!r} as operation "
                f"{function_id}, but the code now calls {function_name!r} there. The workflow's "
                "code changed while it was running; use DBOS.patch() to change it safely."
            )
        return operation


@dataclass
class StartOptions:
    """Options set by SetWorkflowID, SetWorkflowTimeout, SetEnqueueOptions and
    SetWorkflowAttributes."""

    workflow_id: str | None = None
    timeout_seconds: float | None = None
    timeout_set: bool = False
    enqueue: dict[str, Any] = field(default_factory=dict)
    # Recorded on every workflow started in the block (not on the children they start: a
    # workflow's body runs without its starter's options).
    attributes: dict[str, Any] | None = None
    # The options of the enclosing block, which this block's copy was made from.
    outer: StartOptions | None = None

    def nested(self) -> StartOptions:
        """A copy for a block inside this one."""
        return StartOptions(
            workflow_id=self.workflow_id,
            timeout_seconds=self.timeout_seconds,
            timeout_set=self.timeout_set,
            enqueue=dict(self.enqueue),
            attributes=self.attributes,
            outer=self,
        )

    def take_workflow_id(self) -> str | None:
        """Return the workflow id for the next start, and forget it in every enclosing block
        too: an id applies to one start only."""
        workflow_id = self.workflow_id
        options: StartOptions | None = self
        while options is not None:
            if options.workflow_id == workflow_id:
                options.workflow_id = None
            options = options.outer
        return workflow_id


current_workflow: ContextVar[WorkflowContext | None] = ContextVar("dbos_workflow", default=None)
start_options: ContextVar[StartOptions | None] = ContextVar("dbos_start_options", default=None)


def workflow_context() -> WorkflowContext | None:
    """Return the workflow whose body is running here, unless we are inside one of its steps."""
    ctx = current_workflow.get()
    if ctx is None or ctx.in_step:
        return None
    return ctx
