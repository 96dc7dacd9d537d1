"""Waiting for workflows: the futures of those running in this process, outcomes read from the
system tables, and the handles that use both."""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ..errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSNonExistentWorkflowError,
    DBOSPayloadExpiredError,
)
from ..types import Status, WorkflowHandle, WorkflowStatus
from . import after_commit, aio, notifier, runtime, serialization, system_db
from .context import current_workflow


class RunningWorkflows:
    """The futures of the workflows executing in this process (a part of its engine), so that a
    handle or a second start of the same id waits on the running execution instead of polling
    the database. Held weakly: a parked workflow keeps its future only while a handle to it
    does."""

    def __init__(self) -> None:
        self._futures: weakref.WeakValueDictionary[str, Future[Any]] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def track(self, workflow_id: str) -> Future[Any]:
        """The future of this workflow's execution here, made on first use."""
        with self._lock:
            future = self._futures.get(workflow_id)
            if future is None:
                future = Future()
                future.set_running_or_notify_cancel()
                self._futures[workflow_id] = future
        return future

    def get(self, workflow_id: str) -> Future[Any] | None:
        with self._lock:
            return self._futures.get(workflow_id)

    def ids(self) -> set[str]:
        with self._lock:
            return set(self._futures)

    def forget(self, workflow_id: str, future: Future[Any]) -> None:
        with self._lock:
            if self._futures.get(workflow_id) is future:
                del self._futures[workflow_id]

    def settle(
        self,
        workflow_id: str,
        future: Future[Any],
        *,
        result: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Give the workflow's waiters in this process its outcome (the first execution here
        to end does; a second one, superseded, adopted that same outcome)."""
        with self._lock:
            if self._futures.get(workflow_id) is future:
                del self._futures[workflow_id]
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


def running() -> RunningWorkflows:
    """The workflows running in this process."""
    return runtime.part(RunningWorkflows)


def await_result(workflow_id: str, timeout: float | None) -> Any:
    """Wait until a workflow ends and return its result, or raise its error.

    Raises TimeoutError when `timeout` seconds pass first.
    """
    after_commit.refuse_to_wait(workflow_id, "get_result()")
    waiting = _Awaiting(workflow_id, timeout)
    listener = notifier.current()
    waiter = current_workflow.get()
    with listener.subscribe(notifier.key("w", workflow_id)) as event:
        while True:
            finished, remaining = waiting.check(system_db.get_outcome(workflow_id))
            if finished is not None:
                return finished[0]
            if waiter is not None:
                waiter.awaiting_unfinished(workflow_id)
            listener.wait(event, remaining)


async def await_result_async(workflow_id: str, timeout: float | None) -> Any:
    """`await_result` for a coroutine: it waits on the event loop, not on a thread."""
    waiting = _Awaiting(workflow_id, timeout)
    listener = notifier.current()
    with listener.subscribe(notifier.key("w", workflow_id), waiter=aio.LoopEvent()) as event:
        while True:
            outcome = await aio.run_sync(system_db.get_outcome, workflow_id)
            finished, remaining = waiting.check(outcome)
            if finished is not None:
                return finished[0]
            interval = listener.poll_interval()
            await event.wait(interval if remaining is None else min(interval, remaining))


class _Awaiting:
    """What `await_result` and `await_result_async` do with each outcome they read; only how
    they wait between two reads differs."""

    def __init__(self, workflow_id: str, timeout: float | None):
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def check(
        self, outcome: tuple[str, str | None, str | None, bool] | None
    ) -> tuple[Any, float | None]:
        """Return ((result,), None) once the workflow has ended, else (None, the seconds left to
        wait, None for no limit); raise the workflow's error, or TimeoutError past the timeout."""
        if outcome is None:
            raise DBOSNonExistentWorkflowError(
                f"There is no workflow with id {self.workflow_id!r}."
            )
        finished = _outcome(self.workflow_id, *outcome)
        if finished is not None:
            return finished, None
        if self.deadline is None:
            return None, None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"Workflow {self.workflow_id!r} did not finish within {self.timeout} s."
            )
        return None, remaining


def _outcome(
    workflow_id: str, status: str, output: str | None, error: str | None, expired: bool
) -> tuple | None:
    """Return (result,) for a finished workflow, raise its error, or None while it runs."""
    if expired and status in (Status.SUCCESS, Status.ERROR):
        # Its output is None now, and its error has lost its message: neither is the outcome.
        ended = "succeeded"
        if status == Status.ERROR:
            ended = f"failed with {type(serialization.loads_error(error or '')).__name__}"
        raise DBOSPayloadExpiredError(
            f"Workflow {workflow_id!r} {ended}, but its output and error expired under the "
            'retention policy (DBOS["RETENTION"]["PAYLOAD_DAYS"]): only its status and step '
            "timeline are kept."
        )
    if status == Status.SUCCESS:
        return (serialization.loads(output),)
    if status == Status.ERROR:
        raise serialization.loads_error(error or "")
    if status == Status.CANCELLED:
        raise DBOSAwaitedWorkflowCancelledError(f"Workflow {workflow_id!r} was cancelled.")
    if status == Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
        raise DBOSMaxRecoveryAttemptsExceededError(
            f"Workflow {workflow_id!r} was recovered too many times and was stopped."
        )
    return None


def get_status(workflow_id: str) -> WorkflowStatus | None:
    row = system_db.get_workflow(workflow_id)
    return system_db.workflow_status(row) if row is not None else None


class Waiter:
    """How handles wait: on the futures of this process and the system database `database`
    (None: DBOS["DATABASE"]; a DBOSClient's alias otherwise)."""

    def __init__(self, database: str | None = None):
        self.database = database

    def _on_database(self) -> AbstractContextManager[None]:
        return nullcontext() if self.database is None else system_db.using(self.database)

    def running_future(self, workflow_id: str) -> Future[Any] | None:
        return running().get(workflow_id)

    def await_result(self, workflow_id: str, timeout: float | None) -> Any:
        with self._on_database():
            return await_result(workflow_id, timeout)

    async def await_result_async(self, workflow_id: str, timeout: float | None) -> Any:
        with self._on_database():
            return await await_result_async(workflow_id, timeout)

    def get_status(self, workflow_id: str) -> WorkflowStatus | None:
        with self._on_database():
            return get_status(workflow_id)

    async def get_status_async(self, workflow_id: str) -> WorkflowStatus | None:
        with self._on_database():
            return await aio.run_sync(get_status, workflow_id)


HERE = Waiter()


def handle(
    workflow_id: str, future: Future[Any] | None = None, *, database: str | None = None
) -> WorkflowHandle[Any]:
    """A handle to a workflow, waiting on `future` when it runs here."""
    return WorkflowHandle(
        workflow_id, future, waiter=HERE if database is None else Waiter(database)
    )
