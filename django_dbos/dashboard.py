"""The figures of the admin dashboard, read with the ORM (the engine never needs them)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Count, Q
from django.db.models.functions import TruncMinute
from django.utils import timezone

from . import conf
from .models import Executor, Status, WorkflowStatus

FINISHED = [Status.SUCCESS, Status.ERROR, Status.CANCELLED, Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED]
FAILED = [Status.ERROR, Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED]


@dataclass(frozen=True)
class Minute:
    at: datetime.datetime
    finished: int
    failed: int


def _workflows() -> object:
    return WorkflowStatus.objects.using(conf.get("DATABASE"))


def counts_by_status() -> dict[str, int]:
    counts = dict.fromkeys(Status.values, 0)
    rows = _workflows().values("status").annotate(n=Count("workflow_id")).order_by()
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def last_hour() -> list[Minute]:
    """Workflows finished and failed in each minute of the last hour (oldest first)."""
    now = timezone.now().replace(second=0, microsecond=0)
    since = now - datetime.timedelta(minutes=59)
    rows = (
        _workflows()
        .filter(status__in=FINISHED, updated_at__gte=since)
        .annotate(minute=TruncMinute("updated_at"))
        .values("minute")
        .annotate(
            finished=Count("workflow_id"),
            failed=Count("workflow_id", filter=Q(status__in=FAILED)),
        )
        .order_by()
    )
    by_minute = {row["minute"]: row for row in rows}
    minutes = []
    for offset in range(60):
        at = since + datetime.timedelta(minutes=offset)
        row = by_minute.get(at, {})
        minutes.append(Minute(at, row.get("finished", 0), row.get("failed", 0)))
    return minutes


def executors() -> list[dict[str, object]]:
    """Every executor with its last heartbeat and whether it still counts as alive."""
    timeout = datetime.timedelta(seconds=float(conf.get("EXECUTOR_TIMEOUT_SECONDS")))
    now = timezone.now()
    return [
        {
            "executor": executor,
            "alive": now - executor.last_heartbeat < timeout,
            "seconds_ago": max(0, round((now - executor.last_heartbeat).total_seconds())),
        }
        for executor in Executor.objects.using(conf.get("DATABASE")).order_by("-last_heartbeat")
    ]
