"""Workflow rows: start, outcome, parking, cancellation, resume, fork and listing."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

from django.db import connections
from django.db.models import QuerySet
from django.db.models.functions import Left

from ...models import FINISHED, Status, WorkflowStatus
from .. import clock
from .connection import (
    EVENT,
    EVENT_HISTORY,
    OP,
    STREAM,
    WF,
    alias,
    execute,
    json_value,
    now,
    storable,
    write_transaction,
)
from .containment import containing
from .rows import NOT_WAITING, OWNED, ClaimedWorkflow, NewWorkflow
from .wakeups import QUEUE_ACTIVITY, announce, execute_and_notify, wake_key

_NEW_WORKFLOW_COLUMNS = [field.name for field in dataclasses.fields(NewWorkflow)]
_INSERT_WORKFLOW = f"""
INSERT INTO {WF} ({", ".join(_NEW_WORKFLOW_COLUMNS)}, recovery_attempts, created_at, updated_at,
    started_at)
VALUES ({", ".join(["%s"] * len(_NEW_WORKFLOW_COLUMNS))}, 0, %s, %s, %s)
ON CONFLICT DO NOTHING
"""
_ATTRIBUTES = _NEW_WORKFLOW_COLUMNS.index("attributes")

# What fork_workflow did.
ForkOutcome = Literal["forked", "id_taken", "original_gone"]


def insert_workflow(row: NewWorkflow, *, wake_key: str = "") -> bool:
    """Write a new workflow's row; False when the id (or deduplication id) is already taken."""
    moment = now()
    started = moment if row.status == Status.PENDING else None
    values = [getattr(row, column) for column in _NEW_WORKFLOW_COLUMNS]
    values[_ATTRIBUTES] = json_value(row.attributes)
    cursor = execute_and_notify(_INSERT_WORKFLOW, [*values, moment, moment, started], wake_key)
    return cursor.rowcount == 1


_FINISH_WORKFLOW = f"""
UPDATE {WF} SET status = %s, output = %s, error = %s, updated_at = %s, deduplication_id = NULL,
    {NOT_WAITING}
WHERE {OWNED}
"""


def finish_workflow(
    workflow_id: str,
    executor_id: str,
    status: str,
    output: str | None,
    error: str | None,
    *,
    execution: int = 0,
    wake_keys: Sequence[str] = (),
) -> bool:
    """Write a workflow's outcome, if this executor still owns it; False otherwise."""
    cursor = execute_and_notify(
        _FINISH_WORKFLOW,
        [status, output, error, now(), workflow_id, executor_id, execution],
        *wake_keys,
    )
    return cursor.rowcount == 1


_PARK_WORKFLOW = f"UPDATE {WF} SET waiting = %s, wake_at = %s WHERE {OWNED}"
_UNPARK_WORKFLOW = f"UPDATE {WF} SET {NOT_WAITING} WHERE {OWNED}"


def park_workflow(
    workflow_id: str,
    executor_id: str,
    execution: int,
    waiting: str,
    wake_at: datetime.datetime | None,
) -> bool:
    """Note what a parked workflow waits for, if this execution still owns it; False otherwise."""
    cursor = execute(_PARK_WORKFLOW, [waiting[:255], wake_at, workflow_id, executor_id, execution])
    return cursor.rowcount == 1


def unpark_workflow(workflow_id: str, executor_id: str, execution: int) -> None:
    """Clear what a woken workflow waited for (nothing, if it is no longer this execution's)."""
    execute(_UNPARK_WORKFLOW, [workflow_id, executor_id, execution])


def get_workflow(workflow_id: str) -> WorkflowStatus | None:
    if not storable(workflow_id):
        return None
    return WorkflowStatus.objects.using(alias()).filter(workflow_id=workflow_id).first()


