"""Operation rows: the recorded outcome of each step, transaction, send, recv... of a workflow."""

from __future__ import annotations

import datetime

from ...models import OperationOutput
from ..context import RecordedOperation
from .connection import OP, WF, alias, execute, now, storable
from .rows import OWNED

_RECORD_OPERATION = f"""
INSERT INTO {OP} (workflow_id, function_id, function_name, output, error, child_workflow_id,
    started_at, completed_at)
SELECT %s, %s, %s, %s, %s, %s, %s, %s
WHERE EXISTS (SELECT 1 FROM {WF} WHERE {OWNED})
ON CONFLICT DO NOTHING
"""


def record_operation(
    workflow_id: str,
    executor_id: str,
    function_id: int,
    function_name: str,
    *,
    output: str | None = None,
    error: str | None = None,
    child_workflow_id: str | None = None,
    started_at: datetime.datetime,
    execution: int = 0,
) -> bool:
    """Record one operation's outcome; False when the fence refused it or the id was taken."""
    cursor = execute(
        _RECORD_OPERATION,
        [
            workflow_id,
            function_id,
            function_name,
            output,
            error,
            child_workflow_id,
            started_at,
            now(),
            workflow_id,
            executor_id,
            execution,
        ],
    )
    return cursor.rowcount == 1


_LOAD_OPERATIONS = f"""
SELECT function_id, function_name, output, error, child_workflow_id FROM {OP}
WHERE workflow_id = %s
"""


def load_operations(workflow_id: str) -> dict[int, RecordedOperation]:
    """Return every recorded operation of a workflow, by function id (once per execution: each
    dequeued, recovered or woken workflow reads them, so this is a prepared statement)."""
    rows = execute(_LOAD_OPERATIONS, [workflow_id]).fetchall()
    return {row[0]: RecordedOperation(*row) for row in rows}


def list_operations(workflow_id: str) -> list[OperationOutput]:
    if not storable(workflow_id):
        return []
    return list(OperationOutput.objects.using(alias()).filter(workflow_id=workflow_id))


def load_operations_of(workflow_ids: list[str]) -> dict[str, dict[int, RecordedOperation]]:
    """The recorded operations of several workflows at once (a replay-checked upgrade's batch)."""
    found: dict[str, dict[int, RecordedOperation]] = {
        workflow_id: {} for workflow_id in workflow_ids
    }
    rows = (
        OperationOutput.objects.using(alias())
        .filter(workflow_id__in=workflow_ids)
        .values_list(
            "workflow_id", "function_id", "function_name", "output", "error", "child_workflow_id"
        )
        .order_by()
    )
    for workflow_id, function_id, function_name, output, error, child_workflow_id in rows:
        found[workflow_id][function_id] = RecordedOperation(
            function_id, function_name, output, error, child_workflow_id
        )
    return found
