"""The value types of the public API: snapshots of what the system tables hold, and the handle.

They sit at the bottom of the package (they import nothing of ours but the models' status
enum and the errors), so that every layer can return them. The system-db layer builds them
from rows; a handle asks a `WorkflowWaiter` (the engine, or a client's database) to wait.
"""

from __future__ import annotations

import asyncio
import datetime
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .errors import DBOSNonExistentWorkflowError
from .models import Status

R = TypeVar("R")

# DBOS Python's name for the status enum.
WorkflowStatusString = Status


@dataclass(frozen=True, kw_only=True)
class UpgradeBlock:
    """Why the code of `version` cannot continue a workflow: the first operation where a replay
    of its record on that code diverged (docs/deploying.md, "Deploying new workflow code")."""

    version: str  # the application version whose code was checked
    function_id: int | None  # the diverging operation; None when the replay failed elsewhere
    expected: str | None  # the operation recorded there
    found: str | None  # what the checked code calls there instead
    reason: str  # the divergence, in a sentence


@dataclass(frozen=True, kw_only=True)
class UpgradeCheck:
    """What a replay-checked upgrade (or `dbos check-deploy`) found of one in-flight workflow."""

    workflow_id: str
    name: str
    status: Status
    app_version: str | None  # the version it was on when checked
    blocked_at: UpgradeBlock | None  # None: the checked code continues it
    moved: bool = False  # an upgrade moved it to the running version


@dataclass(frozen=True, kw_only=True)
class WorkflowStatus:
    """What is known of one workflow (a snapshot, not the model)."""

    workflow_id: str
    status: Status
    name: str
    input: dict[str, Any] | None
    output: Any
    error: BaseException | None
    created_at: datetime.datetime
    updated_at: datetime.datetime
    queue_name: str | None
    executor_id: str | None
    app_version: str | None
    recovery_attempts: int
    priority: int
    deduplication_id: str | None
    parent_workflow_id: str | None
    forked_from: str | None
    # The retention policy (PAYLOAD_DAYS) dropped its input, output and error message, and the
    # values of its steps, messages, events and streams: they read as None (the error keeps
    # its class).
    payload_expired: bool = False
    # A replay-checked upgrade found that the code of a newer version cannot continue it.
    upgrade_blocked_at: UpgradeBlock | None = None
    # What SetWorkflowAttributes or update_workflow_attributes recorded (a JSON object).
    attributes: dict[str, Any] | None = None
    # When it ended, once finished (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED);
    # None while it is enqueued or running.
    completed_at: datetime.datetime | None = None


@dataclass(frozen=True, kw_only=True)
class VersionInfo:
    """An application version some worker ran; the latest is the one with the newest timestamp."""

    version_name: str
    version_timestamp: datetime.datetime  # set when first recorded, bumped by set_latest
    created_at: datetime.datetime
    is_latest: bool


@dataclass(frozen=True, kw_only=True)
class StepInfo:
    """One recorded operation of a workflow."""

    function_id: int
    function_name: str
    output: Any
    error: BaseException | None
    child_workflow_id: str | None
    started_at: datetime.datetime
    completed_at: datetime.datetime


@dataclass(frozen=True, kw_only=True)
class WorkflowSchedule:
    """A schedule made at run time (a snapshot of its row)."""

    schedule_name: str
    workflow_name: str
    schedule: str
    status: str
    context: Any
    automatic_backfill: bool
    cron_timezone: str | None
    queue_name: str | None
    last_fired_at: datetime.datetime | None


