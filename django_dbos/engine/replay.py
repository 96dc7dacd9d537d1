"""The replayer: does a recorded workflow still replay on the current code?

A workflow in flight when new code is deployed is recovered by replaying it: the new code runs
from the start and, operation by operation, gets the recorded outcomes back. If the new code
calls another operation at some position, replay fails with `DBOSUnexpectedStepError`, in
production. `replay()` finds that out beforehand, on a recorded history (from a test, or a copy
of production's tables), without running a single step: every operation answers from the record,
and the run stops where the record ends. The testing tools (`assert_replays`), `dbos workflow
replay`, the replay-checked upgrade and `dbos check-deploy` all ask this one replayer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, TypedDict

from django.db import connections

from ..errors import (
    DBOSNonExistentWorkflowError,
    DBOSPayloadExpiredError,
    DBOSWorkflowCancelledError,
)
from ..types import Status
from . import registry, serialization, system_db, timers
from .context import RecordedOperation, WorkflowContext, current_workflow, start_options
from .workflows import Superseded

# The executor id a replay runs under: no workflow is owned by it, so every checkpoint write
# the replayed code might attempt is refused by the ownership fence.
REPLAY_EXECUTOR = "dbos-replay"
ZERO = serialization.dumps(0.0)


class _ReplayStop(BaseException):
    """Internal: the replayed code reached a position with no (or another) recorded operation."""


class _ReplayContext(WorkflowContext):
    """An execution that only reads the record: each lookup is noted, none runs anything."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.looked_up: dict[int, str] = {}

    def awaiting_unfinished(self, workflow_id: str) -> None:
        # A workflow in flight waiting for its unfinished child: its record ends here.
        raise _ReplayStop(self.function_id + 1)

    def recorded_operation(self, function_id: int, function_name: str) -> RecordedOperation | None:
        self.looked_up[function_id] = function_name
        operation = (self.recorded or {}).get(function_id)
        if operation is None or operation.function_name != function_name:
            raise _ReplayStop(function_id)
        if function_name == timers.SLEEP:
            # A recorded wake-up time, perhaps still ahead: the replay does not wait for it.
            return RecordedOperation(function_id, function_name, ZERO, None, None)
        return operation


@dataclass(frozen=True, kw_only=True)
class Replay:
    """What replaying a workflow on the current code found."""

    workflow_id: str
    name: str
    status: str
    recorded: dict[int, str]  # function id -> operation name, as recorded
    replayed: dict[int, str]  # function id -> operation the current code asked for there
    mismatch: int | None = None  # the first position where they differ
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatch is None and not self.reason

    @property
    def expected(self) -> str | None:
        """The operation recorded at the first divergence (None when there is none there)."""
        return None if self.mismatch is None else self.recorded.get(self.mismatch)

    @property
    def found(self) -> str | None:
        """What the current code calls at the first divergence instead."""
        if self.mismatch is None:
            return None
        return self.replayed.get(self.mismatch, "(the workflow ends)")

    def report(self) -> str:
        """The difference, as a table of positions, with what to do about it."""
        title = f"Workflow {self.workflow_id!r} ({self.name}, {self.status})"
        if self.ok:
            return f"{title} replays on the current code: {len(self.recorded)} operations match."
        lines = [f"{title} does not replay on the current code: {self.reason}", ""]
        positions = sorted(set(self.recorded) | set(self.replayed))
        width = max([len("recorded"), *(len(name) for name in self.recorded.values())])
        lines.append(f"      {'op':>3}  {'recorded'.ljust(width)}  current code")
        for position in positions:
            if self.mismatch is not None and position > self.mismatch:
                break
            recorded = self.recorded.get(position, "(nothing)")
            replayed = self.replayed.get(position, "-")
            if position == self.mismatch and position not in self.replayed:
                replayed = "(the workflow ends)"
            marker = "  >>  " if position == self.mismatch else "      "
            lines.append(f"{marker}{position:>3}  {recorded.ljust(width)}  {replayed}")
        later = [p for p in self.recorded if self.mismatch is not None and p > self.mismatch]
        if later:
            lines.append(f"      ... and {len(later)} more recorded operations")
        lines += [
            "",
            "An execution of the old code that is recovered on this code fails there with "
            "DBOSUnexpectedStepError. Keep the old path for such executions with "
            "`if DBOS.patch(name):` (docs/versioning-and-recovery.md), or let them finish first.",
        ]
        return "\n".join(lines + self.notes)


