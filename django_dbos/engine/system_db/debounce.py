"""Debounced workflows: pushing a waiting one back, and who holds a debounce's deduplication id."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ...models import WorkflowStatus
from .connection import WF, alias, execute, now

# The new dispatch time is capped at the workflow's debounce deadline (CASE rather than LEAST,
# which SQLite lacks). The row must still be ENQUEUED: on PostgreSQL a claim holds its lock
# while it moves the row to PENDING, and this statement re-checks the status once the lock is
# released, so a claimed workflow is never pushed back nor given new inputs.
_BOUNCE = f"""
UPDATE {WF} SET inputs = %s, updated_at = %s,
    dispatch_after = CASE WHEN debounce_deadline IS NOT NULL AND debounce_deadline < %s
        THEN debounce_deadline ELSE %s END
WHERE queue_name = %s AND deduplication_id = %s AND name = %s AND debounced
    AND status = 'ENQUEUED'
RETURNING workflow_id
"""


def bounce(
    queue_name: str,
    deduplication_id: str,
    name: str,
    inputs: str,
    dispatch_after: datetime.datetime,
) -> str | None:
    """Give the waiting debounced workflow of this key new inputs and a later dispatch time
    (no later than its debounce deadline); return its id, or None when none is waiting."""
    row = execute(
        _BOUNCE,
        [inputs, now(), dispatch_after, dispatch_after, queue_name, deduplication_id, name],
    ).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class DeduplicationHolder:
    """The workflow that holds a deduplication id on a queue."""

    workflow_id: str
    name: str
    status: str
    debounced: bool


def deduplication_holder(queue_name: str, deduplication_id: str) -> DeduplicationHolder | None:
    row = (
        WorkflowStatus.objects.using(alias())
        .filter(queue_name=queue_name, deduplication_id=deduplication_id)
        .values_list("workflow_id", "name", "status", "debounced")
        .first()
    )
    return None if row is None else DeduplicationHolder(*row)