def get_outcome(workflow_id: str) -> tuple[str, str | None, str | None, bool] | None:
    """Return (status, output, error, whether its payload expired) of a workflow, or None when
    it does not exist."""
    if not storable(workflow_id):
        return None
    row = (
        WorkflowStatus.objects.using(alias())
        .filter(workflow_id=workflow_id)
        .values_list("status", "output", "error", "payload_expired_at")
        .first()
    )
    return None if row is None else (row[0], row[1], row[2], row[3] is not None)


def give_up(workflow_id: str) -> bool:
    """Stop a PENDING workflow recovered too often: MAX_RECOVERY_ATTEMPTS_EXCEEDED, its
    deduplication id released, its waiters woken."""
    cursor = execute_and_notify(
        f"""
        UPDATE {WF} SET status = %s, updated_at = %s, deduplication_id = NULL
        WHERE workflow_id = %s AND status = 'PENDING'
        """,
        [Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED, now(), workflow_id],
        wake_key("w", workflow_id),
    )
    return cursor.rowcount == 1


def update_attributes(
    workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
) -> bool:
    """Replace a workflow's attributes (None clears them), or with `merge` set their top-level
    keys over the recorded ones; False when there is no such workflow.

    The merge reads and writes in one transaction, the row locked (SQLite: the database), so
    two merges never lose each other's keys. updated_at stays: for a finished workflow it is
    when the workflow ended.
    """
    if not storable(workflow_id):
        return False
    with write_transaction():
        if merge:
            lock = " FOR UPDATE" if connections[alias()].vendor == "postgresql" else ""
            found = execute(
                f"SELECT attributes FROM {WF} WHERE workflow_id = %s{lock}", [workflow_id]
            ).fetchone()
            if found is None:
                return False
            recorded = _json_column(found[0])
            attributes = {**(recorded if isinstance(recorded, dict) else {}), **(attributes or {})}
        cursor = execute(
            f"UPDATE {WF} SET attributes = %s WHERE workflow_id = %s",
            [json_value(attributes), workflow_id],
        )
    return cursor.rowcount == 1


def _json_column(value: Any) -> Any:
    """A JSON column as a raw statement reads it: parsed already by psycopg, text on SQLite."""
    return json.loads(value) if isinstance(value, str) else value


# Cancellation ---------------------------------------------------------------------------------


def descendants(workflow_id: str) -> list[str]:
    """The ids of a workflow's children, grandchildren, ... that were not started detached."""
    found: list[str] = []
    frontier = [workflow_id]
    while frontier:
        frontier = list(
            WorkflowStatus.objects.using(alias())
            .filter(parent_workflow_id__in=frontier, detached=False)
            .values_list("workflow_id", flat=True)
        )
        found.extend(frontier)
    return found


def cancel_workflows(
    workflow_ids: Sequence[str], *, wake_keys: Callable[[str], list[str]]
) -> list[str]:
    """Set the unfinished ones of these workflows CANCELLED; return which were."""
    placeholders = ", ".join(["%s"] * len(workflow_ids))
    sql = f"""
        UPDATE {WF} SET status = 'CANCELLED', updated_at = %s, deduplication_id = NULL,
            {NOT_WAITING}
        WHERE workflow_id IN ({placeholders}) AND status IN ('PENDING', 'ENQUEUED')
        RETURNING workflow_id
    """
    with write_transaction():
        cancelled = [row[0] for row in execute(sql, [now(), *workflow_ids]).fetchall()]
        announce(*[key for workflow_id in cancelled for key in wake_keys(workflow_id)])
    return cancelled


# Resume and fork ------------------------------------------------------------------------------

RESUMABLE = (Status.CANCELLED, Status.ERROR, Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED)