class _Found(TypedDict):
    """What every Replay holds, whatever the replay found."""

    workflow_id: str
    name: str
    status: str
    recorded: dict[int, str]
    replayed: dict[int, str]


def replay(workflow_id: str, *, timeout: float = 30.0) -> Replay:
    """Replay a recorded workflow on the current code; report where the two differ."""
    row = system_db.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")
    if row.payload_expired_at is not None:
        raise DBOSPayloadExpiredError(
            f"Workflow {workflow_id!r} cannot be replayed: its payload expired (the retention "
            "policy dropped its inputs and step outputs)."
        )
    return replay_recorded(row, system_db.load_operations(workflow_id), timeout=timeout)


def replay_recorded(
    row: system_db.WorkflowRow, history: dict[int, RecordedOperation], *, timeout: float
) -> Replay:
    """Replay a workflow's row and recorded operations, read beforehand (perhaps in a batch)."""
    workflow_id = row.workflow_id
    entry = registry.get_workflow(row.name)
    args, kwargs = serialization.loads_arguments(row.inputs)
    recorded = {function_id: op.function_name for function_id, op in sorted(history.items())}
    finished = row.status in (Status.SUCCESS, Status.ERROR)
    ctx = _ReplayContext(workflow_id, row.name, REPLAY_EXECUTOR, -1, history)
    ended: list[BaseException | None] = []
    thread = threading.Thread(
        target=_run, args=(entry, ctx, args, kwargs, ended), name="dbos-replay", daemon=True
    )
    thread.start()
    thread.join(timeout)
    found = _Found(
        workflow_id=workflow_id,
        name=row.name,
        status=row.status,
        recorded=recorded,
        replayed=dict(sorted(ctx.looked_up.items())),
    )
    if thread.is_alive():
        return Replay(
            **found,
            reason=f"the replay did not end within {timeout} s (does it wait for a child "
            "workflow that has not finished?)",
        )
    (outcome,) = ended
    last_recorded = max(recorded, default=0)
    if isinstance(outcome, _ReplayStop | Superseded | DBOSWorkflowCancelledError):
        # Stopped at a position with no record, another record, or a refused write (a new
        # DBOS.patch marker): fine only past the end of a history that is still growing.
        position = outcome.args[0] if isinstance(outcome, _ReplayStop) else ctx.function_id
        if position in recorded:
            return Replay(
                **found,
                mismatch=position,
                reason=f"operation {position} is {recorded[position]} in the record, but the "
                f"code now calls {ctx.looked_up.get(position, 'another operation')} there.",
            )
        if finished or position < last_recorded:
            return Replay(
                **found,
                mismatch=position,
                reason=f"the code now calls {ctx.looked_up.get(position, 'another operation')} "
                f"at operation {position}, where the recorded run "
                + ("ended." if finished and position > last_recorded else "had nothing."),
            )
        return Replay(**found, notes=["(The history is replayed up to its end so far.)"])
    ended_at = max(ctx.function_id, max(ctx.looked_up, default=0))
    if last_recorded > ended_at:
        missing = min(p for p in recorded if p > ended_at)
        return Replay(
            **found,
            mismatch=missing,
            reason=f"the code now ends before operation {missing} ({recorded[missing]}).",
        )
    if row.status == Status.SUCCESS and outcome is not None:
        return Replay(
            **found,
            reason=f"the code now raises {outcome!r} where the recorded run returned.",
        )
    if row.status == Status.ERROR and outcome is None:
        return Replay(**found, reason="the code now returns where the recorded run raised.")
    return Replay(**found)


def _run(
    entry: registry.Registered,
    ctx: _ReplayContext,
    args: tuple,
    kwargs: dict,
    ended: list[BaseException | None],
) -> None:
    current_workflow.set(ctx)
    start_options.set(None)
    try:
        entry.func(*args, **kwargs)
        ended.append(None)
    except BaseException as exc:
        ended.append(exc)
    finally:
        connections.close_all()