@dataclass(frozen=True, kw_only=True)
class QueueStatus:
    """A queue's limits and load (a snapshot): what waits on it, what runs, and who serves it.

    A queue known only from its workflows (enqueued by a DBOSClient before any worker declared
    it, or under a misspelt name) is not `declared`: its limits and flags are None.
    """

    name: str
    declared: bool
    concurrency: int | None
    worker_concurrency: int | None
    limiter: dict[str, float] | None  # {"limit": starts, "period": seconds}, as Queue() takes it
    priority_enabled: bool | None
    partition_queue: bool | None
    enqueued: int  # ENQUEUED: waiting for a worker (or for their delay)
    pending: int  # PENDING: running, or parked in a wait, on a worker
    oldest_enqueued_age_seconds: float | None  # how long its oldest ENQUEUED workflow has waited
    live_workers: int  # executors with a recent heartbeat that dispatch this queue
    served: bool  # whether any live worker dispatches it: live_workers > 0
    # ENQUEUED or PENDING on an application version that no live worker runs: nobody takes them
    # until a worker of that version starts, or an upgrade moves them (docs/deploying.md).
    stranded: int = 0

    @property
    def warning(self) -> str | None:
        """What to do about work that waits for nobody, in a sentence; None when all is well."""
        if self.stranded and (self.served or not self.enqueued):
            return (
                f"{self.stranded} of its workflows belong to an application version that no "
                "live worker runs: start a worker of that version, or move them to the running "
                "one with `manage.py dbos workflow upgrade` (docs/deploying.md)."
            )
        if not self.enqueued or self.served:
            return None
        if not self.declared:
            return (
                "No live worker serves this queue, and no code declares it: check the queue "
                "name, or start a worker whose code declares it."
            )
        return (
            "No live worker serves this queue: its workflows wait until a worker that "
            "serves it starts (manage.py rundbosworker)."
        )


@dataclass(frozen=True, kw_only=True)
class Alert:
    """A change of an alert rule of DBOS["ALERTS"]: it began firing ("raised") or stopped
    ("resolved"). Sent as the `alert` of the alert_raised / alert_resolved signals."""

    id: int  # the transition's id: the same on a repeated delivery, a key to deduplicate on
    name: str  # the rule's name
    kind: str  # the rule's kind, e.g. "workflow_failures"
    change: str  # "raised" or "resolved"
    message: str  # what is wrong (or that it no longer is) and what to look at
    at: datetime.datetime  # when the worker that checks the rules saw the change
    delivered: bool  # whether its signals and mail went out

    @property
    def firing(self) -> bool:
        return self.change == "raised"


@dataclass(frozen=True, kw_only=True)
class FiringAlert:
    """An alert rule that fires now, as the admin dashboard shows it."""

    name: str
    kind: str
    since: datetime.datetime
    message: str


class WorkflowWaiter(Protocol):
    """What a handle needs to wait for a workflow: the engine of this process, or the system
    database of a DBOSClient."""

    def running_future(self, workflow_id: str) -> Future[Any] | None:
        """The future of the workflow's execution in this process, if it runs here."""

    def await_result(self, workflow_id: str, timeout: float | None) -> Any:
        """Wait for the recorded outcome: return the result or raise the error."""

    async def await_result_async(self, workflow_id: str, timeout: float | None) -> Any:
        """`await_result` on the event loop."""

    def get_status(self, workflow_id: str) -> WorkflowStatus | None:
        """The workflow's status, or None if there is no such workflow."""

    async def get_status_async(self, workflow_id: str) -> WorkflowStatus | None:
        """`get_status` on the event loop."""


class WorkflowHandle(Generic[R]):
    """A reference to a workflow that may still be running."""

    def __init__(
        self, workflow_id: str, future: Future[R] | None = None, *, waiter: WorkflowWaiter
    ):
        self.workflow_id = workflow_id
        self._future = future
        self._waiter = waiter

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id}>"

    def get_workflow_id(self) -> str:
        return self.workflow_id

    def get_result(self, timeout: float | None = None) -> R:
        """Wait for the workflow to end; return its result or raise its error.

        Raises TimeoutError when `timeout` seconds pass first (the workflow keeps running).
        """
        future = self._future or self._waiter.running_future(self.workflow_id)
        if future is not None:
            return future.result(timeout)
        result: R = self._waiter.await_result(self.workflow_id, timeout)
        return result

    async def get_result_async(self, timeout: float | None = None) -> R:
        """`get_result` for coroutines: it waits on the event loop, holding no thread."""
        future = self._future or self._waiter.running_future(self.workflow_id)
        if future is not None:
            # The future is running, so a timeout here cannot cancel it.
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        result: R = await self._waiter.await_result_async(self.workflow_id, timeout)
        return result

    def get_status(self) -> WorkflowStatus:
        return self._existing(self._waiter.get_status(self.workflow_id))

    async def get_status_async(self) -> WorkflowStatus:
        return self._existing(await self._waiter.get_status_async(self.workflow_id))

    def _existing(self, status: WorkflowStatus | None) -> WorkflowStatus:
        if status is None:
            raise DBOSNonExistentWorkflowError(
                f"There is no workflow with id {self.workflow_id!r}."
            )
        return status
