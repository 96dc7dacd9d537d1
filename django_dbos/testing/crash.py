"""Crash simulation: stop a workflow as a killed process would, then recover it for real.

`simulate_crash` runs a workflow under an executor id of its own until operation N has been
recorded, then stops it without a word (the workflow stays PENDING) and makes that executor look
dead, with a heartbeat older than EXECUTOR_TIMEOUT_SECONDS. `recover` then runs the engine's own
recovery, which finds the dead executor and runs its workflows again from their checkpoints:
what a worker does after a `kill -9`, in a few milliseconds.
"""

from __future__ import annotations

import datetime
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections

from .. import conf
from ..engine import executor, handles, registry, serialization, system_db, validation, workflows
from ..engine.context import WorkflowContext, current_workflow, start_options
from ..engine.recovery import Recovery
from ..errors import DBOSInvalidArgumentError
from ..types import Status

# Where the simulated process "was": shown in the admin's executor list while it runs.
CRASH_HOST = "simulated-crash"


class SimulatedCrash(BaseException):
    """Internal: stops a workflow's thread as the death of its process would.

    A BaseException, so that neither the workflow's `except Exception:` nor the engine records
    it: the workflow stays PENDING, with the operations recorded so far.
    """


class _CrashingContext(WorkflowContext):
    """A workflow execution that dies once operation `crash_after` is recorded.

    The engine consults the context before each operation (next_function_id) and around each
    durable wait (cancel_hint, deadline); each of those is a point where the process can die.
    So a crash after a step happens before the next operation starts, and a crash after a
    sleep's or recv's recorded deadline happens in the middle of that wait.
    """

    crash_after = 0

    def next_function_id(self) -> int:
        self._maybe_crash()
        return super().next_function_id()

    @property
    def cancel_hint(self) -> threading.Event | None:
        self._maybe_crash()
        return None

    @cancel_hint.setter
    def cancel_hint(self, value: threading.Event | None) -> None:
        pass

    @property
    def deadline(self) -> datetime.datetime | None:
        self._maybe_crash()
        return None

    @deadline.setter
    def deadline(self, value: datetime.datetime | None) -> None:
        pass

    def _maybe_crash(self) -> None:
        if self.in_step or self.function_id < self.crash_after:
            return
        if self.crash_after == 0 or self.reached():
            raise SimulatedCrash(self.workflow_id)

    def reached(self) -> bool:
        """True once an operation at or past `crash_after` is recorded."""
        return (
            system_db.operation_rows()
            .filter(workflow_id=self.workflow_id, function_id__gte=self.crash_after)
            .exists()
        )


def simulate_crash(workflow_fn: Callable[..., Any], *args: Any, at_step: int, **kwargs: Any) -> Any:
    """Run a workflow until operation `at_step` is recorded, then abandon it as a dead process
    would; return its handle (the workflow is PENDING until `recover()`).

    Operations are numbered from 1 as in `DBOS.list_workflow_steps` (steps, transactions,
    sleeps, messages, events, child starts); `at_step=0` crashes right after the workflow's row
    is written. A `SetWorkflowID` block around the call names the workflow.
    """
    entry = getattr(workflow_fn, "__dbos__", None)
    if entry is None or entry.kind != "workflow":
        raise TypeError(f"{workflow_fn!r} is not a workflow: decorate it with @DBOS.workflow().")
    if isinstance(at_step, bool) or not isinstance(at_step, int) or at_step < 0:
        raise DBOSInvalidArgumentError(
            f"at_step must be an operation number (0 or more), not {at_step!r}."
        )
    options = workflows.take_start_options()
    workflow_id = validation.workflow_id(options.workflow_id or str(uuid.uuid4()))
    doomed = f"{CRASH_HOST}-{uuid.uuid4().hex[:12]}"
    version = registry.application_version()
    system_db.heartbeat(
        doomed,
        hostname=CRASH_HOST,
        pid=0,
        role="process",
        application_version=version,
        started_at=system_db.now(),
    )
    inserted = system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=entry.name,
            status=Status.PENDING,
            inputs=serialization.dumps_arguments(args, kwargs),
            executor_id=doomed,
            application_version=version,
        )
    )
    if not inserted:
        raise ValueError(f"Workflow id {workflow_id!r} is taken: a crash needs a new workflow.")
    ctx = _CrashingContext(workflow_id, entry.name, doomed, 0)
    ctx.crash_after = at_step
    outcome: list[BaseException | None] = []
    thread = threading.Thread(
        target=_run_until_crash,
        args=(entry, ctx, args, kwargs, outcome),
        name="dbos-simulated-process",
        daemon=True,
    )
    thread.start()
    thread.join()
    _die(doomed)
    (ended,) = outcome
    if not isinstance(ended, SimulatedCrash):
        raise DBOSInvalidArgumentError(
            f"Workflow {workflow_id!r} ended before operation {at_step} was recorded "
            f"({'it raised ' + repr(ended) if ended else 'it returned'}); "
            f"it records only {_last_operation(workflow_id)} operations. Crash at a smaller step."
        ) from ended
    return handles.handle(workflow_id)


