"""Queue rows and queued workflows: limits, loads, and claiming what a worker may run."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from django.db import connections
from django.db.models import Count, Min

from ...models import Executor, Status, WorkflowStatus
from ...models import Queue as QueueRow
from .. import clock
from ..registry import QUEUE_LIMITS, QueueSpec
from .connection import QUEUE, WF, alias, execute, now, parse_time, write_transaction
from .rows import ClaimedWorkflow
from .versions import stranded_by_queue


def sync_queues(specs: Iterable[QueueSpec]) -> None:
    """Write the limits declared in code to the queue rows (at worker start)."""
    with write_transaction():
        for spec in specs:
            QueueRow.objects.using(alias()).update_or_create(
                name=spec.name,
                defaults={
                    **{limit: getattr(spec, limit) for limit in QUEUE_LIMITS},
                    "updated_at": now(),
                },
            )


def ensure_queue(spec: QueueSpec) -> None:
    """Create a queue's row if it has none (queues made on demand keep edited limits)."""
    if not QueueRow.objects.using(alias()).filter(name=spec.name).exists():
        sync_queues([spec])


def queue_limits() -> list[QueueSpec]:
    """The limits of every queue, as stored (and perhaps edited in the admin)."""
    return [
        QueueSpec(name=row.name, **{limit: getattr(row, limit) for limit in QUEUE_LIMITS})
        for row in QueueRow.objects.using(alias()).order_by("name")
    ]


@dataclass(frozen=True)
class QueueLoad:
    """What the system tables say of one queue: its stored limits (None when no worker or
    in-process enqueue recorded it), its waiting and running workflows, and the live executors
    that dispatch it."""

    name: str
    limits: QueueSpec | None
    enqueued: int
    pending: int
    oldest_enqueued_at: datetime.datetime | None
    live_workers: int
    stranded: int = 0  # ENQUEUED or PENDING on a version no live worker runs


def queue_statuses(names: Iterable[str], live_since: datetime.datetime) -> list[QueueLoad]:
    """These queues and every queue that has a row or ENQUEUED or PENDING workflows, by name.

    Cheap with millions of finished workflows: the counts read only the waiting and running
    rows (the status index), and the executor rows are few.
    """
    # cast: queue_name__isnull=False below leaves no None, which the model's type allows.
    active: dict[tuple[str, str], Mapping[str, Any]] = {
        (cast(str, row["queue_name"]), row["status"]): row
        for row in WorkflowStatus.objects.using(alias())
        .filter(status__in=[Status.ENQUEUED, Status.PENDING], queue_name__isnull=False)
        .values("queue_name", "status")
        .annotate(count=Count("*"), oldest=Min("created_at"))
        .order_by()
    }
    serving: Counter[str] = Counter()
    for served in (
        Executor.objects.using(alias())
        .filter(last_heartbeat__gte=live_since, queues__isnull=False)
        .values_list("queues", flat=True)
    ):
        serving.update(set(cast(list[str], served)))  # queues__isnull=False: a list of names
    limits = {queue.name: queue for queue in queue_limits()}
    stranded = stranded_by_queue(live_since)
    loads = []
    for name in sorted({*names, *limits, *(name for name, _ in active)}):
        enqueued = active.get((name, Status.ENQUEUED), {})
        pending = active.get((name, Status.PENDING), {})
        loads.append(
            QueueLoad(
                name=name,
                limits=limits.get(name),
                enqueued=enqueued.get("count", 0),
                pending=pending.get("count", 0),
                oldest_enqueued_at=enqueued.get("oldest"),
                live_workers=serving[name],
                stranded=stranded.get(name, 0),
            )
        )
    return loads


def claim_queued(
    queue: QueueSpec, executor_id: str, application_version: str, limit: int
) -> list[ClaimedWorkflow]:
    """Move up to `limit` due ENQUEUED workflows of a queue to PENDING on this executor.

    Highest priority first (1; 0 means none and goes first), then oldest. The counts behind the
    global concurrency and the rate limit are taken in the same transaction, under a lock on the
    queue's row on PostgreSQL (SQLite runs one writer at a time), so two workers never spend one
    budget twice. Rows are picked with SKIP LOCKED, so workers never wait for each other.
    """
    postgres = connections[alias()].vendor == "postgresql"
    # On the engine's clock (a test may freeze it): the delays compared here, and the dequeue
    # times written here that rate windows count, must agree with it.
    moment = clock.now()
    if queue.concurrency is None and queue.rate_limit is None and not queue.partition_queue:
        # No budget shared with other workers to count: one statement, no transaction.
        return _claim(queue, None, limit, executor_id, application_version, moment)
    claimed: list[ClaimedWorkflow] = []
    with write_transaction():
        if postgres and (queue.concurrency is not None or queue.rate_limit is not None):
            execute(f"SELECT 1 FROM {QUEUE} WHERE name = %s FOR UPDATE", [queue.name])
        if queue.rate_limit is not None and queue.rate_period_seconds:
            since = moment - datetime.timedelta(seconds=queue.rate_period_seconds)
            # cast: a COUNT(*) always returns its one row.
            (started,) = cast(
                tuple[int],
                execute(
                    f"SELECT COUNT(*) FROM {WF} WHERE queue_name = %s AND started_at > %s",
                    [queue.name, since],
                ).fetchone(),
            )
            limit = min(limit, queue.rate_limit - started)
        # On a partitioned queue, None is the partition of the workflows enqueued without a
        # key (by a DBOSClient, before the queue was declared): claimed so that the dispatcher
        # ends them in ERROR. Elsewhere, None takes any key.
        partitions: list[str | None] = [None]
        if queue.partition_queue:
            partitions = [
                row[0]
                for row in execute(
                    f"SELECT DISTINCT queue_partition_key FROM {WF} "
                    "WHERE queue_name = %s AND status = 'ENQUEUED'",
                    [queue.name],
                ).fetchall()
            ]
        for partition in partitions:
            budget = limit - len(claimed)
            if budget > 0 and queue.concurrency is not None:
                budget = min(budget, queue.concurrency - _running(queue, partition))
            if budget > 0:
                claimed += _claim(
                    queue, partition, budget, executor_id, application_version, moment
                )
    return claimed


