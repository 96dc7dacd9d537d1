"""Querysets for people and their tools: the admin's and the dashboard's, and those the
testing tools inspect, on the system database.

Unlike the engine's queries, these are ORM querysets that the admin filters, searches and pages
itself.
"""

from __future__ import annotations

import datetime

from django.db.models import Count, Model, Q, QuerySet
from django.db.models.functions import TruncMinute

from ...models import (
    FINISHED,
    AlertState,
    AlertTransition,
    ApplicationVersion,
    Executor,
    Lease,
    OperationOutput,
    Schedule,
    Status,
    WorkflowStatus,
)
from ...models import Queue as QueueRow
from .connection import alias, execute
from .owned import WORKFLOW_TABLES

FAILED = [Status.ERROR, Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED]


def workflow_rows() -> QuerySet[WorkflowStatus]:
    return WorkflowStatus.objects.using(alias())


def schedule_rows() -> QuerySet[Schedule]:
    return Schedule.objects.using(alias())


def operation_rows() -> QuerySet[OperationOutput]:
    return OperationOutput.objects.using(alias())


def executor_rows() -> QuerySet[Executor]:
    """Every executor, the most recently heard first."""
    return Executor.objects.using(alias()).order_by("-last_heartbeat")


def counts_by_status() -> dict[str, int]:
    counts = dict.fromkeys(Status.values, 0)
    rows = workflow_rows().values("status").annotate(n=Count("workflow_id")).order_by()
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def counts_by_status_and_name(statuses: list[str]) -> dict[tuple[str, str], int]:
    """How many workflows of each (status, name) there are, for these statuses only.

    For PENDING and ENQUEUED it reads only those rows (the status index); for the finished
    statuses it reads the whole table, which the metrics endpoint does in the background.
    """
    rows = (
        workflow_rows()
        .filter(status__in=statuses)
        .values("status", "name")
        .annotate(n=Count("*"))
        .order_by()
    )
    return {(row["status"], row["name"]): row["n"] for row in rows}


def finished_by_minute(since: datetime.datetime) -> dict[datetime.datetime, tuple[int, int]]:
    """Workflows finished, and of those failed, in each minute since `since` that had any."""
    rows = (
        workflow_rows()
        .filter(status__in=FINISHED, updated_at__gte=since)
        .annotate(minute=TruncMinute("updated_at"))
        .values("minute")
        .annotate(
            finished=Count("workflow_id"),
            failed=Count("workflow_id", filter=Q(status__in=FAILED)),
        )
        .order_by()
    )
    return {row["minute"]: (row["finished"], row["failed"]) for row in rows}


def live_executor_count(silent_since: datetime.datetime) -> int:
    """Executors heard from since then; raises DatabaseError when the database does not answer."""
    execute("SELECT 1", [])
    return Executor.objects.using(alias()).filter(last_heartbeat__gte=silent_since).count()


# Children before parents, so that no delete cascades through the ORM.
_EVERY_TABLE: tuple[type[Model], ...] = (
    *(owned.model for owned in WORKFLOW_TABLES),
    WorkflowStatus,
    Executor,
    Schedule,
    QueueRow,
    Lease,
    AlertTransition,
    AlertState,
    ApplicationVersion,
)


def empty_every_table() -> None:
    """Delete every row of every system table (the testing tools, between two tests)."""
    for model in _EVERY_TABLE:
        model._default_manager.using(alias()).all().delete()