def resume_workflow(
    workflow_id: str, *, executor_id: str | None, queue_name: str | None
) -> ClaimedWorkflow | None:
    """Set a cancelled or failed workflow going again, with its recovery attempts reset.

    A recorded error of its last operation is discarded, so that operation runs again. With an
    executor id, that executor claims it (and gets it back, to run); otherwise it goes back to
    ENQUEUED on `queue_name` for a worker. Returns None when there is nothing to run here.
    """
    lock = " FOR UPDATE" if connections[alias()].vendor == "postgresql" else ""
    statuses = ", ".join(f"'{status}'" for status in RESUMABLE)
    with write_transaction():
        row = execute(
            f"SELECT name, inputs, timeout_ms, trace_context FROM {WF} "
            f"WHERE workflow_id = %s AND status IN ({statuses}) AND payload_expired_at IS NULL"
            f"{lock}",
            [workflow_id],
        ).fetchone()
        if row is None:
            return None
        name, inputs, timeout_ms, trace_context = row
        execute(
            f"""
            DELETE FROM {OP} WHERE workflow_id = %s AND error IS NOT NULL AND function_id =
                (SELECT MAX(function_id) FROM {OP} WHERE workflow_id = %s)
            """,
            [workflow_id, workflow_id],
        )
        moment = now()
        if executor_id is None:
            execute_and_notify(
                f"""
                UPDATE {WF} SET status = 'ENQUEUED', queue_name = %s, executor_id = NULL,
                    recovery_attempts = 0, output = NULL, error = NULL, deadline = NULL,
                    updated_at = %s
                WHERE workflow_id = %s
                """,
                [queue_name, moment, workflow_id],
                QUEUE_ACTIVITY,
            )
            return None
        deadline = clock.now() + datetime.timedelta(milliseconds=timeout_ms) if timeout_ms else None
        # cast: the row is there, locked by the SELECT above.
        (execution,) = cast(
            tuple[int],
            execute(
                f"""
                UPDATE {WF} SET status = 'PENDING', executor_id = %s, recovery_attempts = 0,
                    output = NULL, error = NULL, deadline = %s, updated_at = %s,
                    execution = execution + 1
                WHERE workflow_id = %s
                RETURNING execution
                """,
                [executor_id, deadline, moment, workflow_id],
            ).fetchone(),
        )
    return ClaimedWorkflow(
        workflow_id, name, inputs, 0, deadline, execution=execution, trace_context=trace_context
    )


def fork_workflow(original_id: str, row: NewWorkflow, start_step: int) -> ForkOutcome:
    """Write a new workflow that starts as a copy of workflow `original_id` before operation
    `start_step`: its recorded operations, the values its events had then, and its stream entries.

    Nothing is written when the new workflow's id is taken, or when the original is gone or its
    payload expired since the caller read it: the original's row is locked (shared) first, so
    that a retention turn cannot scrub it while it is copied.
    """
    copy = [row.workflow_id, original_id, start_step]
    lock = " FOR SHARE" if connections[alias()].vendor == "postgresql" else ""
    with write_transaction():
        kept = execute(
            f"SELECT 1 FROM {WF} WHERE workflow_id = %s AND payload_expired_at IS NULL{lock}",
            [original_id],
        ).fetchone()
        if kept is None:
            return "original_gone"
        queued = row.status == Status.ENQUEUED
        if not insert_workflow(row, wake_key=QUEUE_ACTIVITY if queued else ""):
            return "id_taken"
        execute(
            f"""
            INSERT INTO {OP} (workflow_id, function_id, function_name, output, error,
                child_workflow_id, started_at, completed_at)
            SELECT %s, function_id, function_name, output, error, child_workflow_id, started_at,
                completed_at
            FROM {OP} WHERE workflow_id = %s AND function_id < %s
            """,
            copy,
        )
        execute(
            f"""
            INSERT INTO {EVENT_HISTORY} (workflow_id, function_id, key, value)
            SELECT %s, function_id, key, value FROM {EVENT_HISTORY}
            WHERE workflow_id = %s AND function_id < %s
            """,
            copy,
        )
        execute(
            f"""
            INSERT INTO {EVENT} (workflow_id, key, value, updated_at)
            SELECT h.workflow_id, h.key, h.value, %s FROM {EVENT_HISTORY} h
            WHERE h.workflow_id = %s AND h.function_id = (
                SELECT MAX(function_id) FROM {EVENT_HISTORY} latest
                WHERE latest.workflow_id = h.workflow_id AND latest.key = h.key)
            """,
            [now(), row.workflow_id],
        )
        execute(
            f"""
            INSERT INTO {STREAM} (workflow_id, key, position, value, closed, function_id,
                created_at)
            SELECT %s, key, position, value, closed, function_id, created_at FROM {STREAM}
            WHERE workflow_id = %s AND function_id < %s
            """,
            copy,
        )
    return "forked"