def _partition_filter(queue: QueueSpec, partition: str | None) -> tuple[str, list[Any]]:
    """The condition that keeps one partition's workflows (none on a queue without partitions)."""
    if not queue.partition_queue:
        return "", []
    if partition is None:
        return " AND queue_partition_key IS NULL", []
    return " AND queue_partition_key = %s", [partition]


def _running(queue: QueueSpec, partition: str | None) -> int:
    partition_filter, partition_params = _partition_filter(queue, partition)
    sql = f"SELECT COUNT(*) FROM {WF} WHERE queue_name = %s AND status = 'PENDING'"
    # cast: a COUNT(*) always returns its one row.
    (running,) = cast(
        tuple[int], execute(sql + partition_filter, [queue.name, *partition_params]).fetchone()
    )
    return running


def _claim(
    queue: QueueSpec,
    partition: str | None,
    limit: int,
    executor_id: str,
    application_version: str,
    moment: datetime.datetime,
) -> list[ClaimedWorkflow]:
    """Pick and take the due workflows in one statement (one round trip when autocommitted).

    A debounced workflow gives up its deduplication id here: its burst of calls is over once it
    starts, and the next call with its key enqueues a new one.
    """
    postgres = connections[alias()].vendor == "postgresql"
    partition_filter, partition_params = _partition_filter(queue, partition)
    # The pick is a materialized CTE: as a subquery, PostgreSQL may run it again for each row
    # it updates, and its LIMIT would then no longer pick the oldest.
    sql = f"""
        WITH picked AS MATERIALIZED (
            SELECT workflow_id AS picked_id FROM {WF}
            WHERE queue_name = %s{partition_filter} AND status = 'ENQUEUED'
                AND (dispatch_after IS NULL OR dispatch_after <= %s)
                AND (application_version = %s OR application_version IS NULL)
            ORDER BY priority, created_at
            LIMIT %s{" FOR UPDATE SKIP LOCKED" if postgres else ""}
        )
        UPDATE {WF} SET status = 'PENDING', executor_id = %s, started_at = %s, updated_at = %s,
            application_version = %s, execution = execution + 1,
            deduplication_id = CASE WHEN debounced THEN NULL ELSE deduplication_id END
        FROM picked
        WHERE workflow_id = picked_id AND status = 'ENQUEUED'
        RETURNING workflow_id, name, inputs, recovery_attempts, deadline, timeout_ms, execution,
            priority, created_at, queue_partition_key, trace_context, dispatch_after
    """
    params: list[Any] = [queue.name, *partition_params, moment, application_version, limit]
    params += [executor_id, moment, moment, application_version]
    rows = execute(sql, params).fetchall()
    # RETURNING keeps no order: start them highest priority, then oldest, first.
    rows.sort(key=lambda row: (row[7], parse_time(row[8])))
    claimed = []
    for row in rows:
        workflow_id, name, inputs, attempts, deadline, timeout_ms, execution, priority = row[:8]
        created_at, key, trace_context, dispatch_after = row[8:]
        deadline = parse_time(deadline)
        if deadline is None and timeout_ms is not None:
            # A queued workflow's timeout counts from its dequeue.
            deadline = moment + datetime.timedelta(milliseconds=timeout_ms)
            execute(
                f"UPDATE {WF} SET deadline = %s WHERE workflow_id = %s", [deadline, workflow_id]
            )
        claimed.append(
            ClaimedWorkflow(
                workflow_id,
                name,
                inputs,
                attempts,
                deadline,
                queue.name,
                execution,
                priority=priority,
                queue_partition_key=key,
                trace_context=trace_context,
                waited_seconds=_waited(moment, execution, created_at, dispatch_after),
            )
        )
    return claimed


def _waited(
    moment: datetime.datetime, execution: int, created_at: Any, dispatch_after: Any
) -> float | None:
    """Seconds from when a workflow could first run (its enqueue, or the end of its delay) to
    its first claim; None for a later claim (requeued by a recovery or a resume), whose
    eligible time the row no longer says."""
    eligible = parse_time(created_at)
    if execution != 1 or eligible is None:
        return None
    delay = parse_time(dispatch_after)
    if delay is not None and _utc(delay) > _utc(eligible):
        eligible = delay
    return max(0.0, (moment - _utc(eligible)).total_seconds())


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """A time read back from SQLite may be naive: it is in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
