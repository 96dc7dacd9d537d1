"""Application versions as the executor rows show them, and the work no live worker can take."""

from __future__ import annotations

import datetime
from typing import cast

from django.db.models import Count

from ...models import Executor, Status, WorkflowStatus
from .connection import alias

# Only workers recover and dequeue; a web process's row (role "process") runs nothing it did not
# start itself.
_WORKER_ROLE = "worker"


def live_worker_versions(live_since: datetime.datetime) -> set[str]:
    """The application versions run by workers heard from since then."""
    return set(
        Executor.objects.using(alias())
        .filter(role=_WORKER_ROLE, last_heartbeat__gte=live_since)
        .values_list("application_version", flat=True)
    )


def stranded_counts(live_since: datetime.datetime) -> dict[str, int]:
    """PENDING or ENQUEUED workflows, by application version, of versions no live worker runs.

    An ENQUEUED workflow without a version (a client's enqueue) is taken by any worker serving its
    queue, so it is never stranded here. Reads only the active rows (the status index).
    """
    rows = (
        WorkflowStatus.objects.using(alias())
        .filter(status__in=[Status.PENDING, Status.ENQUEUED], application_version__isnull=False)
        .exclude(application_version__in=live_worker_versions(live_since))
        .values("application_version")
        .annotate(count=Count("*"))
        .order_by()
    )
    # cast: application_version__isnull=False above leaves no None, which the model's type allows.
    return {cast(str, row["application_version"]): row["count"] for row in rows}