def _run_until_crash(
    entry: registry.Registered,
    ctx: _CrashingContext,
    args: tuple,
    kwargs: dict,
    outcome: list[BaseException | None],
) -> None:
    """The body of the doomed process: run the workflow, never record its end."""
    current_workflow.set(ctx)
    start_options.set(None)
    ended: BaseException | None = None
    try:
        try:
            entry.func(*args, **kwargs)
        except SimulatedCrash:
            raise
        except BaseException as exc:
            ended = exc
        # The body ended (returned or raised) after its last operation: if that was the one,
        # the process dies now, before the workflow's outcome is recorded.
        ctx.function_id = max(ctx.function_id, ctx.crash_after)
        ctx._maybe_crash()
        outcome.append(ended)
    except SimulatedCrash as exc:
        outcome.append(exc)
    finally:
        connections.close_all()


def _die(executor_id: str) -> None:
    """Make the simulated executor look dead: its last heartbeat long past the timeout."""
    silent_for = float(conf.get("EXECUTOR_TIMEOUT_SECONDS")) + 3600
    system_db.executor_rows().filter(executor_id=executor_id).update(
        last_heartbeat=system_db.now() - datetime.timedelta(seconds=silent_for)
    )


def _last_operation(workflow_id: str) -> int:
    ids = system_db.operation_rows().filter(workflow_id=workflow_id)
    return max(ids.values_list("function_id", flat=True), default=0)


def recover() -> list[Any]:
    """Run recovery now, as a worker does when it finds a dead executor; return the handles of
    the workflows it took over (those of a queue go back to it, for a `dbos_worker` to drain)."""
    process = executor.current()
    process.ensure_started()
    timeout = float(conf.get("EXECUTOR_TIMEOUT_SECONDS"))
    dead = system_db.stale_executor_ids(system_db.now() - datetime.timedelta(seconds=timeout))
    dead.discard(process.executor_id)
    left = list(
        system_db.workflow_rows()
        .filter(
            status=Status.PENDING,
            executor_id__in=dead,
            application_version=registry.application_version(),
        )
        .order_by("created_at")
        .values_list("workflow_id", flat=True)
    )
    Recovery(process).recover_dead()
    return [handles.handle(workflow_id) for workflow_id in left]


@dataclass(frozen=True, kw_only=True)
class CrashRun:
    """One run of `crash_at_every_step`: where it crashed and how it ended after recovery."""

    at_step: int
    operation: str  # the name of the last operation recorded before the crash ("" at 0)
    workflow_id: str
    outcome: Any  # ("returned", result) or ("raised", "ClassName: message")
    end_state: Any


def crash_at_every_step(
    workflow_fn: Callable[..., Any],
    *args: Any,
    end_state: Callable[[], Any] | None = None,
    reset: Callable[[], Any] | None = None,
    timeout: float = 30.0,
    **kwargs: Any,
) -> list[CrashRun]:
    """Run a workflow once without a crash, then once per step boundary with a crash there
    followed by recovery; fail unless every run ends like the first.

    "Ends like" means the same result (or the same error), and, when `end_state` is given,
    the same value returned by `end_state()` after the run (read your side effects there: rows,
    files, messages sent). `reset()`, when given, runs before each run to undo the previous
    one's side effects. Returns the runs, the uncrashed one first (`at_step=-1`).
    """
    from ..api import DBOS

    def run(at_step: int) -> CrashRun:
        if reset is not None:
            reset()
        if at_step < 0:
            handle = DBOS.start_workflow(workflow_fn, *args, **kwargs)
        else:
            handle = simulate_crash(workflow_fn, *args, at_step=at_step, **kwargs)
            recovered = [h.workflow_id for h in recover()]
            if handle.workflow_id not in recovered:
                raise AssertionError(f"Recovery did not take over {handle.workflow_id!r}.")
        outcome = _outcome(handle, timeout)
        steps = DBOS.list_workflow_steps(handle.workflow_id)
        names = {step.function_id: step.function_name for step in steps}
        return CrashRun(
            at_step=at_step,
            operation=names.get(at_step, ""),
            workflow_id=handle.workflow_id,
            outcome=outcome,
            end_state=end_state() if end_state is not None else None,
        )

    reference = run(-1)
    runs = [reference]
    boundaries = [
        0,
        *(step.function_id for step in DBOS.list_workflow_steps(reference.workflow_id)),
    ]
    for at_step in boundaries:
        crashed = run(at_step)
        runs.append(crashed)
        for what, expected, got in (
            ("outcome", reference.outcome, crashed.outcome),
            ("end state", reference.end_state, crashed.end_state),
        ):
            if expected != got:
                where = (
                    f"after operation {at_step} ({crashed.operation})" if at_step else "at start"
                )
                raise AssertionError(
                    f"A crash {where} of {workflow_fn.__qualname__} changed its {what}:\n"
                    f"  without a crash: {expected!r}\n"
                    f"  with the crash:  {got!r}\n"
                    "Side effects outside steps, or steps that are not idempotent, repeat when a "
                    "workflow recovers; make them a @DBOS.transaction or idempotent steps."
                )
    return runs


def _outcome(handle: Any, timeout: float) -> tuple[str, Any]:
    try:
        return ("returned", handle.get_result(timeout=timeout))
    except TimeoutError:
        raise
    except Exception as exc:
        return ("raised", f"{type(exc).__name__}: {exc}")