def matching_workflows(
    *,
    workflow_ids: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    name: str | None = None,
    queue_name: str | None = None,
    queued_only: bool = False,
    start_time: datetime.datetime | None = None,
    end_time: datetime.datetime | None = None,
    app_version: str | None = None,
    user: str | None = None,
    attributes: dict[str, Any] | None = None,
    workflow_id_prefix: str | None = None,
    executor_id: str | None = None,
    parent_workflow_id: str | None = None,
    has_parent: bool | None = None,
    forked_from: str | None = None,
    is_fork: bool | None = None,
    completed_after: datetime.datetime | None = None,
    completed_before: datetime.datetime | None = None,
) -> QuerySet[WorkflowStatus]:
    """The workflows matching every filter given, unordered (listing and export filter alike)."""
    rows = WorkflowStatus.objects.using(alias())
    if workflow_ids is not None:
        rows = rows.filter(workflow_id__in=list(workflow_ids))
    if statuses is not None:
        rows = rows.filter(status__in=list(statuses))
    if name is not None:
        rows = rows.filter(name=name)
    if queue_name is not None:
        rows = rows.filter(queue_name=queue_name)
    elif queued_only:
        rows = rows.filter(queue_name__isnull=False)
    if start_time is not None:
        rows = rows.filter(created_at__gte=start_time)
    if end_time is not None:
        rows = rows.filter(created_at__lte=end_time)
    if app_version is not None:
        rows = rows.filter(application_version=app_version)
    if user is not None:
        rows = rows.filter(authenticated_user=user)
    if attributes:  # {} asks nothing of a workflow (as DBOS): every one matches
        rows = containing(rows, attributes)
    if workflow_id_prefix:  # every id starts with ""
        # Not LIKE: SQLite's ignores case.
        length = len(workflow_id_prefix)
        rows = rows.alias(id_start=Left("workflow_id", length)).filter(id_start=workflow_id_prefix)
    if executor_id is not None:
        rows = rows.filter(executor_id=executor_id)
    if parent_workflow_id is not None:
        rows = rows.filter(parent_workflow_id=parent_workflow_id)
    if has_parent is not None:
        rows = rows.filter(parent_workflow_id__isnull=not has_parent)
    if forked_from is not None:
        rows = rows.filter(forked_from=forked_from)
    if is_fork is not None:
        rows = rows.filter(forked_from__isnull=not is_fork)
    if completed_after is not None or completed_before is not None:
        # A finished workflow's updated_at is its end (dbos_wf_finished_idx orders them by it).
        rows = rows.filter(status__in=FINISHED)
    if completed_after is not None:
        rows = rows.filter(updated_at__gte=completed_after)
    if completed_before is not None:
        rows = rows.filter(updated_at__lte=completed_before)
    return rows


def list_workflows(
    *,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    **filters: Any,
) -> list[WorkflowStatus]:
    """Workflows matching every filter given (those of `matching_workflows`), by creation time."""
    rows = matching_workflows(**filters)
    rows = rows.order_by("-created_at" if sort_desc else "created_at", "workflow_id")
    start = offset or 0
    return list(rows[start : start + limit] if limit is not None else rows[start:])


def get_outcomes(workflow_ids: Sequence[str]) -> dict[str, tuple[str, str | None, str | None]]:
    """(status, output, error) of several workflows at once."""
    return {
        row[0]: row[1:]
        for row in WorkflowStatus.objects.using(alias())
        .filter(workflow_id__in=list(workflow_ids))
        .values_list("workflow_id", "status", "output", "error")
    }
