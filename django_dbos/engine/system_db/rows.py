"""The shapes of workflow rows the engine writes and claims, and the conditions their
statements share."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ...models import Schedule, WorkflowStatus

# The model rows some queries return, named for the engine's annotations (it reads their fields
# but never imports the models).
WorkflowRow = WorkflowStatus
ScheduleRow = Schedule

# The EXISTS guard is the fence: only the execution that owns a PENDING workflow may record
# its operations. A cancelled workflow, or one taken over, records nothing more. The row is
# found by its primary key alone: the rest of the test is one opaque boolean, so that no plan
# can use the partial index of PENDING workflows by executor instead. A plan of these prepared
# statements, made while the table was small and kept by the connection, did, and then read
# every PENDING workflow of the executor on each checkpoint (100,000 for a worker with that
# many parked).
OWNED = "workflow_id = %s AND (status = 'PENDING' AND executor_id = %s AND execution = %s) IS TRUE"
# Clears what a parked workflow waited for, once it no longer waits.
NOT_WAITING = "waiting = '', wake_at = NULL"


@dataclass(frozen=True)
class NewWorkflow:
    """The row written when a workflow starts or is enqueued."""

    workflow_id: str
    name: str
    status: str
    inputs: str
    executor_id: str | None
    application_version: str | None = None
    queue_name: str | None = None
    priority: int = 0
    deduplication_id: str | None = None
    queue_partition_key: str | None = None
    timeout_ms: int | None = None
    deadline: datetime.datetime | None = None
    dispatch_after: datetime.datetime | None = None
    parent_workflow_id: str | None = None
    detached: bool = False
    authenticated_user: str | None = None
    forked_from: str | None = None
    execution: int = 0
    # The W3C trace context (JSON) of the span that started or enqueued it, if any.
    trace_context: str | None = None
    # SetWorkflowAttributes' (checked by engine/validation.py), or None.
    attributes: dict[str, Any] | None = None
    # Enqueued by a Debouncer, and the latest its dispatch may be pushed back to.
    debounced: bool = False
    debounce_deadline: datetime.datetime | None = None


@dataclass(frozen=True)
class ClaimedWorkflow:
    """A workflow this executor now owns and is about to run."""

    workflow_id: str
    name: str
    inputs: str
    recovery_attempts: int
    deadline: datetime.datetime | None
    queue_name: str | None = None
    execution: int = 0
    # What the enqueue asked of its queue, checked against the queue's declaration at dequeue.
    priority: int = 0
    queue_partition_key: str | None = None
    # The trace its execution continues (the starter's span context, JSON), if any.
    trace_context: str | None = None
    # How long a dequeued workflow waited once it could run (enqueue or delay to claim).
    waited_seconds: float | None = None
