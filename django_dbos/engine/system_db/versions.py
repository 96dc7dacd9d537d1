"""Application versions: the versions workers ran, the work no live worker can take (stranded),
and moving such work to the running version once a replay showed that its code continues it."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Sequence
from typing import cast

from django.db.models import Count, Max, Q, QuerySet

from ...models import ApplicationVersion, Executor, Status, WorkflowStatus
from .connection import WF, alias, execute, now, write_transaction
from .wakeups import QUEUE_ACTIVITY, announce

# Only workers recover and dequeue; a web process's row (role "process") runs nothing it did not
# start itself.
_WORKER_ROLE = "worker"
IN_FLIGHT = [Status.PENDING, Status.ENQUEUED]


def live_worker_versions(live_since: datetime.datetime) -> set[str]:
    """The application versions run by workers heard from since then."""
    return set(
        Executor.objects.using(alias())
        .filter(role=_WORKER_ROLE, last_heartbeat__gte=live_since)
        .values_list("application_version", flat=True)
    )


def _stranded(live_since: datetime.datetime) -> QuerySet[WorkflowStatus]:
    """PENDING or ENQUEUED workflows of a version no live worker runs (reads the status index).

    An ENQUEUED workflow without a version (a client's enqueue) is taken by any worker serving its
    queue, and a PENDING one whose process is alive (a web process of the old code, say) is
    running there: neither is stranded.
    """
    live = Executor.objects.using(alias()).filter(last_heartbeat__gte=live_since)
    return (
        WorkflowStatus.objects.using(alias())
        .filter(status__in=IN_FLIGHT, application_version__isnull=False)
        .exclude(application_version__in=live_worker_versions(live_since))
        .exclude(
            status=Status.PENDING, executor_id__in=list(live.values_list("executor_id", flat=True))
        )
    )


def stranded_counts(live_since: datetime.datetime) -> dict[str, int]:
    """The stranded workflows, counted by application version."""
    rows = _stranded(live_since).values("application_version").annotate(count=Count("*")).order_by()
    # cast: application_version__isnull=False leaves no None, which the model's type allows.
    return {cast(str, row["application_version"]): row["count"] for row in rows}


def stranded_by_queue(live_since: datetime.datetime) -> dict[str, int]:
    """The stranded workflows, counted by queue (those on no queue are left out)."""
    rows = (
        _stranded(live_since)
        .filter(queue_name__isnull=False)
        .values("queue_name")
        .annotate(count=Count("*"))
        .order_by()
    )
    return {cast(str, row["queue_name"]): row["count"] for row in rows}


# The versions table ---------------------------------------------------------------------------

_RECORD_VERSION = f"""
INSERT INTO {ApplicationVersion._meta.db_table} (version_name, version_timestamp, created_at)
VALUES (%s, %s, %s) ON CONFLICT (version_name) DO NOTHING
"""


def record_version(version_name: str) -> None:
    """Insert the version if it is not there yet (one statement, at each worker's start)."""
    moment = now()
    execute(_RECORD_VERSION, [version_name, moment, moment])


def application_versions() -> list[ApplicationVersion]:
    """Every recorded version, the latest (newest timestamp) first."""
    return list(ApplicationVersion.objects.using(alias()).order_by("-version_timestamp"))


def set_latest_version(version_name: str) -> bool:
    """Make a version the latest by giving it the newest timestamp; False if it is unknown."""
    versions = ApplicationVersion.objects.using(alias())
    with write_transaction():
        newest = versions.aggregate(newest=Max("version_timestamp"))["newest"]
        # Strictly newer than any other, even within one clock tick.
        moment = max(now(), newest + datetime.timedelta(microseconds=1)) if newest else now()
        return versions.filter(version_name=version_name).update(version_timestamp=moment) == 1


def live_executors_by_version(live_since: datetime.datetime) -> dict[str, list[Executor]]:
    """The executors heard from since then, by the version they run."""
    found: dict[str, list[Executor]] = defaultdict(list)
    for executor in (
        Executor.objects.using(alias())
        .filter(last_heartbeat__gte=live_since)
        .order_by("role", "executor_id")
    ):
        found[executor.application_version].append(executor)
    return dict(found)


def in_flight_by_version() -> dict[str | None, dict[str, int]]:
    """PENDING and ENQUEUED workflows counted by version, then status (the status index)."""
    found: dict[str | None, dict[str, int]] = defaultdict(dict)
    for row in (
        WorkflowStatus.objects.using(alias())
        .filter(status__in=IN_FLIGHT)
        .values("application_version", "status")
        .annotate(count=Count("*"))
        .order_by()
    ):
        found[row["application_version"]][row["status"]] = row["count"]
    return dict(found)


# Upgrades -------------------------------------------------------------------------------------

# What a replay needs of a row, and the fields the compare-and-set below compares.
_REPLAY_FIELDS: tuple[str, ...] = ("workflow_id", "name", "status", "inputs", "execution")
_REPLAY_FIELDS += ("application_version", "payload_expired_at")


def stranded_workflows(
    live_since: datetime.datetime,
    running_version: str,
    *,
    from_version: str | None,
    unchecked_only: bool,
    after: str,
    limit: int,
) -> list[WorkflowStatus]:
    """A batch of stranded workflows of other versions than the running one, by workflow id.

    `unchecked_only` leaves out those already found blocked on the running version's code.
    """
    rows = _stranded(live_since).exclude(application_version=running_version)
    if from_version is not None:
        rows = rows.filter(application_version=from_version)
    if unchecked_only:
        rows = rows.filter(
            Q(upgrade_checked_version__isnull=True) | ~Q(upgrade_checked_version=running_version)
        )
    return list(
        rows.filter(workflow_id__gt=after).only(*_REPLAY_FIELDS).order_by("workflow_id")[:limit]
    )


def in_flight_workflows(*, after: str, limit: int) -> list[WorkflowStatus]:
    """A batch of PENDING and ENQUEUED workflows, whatever their version, by workflow id."""
    rows = WorkflowStatus.objects.using(alias()).filter(status__in=IN_FLIGHT, workflow_id__gt=after)
    return list(rows.only(*_REPLAY_FIELDS).order_by("workflow_id")[:limit])


# Compare-and-set on what the upgrade read: a workflow that another worker moved, or that was
# taken, cancelled or resumed since (its status or execution changed), is left alone.
_READ_AS = "(workflow_id, status, application_version, execution)"
_MOVE = f"""
UPDATE {WF} SET application_version = %s, upgrade_blocked_at = NULL,
    upgrade_checked_version = NULL, updated_at = %s
WHERE {_READ_AS} IN (VALUES {{rows}})
RETURNING workflow_id
"""
_BLOCK = f"""
UPDATE {WF} SET upgrade_blocked_at = %s, upgrade_checked_version = %s
WHERE {_READ_AS} = (%s, %s, %s, %s)
"""


def _read_as(row: WorkflowStatus) -> list[object]:
    return [row.workflow_id, row.status, row.application_version, row.execution]


def upgrade_batch(
    moves: Sequence[WorkflowStatus],
    blocks: Sequence[tuple[WorkflowStatus, str]],
    running_version: str,
) -> list[WorkflowStatus]:
    """Move workflows to the running version (one statement) and record the divergences of
    others (as JSON), in one transaction; return the rows this call moved (each workflow is
    moved by one caller only)."""
    moved_ids: set[str] = set()
    with write_transaction():
        if moves:
            rows = ", ".join(["(%s, %s, %s, %s)"] * len(moves))
            params = [running_version, now(), *(v for row in moves for v in _read_as(row))]
            moved_ids = {found for (found,) in execute(_MOVE.format(rows=rows), params).fetchall()}
        for row, divergence in blocks:
            execute(_BLOCK, [divergence, running_version, *_read_as(row)])
        moved = [row for row in moves if row.workflow_id in moved_ids]
        if any(row.status == Status.ENQUEUED for row in moved):
            announce(QUEUE_ACTIVITY)  # the running version's dispatchers may take them now
    return moved
