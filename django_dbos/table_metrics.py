"""The gauges that `GET <prefix>metrics/` computes from the system tables at scrape time.

A scrape reads only the waiting and running workflows (the status index), the queue rows and the
executor rows, so it stays cheap however many finished workflows the table keeps. Counting the
finished ones reads the whole table (0.2 s at a million rows on PostgreSQL), so each process keeps
their counts and recounts them in a background thread once they are older than
DBOS["METRICS_FINISHED_COUNTS_SECONDS"]; only the first scrape a process answers waits for that
count. prometheus_client is optional (`django-dbos[metrics]`): it is imported at scrape time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.db import DatabaseError, connections
from django.dispatch import receiver

from . import conf, queries
from .api import DBOS
from .types import WorkflowStatusString

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger("django_dbos")

INSTALL = "pip install 'django-dbos[metrics]'"


class MetricsUnavailable(Exception):
    """prometheus_client is not installed: the endpoint cannot answer."""


def exposition() -> tuple[bytes, str]:
    """The Prometheus text exposition of the tables' gauges (and the process registry's
    series), with its content type; raises DatabaseError if the database does not answer."""
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError:
        raise MetricsUnavailable(
            f"The metrics endpoint needs prometheus_client: {INSTALL}"
        ) from None
    # One registry per scrape: the collector computes its gauges when asked (auto_describe off,
    # so registering it runs no query).
    tables = CollectorRegistry(auto_describe=False)
    tables.register(_TableCollector())
    body = generate_latest(tables)
    # This process's own counters and histograms (workflows finished, step durations...), when
    # it keeps them: those of a web process that runs workflows too.
    process = queries.process_metrics_registry()
    if process is not None:
        body += generate_latest(process)
    return body, CONTENT_TYPE_LATEST


# The counts of finished workflows --------------------------------------------------------------


@dataclass(frozen=True)
class _Counted:
    counts: dict[tuple[str, str], int]  # (status, name) -> workflows
    began: float  # time.monotonic() when the count began: the counts are as of then, or later


class _FinishedCounts:
    """The finished workflows by (status, name), recounted in the background when stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted: _Counted | None = None
        self._recounting = False

    def get(self) -> _Counted | None:
        """The kept counts; None until the first count, which a process's first scrape starts
        in the background rather than waiting for it (a fifth of a second at a million rows)."""
        max_age = float(conf.get("METRICS_FINISHED_COUNTS_SECONDS"))
        if max_age == 0:
            return self._count()
        counted = self._counted
        if counted is None or time.monotonic() - counted.began >= max_age:
            self._recount_in_background()
        return counted

    def _count(self) -> _Counted:
        began = time.monotonic()
        counted = _Counted(queries.workflow_counts(queries.FINISHED), began)
        with self._lock:
            # Two counts may overlap (two first scrapes): keep the later one.
            if self._counted is None or self._counted.began < began:
                self._counted = counted
        return counted

    def _recount_in_background(self) -> None:
        with self._lock:
            if self._recounting:
                return
            self._recounting = True
        threading.Thread(target=self._recount, name="dbos-metrics-recount", daemon=True).start()

    def _recount(self) -> None:
        try:
            self._count()
        except DatabaseError:
            # The next scrape tries again; meanwhile the age gauge shows the counts growing old.
            logger.exception("Metrics: counting the finished workflows failed.")
        finally:
            connections.close_all()  # this thread's own connections
            with self._lock:
                self._recounting = False


_finished = _FinishedCounts()


@receiver(setting_changed)
def _forget_counts(*, setting: str, **kwargs: Any) -> None:
    """A test that changes the DBOS setting starts from no counts."""
    global _finished
    if setting == "DBOS":
        _finished = _FinishedCounts()


# The gauges ------------------------------------------------------------------------------------


class _TableCollector:
    """prometheus_client's custom collector protocol: collect() runs the queries of one scrape."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        finished = _finished.get()
        active = queries.workflow_counts(queries.ACTIVE)
        counts = {**(finished.counts if finished is not None else {}), **active}
        # Before the first count of finished workflows, their statuses are left out (not 0).
        statuses = [str(s) for s in WorkflowStatusString]
        if finished is None:
            statuses = queries.ACTIVE
        # Every status of every known name, zeros included, so that a series drops to 0 rather
        # than disappearing when its last workflow changes status.
        names = sorted({*queries.workflow_names(), *(name for _, name in counts)})
        workflows = GaugeMetricFamily(
            "dbos_workflows",
            "Workflows in each status, by workflow name (PENDING and ENQUEUED counted at this "
            "scrape; the finished statuses as of dbos_workflows_finished_counts_age_seconds).",
            labels=["status", "name"],
        )
        for status in statuses:
            for name in names:
                workflows.add_metric([status, name], counts.get((status, name), 0))
        yield workflows
        if finished is not None:
            yield GaugeMetricFamily(
                "dbos_workflows_finished_counts_age_seconds",
                "How long ago this process began the count of finished workflows in "
                "dbos_workflows.",
                value=max(0.0, time.monotonic() - finished.began),
            )

        depth = GaugeMetricFamily(
            "dbos_queue_depth",
            "Workflows waiting (ENQUEUED) and running (PENDING) on each queue.",
            labels=["queue", "status"],
        )
        oldest = GaugeMetricFamily(
            "dbos_queue_oldest_enqueued_seconds",
            "Age of the oldest ENQUEUED workflow of each queue (0 when none waits).",
            labels=["queue"],
        )
        for queue in DBOS.list_queues():
            depth.add_metric([queue.name, "ENQUEUED"], queue.enqueued)
            depth.add_metric([queue.name, "PENDING"], queue.pending)
            oldest.add_metric([queue.name], queue.oldest_enqueued_age_seconds or 0.0)
        yield depth
        yield oldest

        yield GaugeMetricFamily(
            "dbos_executors_alive",
            "Executors (workers and processes that run workflows) with a heartbeat within "
            'DBOS["EXECUTOR_TIMEOUT_SECONDS"].',
            value=queries.live_executor_count(),
        )
        stranded = GaugeMetricFamily(
            "dbos_workflows_stranded",
            "PENDING or ENQUEUED workflows of an application version that no live worker runs.",
            labels=["version"],
        )
        for version, count in sorted(queries.stranded_counts().items()):
            stranded.add_metric([version], count)
        yield stranded
