"""Every read and write of the system tables. Nothing else touches them.

Hot-path writes (a workflow's start, each step, its end) are single raw statements in autocommit,
with the ownership check folded into the statement, so that a step costs one round trip. Colder
reads go through the ORM, which converts types for both PostgreSQL and SQLite.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import conf
from ..models import (
    Executor,
    Notification,
    OperationOutput,
    Schedule,
    Status,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
    WorkflowStatus,
)
from ..models import Queue as QueueRow
from . import clock
from .context import RecordedOperation, current_workflow
from .registry import QueueSpec

logger = logging.getLogger("django_dbos")

WF = WorkflowStatus._meta.db_table
OP = OperationOutput._meta.db_table
EXECUTOR = Executor._meta.db_table
MESSAGE = Notification._meta.db_table
EVENT = WorkflowEvent._meta.db_table
EVENT_HISTORY = WorkflowEventHistory._meta.db_table
STREAM = StreamEntry._meta.db_table
QUEUE = QueueRow._meta.db_table

# The PostgreSQL channel on which every write that someone may wait for is announced.
CHANNEL = "django_dbos"


def wake_key(kind: str, workflow_id: str, name: str = "") -> str:
    """The key of one thing waiters wait for (a message, an event, an end...): a NOTIFY payload."""
    return json.dumps([kind, workflow_id, name], separators=(",", ":"))


# Any enqueue, and the end of any queued workflow, wakes the dispatchers of all workers.
QUEUE_ACTIVITY = wake_key("q", "")


_database: ContextVar[str | None] = ContextVar("dbos_database", default=None)


def alias() -> str:
    """The database alias of the system tables: DBOS["DATABASE"], or a DBOSClient's."""
    return _database.get() or conf.get("DATABASE")


@contextmanager
def using(database: str) -> Iterator[None]:
    """Read and write the system tables of another database alias inside the block."""
    token = _database.set(database)
    try:
        yield
    finally:
        _database.reset(token)


def storable(key: object) -> bool:
    """Whether a lookup key can be in the tables at all (PostgreSQL refuses NUL in text): an
    impossible key simply matches nothing."""
    return isinstance(key, str) and "\x00" not in key


def now() -> datetime.datetime:
    return timezone.now()


def _execute(sql: str, params: Sequence[Any]) -> Any:
    """Run one statement on the system database, in the caller's transaction if there is one.

    Returns a cursor (for rowcount and rows). On PostgreSQL the statement goes straight to
    psycopg with server-side parameter binding: about a third less server time than Django's
    default client-side binding for these statements, and less Python per call.
    """
    connection = connections[alias()]
    if connection.vendor == "postgresql":
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        raw = connection.connection
        prepare = conf.get("PREPARED_STATEMENTS")
        if prepare and raw.prepare_threshold is None:
            # Django turns automatic preparation off (for connection poolers). Keep it off for
            # Django's own queries, but let ours be prepared: planning them costs more than
            # running them.
            raw.prepare_threshold = sys.maxsize
        # One cursor per connection, reused: Django connections belong to one thread.
        cursor = getattr(connection, "dbos_cursor", None)
        if cursor is None or cursor.connection is not raw or cursor.closed:
            cursor = connection.dbos_cursor = psycopg.Cursor(raw)
        try:
            with connection.wrap_database_errors:
                return cursor.execute(sql, params, prepare=prepare or None)
        except (OperationalError, InterfaceError) as exc:
            if (raw.closed or raw.broken or is_disconnect(exc)) and current_workflow.get():
                # Inside a workflow, the execution waits for the database and replays; any
                # other caller (a view, a worker thread) gets Django's error, and reconnects.
                raise _unavailable(connection, exc) from exc
            raise
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(p) if isinstance(p, datetime.datetime) else p for p in params]
    cursor = connection.cursor()
    cursor.execute(sql, params)
    return cursor


# A write that changes nothing: as a transaction's first statement, it takes SQLite's write lock.
_TAKE_WRITE_LOCK = f"UPDATE {QUEUE} SET name = name WHERE 0"


@contextmanager
def write_transaction() -> Iterator[None]:
    """`transaction.atomic` on the system database, for the engine's transactions that write.

    SQLite's default (deferred) transactions take the write lock at their first write. When a
    read comes first, that write fails at once with "database is locked" if another process
    holds the lock: SQLite does not wait there, whatever the busy timeout, as waiting could
    deadlock. So on SQLite without `"transaction_mode": "IMMEDIATE"` (what `startproject`
    writes), the transaction opens with a write that changes nothing, which waits out the busy
    timeout for the lock as BEGIN IMMEDIATE would. Statements in autocommit (checkpoints,
    heartbeats) wait already; on PostgreSQL this is plain `transaction.atomic`.
    """
    database = alias()
    connection = connections[database]
    lock_first = (
        connection.vendor == "sqlite"
        and not connection.in_atomic_block
        and begins_deferred(connection.settings_dict)
    )
    with transaction.atomic(using=database):
        if lock_first:
            _execute(_TAKE_WRITE_LOCK, [])
        yield


def begins_deferred(database: dict[str, Any]) -> bool:
    """Whether a SQLite database's transactions begin without the write lock: its DATABASES
    entry has no "transaction_mode" of "IMMEDIATE" or "EXCLUSIVE" in OPTIONS (Django's default)."""
    options = database.get("OPTIONS") or {}
    mode = options.get("transaction_mode") if isinstance(options, dict) else None
    return str(mode or "DEFERRED").upper() == "DEFERRED"


class DatabaseUnavailable(BaseException):
    """Internal: the connection to the system database broke under one of the engine's writes.

    The outcome of that write is unknown, so the running execution cannot go on; it waits for
    the database and replays (workflows.execute). A BaseException, so that user code's
    `except Exception:` cannot mistake it for its own failure.
    """


# SQLSTATE classes of a lost connection: 08 (connection exception), 57P01-57P03 (the server
# shutting down, restarting, or not accepting connections yet).
_DISCONNECT_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def is_disconnect(exc: BaseException | None) -> bool:
    """Whether an error means the connection to the database was lost (not that a statement
    failed): the client's own "server closed the connection", or a server shutting down."""
    while exc is not None:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            sqlstate = exc.sqlstate
            return sqlstate is None or sqlstate.startswith(_DISCONNECT_SQLSTATES)
        if isinstance(exc, psycopg.Error):
            return False
        if isinstance(exc, InterfaceError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def unavailable_if_disconnected(exc: BaseException) -> None:
    """Inside a workflow, turn a lost connection into DatabaseUnavailable (wait and replay)."""
    if is_disconnect(exc) and current_workflow.get() is not None:
        raise _unavailable(connections[alias()], exc) from exc


def _unavailable(connection: Any, exc: BaseException) -> DatabaseUnavailable:
    with suppress(Exception):  # closing a broken connection may fail too; Django reconnects
        connection.close()
    return DatabaseUnavailable(str(exc))


def wait_until_reachable(*, give_up_after: float) -> bool:
    """Wait (with back-off) until the system database answers; False if it never did."""
    deadline = time.monotonic() + give_up_after
    pause = 0.2
    while True:
        connection = connections[alias()]
        try:
            connection.close_if_unusable_or_obsolete()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:
            with suppress(Exception):
                connection.close()
        if time.monotonic() + pause > deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


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


_NEW_WORKFLOW_COLUMNS = [field.name for field in dataclasses.fields(NewWorkflow)]
_INSERT_WORKFLOW = f"""
INSERT INTO {WF} ({", ".join(_NEW_WORKFLOW_COLUMNS)}, recovery_attempts, created_at, updated_at,
    started_at)
VALUES ({", ".join(["%s"] * len(_NEW_WORKFLOW_COLUMNS))}, 0, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


def insert_workflow(row: NewWorkflow, *, wake_key: str = "") -> bool:
    """Write a new workflow's row; False when the id (or deduplication id) is already taken."""
    moment = now()
    started = moment if row.status == Status.PENDING else None
    values = [getattr(row, column) for column in _NEW_WORKFLOW_COLUMNS]
    cursor = _execute_and_notify(_INSERT_WORKFLOW, [*values, moment, moment, started], wake_key)
    return cursor.rowcount == 1


# The EXISTS guard is the fence: only the execution that owns a PENDING workflow may record
# its operations. A cancelled workflow, or one taken over, records nothing more. The row is
# found by its primary key alone: the rest of the test is one opaque boolean, so that no plan
# can use the partial index of PENDING workflows by executor instead. A plan of these prepared
# statements, made while the table was small and kept by the connection, did, and then read
# every PENDING workflow of the executor on each checkpoint (100,000 for a worker with that
# many parked).
_OWNED = "workflow_id = %s AND (status = 'PENDING' AND executor_id = %s AND execution = %s) IS TRUE"
_RECORD_OPERATION = f"""
INSERT INTO {OP} (workflow_id, function_id, function_name, output, error, child_workflow_id,
    started_at, completed_at)
SELECT %s, %s, %s, %s, %s, %s, %s, %s
WHERE EXISTS (SELECT 1 FROM {WF} WHERE {_OWNED})
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
    cursor = _execute(
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
    rows = _execute(_LOAD_OPERATIONS, [workflow_id]).fetchall()
    return {row[0]: RecordedOperation(*row) for row in rows}


def list_operations(workflow_id: str) -> list[OperationOutput]:
    if not storable(workflow_id):
        return []
    return list(OperationOutput.objects.using(alias()).filter(workflow_id=workflow_id))


def get_operation(workflow_id: str, function_id: int) -> RecordedOperation | None:
    row = (
        OperationOutput.objects.using(alias())
        .filter(workflow_id=workflow_id, function_id=function_id)
        .values_list("function_id", "function_name", "output", "error", "child_workflow_id")
        .first()
    )
    return RecordedOperation(*row) if row else None


# Clears what a parked workflow waited for, once it no longer waits.
_NOT_WAITING = "waiting = '', wake_at = NULL"
_FINISH_WORKFLOW = f"""
UPDATE {WF} SET status = %s, output = %s, error = %s, updated_at = %s, deduplication_id = NULL,
    {_NOT_WAITING}
WHERE {_OWNED}
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
    cursor = _execute_and_notify(
        _FINISH_WORKFLOW,
        [status, output, error, now(), workflow_id, executor_id, execution],
        *wake_keys,
    )
    return cursor.rowcount == 1


_PARK_WORKFLOW = f"UPDATE {WF} SET waiting = %s, wake_at = %s WHERE {_OWNED}"
_UNPARK_WORKFLOW = f"UPDATE {WF} SET {_NOT_WAITING} WHERE {_OWNED}"


def park_workflow(
    workflow_id: str,
    executor_id: str,
    execution: int,
    waiting: str,
    wake_at: datetime.datetime | None,
) -> bool:
    """Note what a parked workflow waits for, if this execution still owns it; False otherwise."""
    cursor = _execute(_PARK_WORKFLOW, [waiting[:255], wake_at, workflow_id, executor_id, execution])
    return cursor.rowcount == 1


def unpark_workflow(workflow_id: str, executor_id: str, execution: int) -> None:
    """Clear what a woken workflow waited for (nothing, if it is no longer this execution's)."""
    _execute(_UNPARK_WORKFLOW, [workflow_id, executor_id, execution])


def _execute_and_notify(sql: str, params: Sequence[Any], *wake_keys: str) -> Any:
    """Run a write and, if it wrote, announce `wake_keys` once it commits."""
    cursor = _execute(sql, params)
    if cursor.rowcount:
        announce(*wake_keys)
    return cursor


def get_workflow(workflow_id: str) -> WorkflowStatus | None:
    if not storable(workflow_id):
        return None
    return WorkflowStatus.objects.using(alias()).filter(workflow_id=workflow_id).first()


def get_outcome(workflow_id: str) -> tuple[str, str | None, str | None] | None:
    """Return (status, output, error) of a workflow, or None when it does not exist."""
    if not storable(workflow_id):
        return None
    return (
        WorkflowStatus.objects.using(alias())
        .filter(workflow_id=workflow_id)
        .values_list("status", "output", "error")
        .first()
    )


def give_up(workflow_id: str) -> bool:
    """Stop a PENDING workflow recovered too often: MAX_RECOVERY_ATTEMPTS_EXCEEDED, its
    deduplication id released, its waiters woken."""
    cursor = _execute_and_notify(
        f"""
        UPDATE {WF} SET status = %s, updated_at = %s, deduplication_id = NULL
        WHERE workflow_id = %s AND status = 'PENDING'
        """,
        [Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED, now(), workflow_id],
        wake_key("w", workflow_id),
    )
    return cursor.rowcount == 1


# Executors and recovery ---------------------------------------------------------------------

_HEARTBEAT = f"""
INSERT INTO {EXECUTOR} (executor_id, hostname, pid, role, application_version, started_at,
    last_heartbeat, queues)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (executor_id) DO UPDATE SET last_heartbeat = EXCLUDED.last_heartbeat,
    role = EXCLUDED.role, hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
    application_version = EXCLUDED.application_version, started_at = EXCLUDED.started_at,
    queues = EXCLUDED.queues
"""


def heartbeat(
    executor_id: str,
    *,
    hostname: str,
    pid: int,
    role: str,
    application_version: str,
    started_at: datetime.datetime,
    queues: Sequence[str] = (),
) -> None:
    """Upsert the executor's row: a flush or an operator's delete cannot make it look dead."""
    identity = [executor_id, hostname, pid, role, application_version, started_at]
    _execute(_HEARTBEAT, [*identity, now(), json.dumps(list(queues))])


def delete_executor(executor_id: str) -> None:
    Executor.objects.using(alias()).filter(executor_id=executor_id).delete()


def forget_executors(executor_ids: Iterable[str], *, silent_since: datetime.datetime) -> None:
    """Delete the rows of executors that are still silent (their workflows were taken over)."""
    Executor.objects.using(alias()).filter(
        executor_id__in=list(executor_ids), last_heartbeat__lt=silent_since
    ).delete()


def stale_executor_ids(silent_since: datetime.datetime) -> set[str]:
    """Executors whose last heartbeat is older than the given time."""
    return set(
        Executor.objects.using(alias())
        .filter(last_heartbeat__lt=silent_since)
        .values_list("executor_id", flat=True)
    )


def live_executor_ids() -> set[str]:
    return set(Executor.objects.using(alias()).values_list("executor_id", flat=True))


def pending_executor_ids(application_version: str) -> set[str]:
    """Executors that hold PENDING workflows of this application version."""
    return set(
        WorkflowStatus.objects.using(alias())
        .filter(status=Status.PENDING, application_version=application_version)
        .values_list("executor_id", flat=True)
        .distinct()
    )


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


def claim_pending(
    from_executors: Iterable[str], executor_id: str, application_version: str
) -> list[ClaimedWorkflow]:
    """Take over the PENDING workflows of the given executors, counting a recovery attempt.

    Queued ones go back to ENQUEUED, so that their queue's limits apply when they run again;
    the others are claimed by this executor and returned, to be run now. Each is one guarded
    UPDATE: a second claim of the same rows, by this or another worker, finds nothing, because
    the executor id no longer matches.
    """
    executors = list(from_executors)
    if not executors:
        return []
    placeholders = ", ".join(["%s"] * len(executors))
    guard = f"status = 'PENDING' AND application_version = %s AND executor_id IN ({placeholders})"
    with write_transaction():
        _execute_and_notify(
            f"""
            UPDATE {WF} SET status = 'ENQUEUED', executor_id = NULL,
                recovery_attempts = recovery_attempts + 1, updated_at = %s, {_NOT_WAITING}
            WHERE {guard} AND queue_name IS NOT NULL
            """,
            [now(), application_version, *executors],
            QUEUE_ACTIVITY,
        )
        rows = _execute(
            f"""
            UPDATE {WF} SET executor_id = %s, recovery_attempts = recovery_attempts + 1,
                execution = execution + 1, updated_at = %s, {_NOT_WAITING}
            WHERE {guard} AND queue_name IS NULL
            RETURNING workflow_id, name, inputs, recovery_attempts, deadline, execution
            """,
            [executor_id, now(), application_version, *executors],
        ).fetchall()
    return [
        ClaimedWorkflow(
            workflow_id, name, inputs, attempts, _parse_time(deadline), execution=execution
        )
        for workflow_id, name, inputs, attempts, deadline, execution in rows
    ]


# Queues ---------------------------------------------------------------------------------------


def sync_queues(specs: Iterable[QueueSpec]) -> None:
    """Write the limits declared in code to the queue rows (at worker start)."""
    with write_transaction():
        for spec in specs:
            QueueRow.objects.using(alias()).update_or_create(
                name=spec.name,
                defaults={
                    "concurrency": spec.concurrency,
                    "worker_concurrency": spec.worker_concurrency,
                    "rate_limit": spec.rate_limit,
                    "rate_period_seconds": spec.rate_period_seconds,
                    "priority_enabled": spec.priority_enabled,
                    "partition_queue": spec.partition_queue,
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
        QueueSpec(
            name=row.name,
            concurrency=row.concurrency,
            worker_concurrency=row.worker_concurrency,
            rate_limit=row.rate_limit,
            rate_period_seconds=row.rate_period_seconds,
            priority_enabled=row.priority_enabled,
            partition_queue=row.partition_queue,
        )
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


def queue_statuses(names: Iterable[str], live_since: datetime.datetime) -> list[QueueLoad]:
    """These queues and every queue that has a row or ENQUEUED or PENDING workflows, by name.

    Cheap with millions of finished workflows: the counts read only the waiting and running
    rows (the status index), and the executor rows are few.
    """
    active = {
        (row["queue_name"], row["status"]): row
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
        serving.update(set(served))
    limits = {queue.name: queue for queue in queue_limits()}
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
            _execute(f"SELECT 1 FROM {QUEUE} WHERE name = %s FOR UPDATE", [queue.name])
        if queue.rate_limit is not None and queue.rate_period_seconds:
            since = moment - datetime.timedelta(seconds=queue.rate_period_seconds)
            started = _execute(
                f"SELECT COUNT(*) FROM {WF} WHERE queue_name = %s AND started_at > %s",
                [queue.name, since],
            ).fetchone()[0]
            limit = min(limit, queue.rate_limit - started)
        # On a partitioned queue, None is the partition of the workflows enqueued without a
        # key (by a DBOSClient, before the queue was declared): claimed so that the dispatcher
        # ends them in ERROR. Elsewhere, None takes any key.
        partitions: list[str | None] = [None]
        if queue.partition_queue:
            partitions = [
                row[0]
                for row in _execute(
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
    return _execute(sql + partition_filter, [queue.name, *partition_params]).fetchone()[0]


def _claim(
    queue: QueueSpec,
    partition: str | None,
    limit: int,
    executor_id: str,
    application_version: str,
    moment: datetime.datetime,
) -> list[ClaimedWorkflow]:
    """Pick and take the due workflows in one statement (one round trip when autocommitted)."""
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
            application_version = %s, execution = execution + 1
        FROM picked
        WHERE workflow_id = picked_id AND status = 'ENQUEUED'
        RETURNING workflow_id, name, inputs, recovery_attempts, deadline, timeout_ms, execution,
            priority, created_at, queue_partition_key
    """
    params: list[Any] = [queue.name, *partition_params, moment, application_version, limit]
    params += [executor_id, moment, moment, application_version]
    rows = _execute(sql, params).fetchall()
    # RETURNING keeps no order: start them highest priority, then oldest, first.
    rows.sort(key=lambda row: (row[7], _parse_time(row[8])))
    claimed = []
    for row in rows:
        workflow_id, name, inputs, attempts, deadline, timeout_ms, execution, priority, _, key = row
        deadline = _parse_time(deadline)
        if deadline is None and timeout_ms is not None:
            # A queued workflow's timeout counts from its dequeue.
            deadline = moment + datetime.timedelta(milliseconds=timeout_ms)
            _execute(
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
            )
        )
    return claimed


def _parse_time(value: datetime.datetime | str | None) -> datetime.datetime | None:
    """Read a datetime column fetched by a raw statement (SQLite returns text, in UTC)."""
    if isinstance(value, str):
        value = parse_datetime(value)
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, datetime.UTC)
    return value


def announce(*wake_keys: str) -> None:
    """NOTIFY `wake_keys` on PostgreSQL once the current transaction commits (at once outside
    one; never if it rolls back), so that a listener never wakes before the row is visible.

    They go in a transaction of their own that commits without waiting for the disk.
    PostgreSQL lets one notifying transaction commit at a time, server-wide, each holding a
    lock until its commit is flushed: a NOTIFY inside the write's own transaction made every
    enqueue and every workflow's end wait for the others' disk flushes. A notification needs no
    durability: a listener that lost its connection wakes everybody when it reconnects.
    """
    wake_keys = tuple(key for key in wake_keys if key)
    database = alias()
    if wake_keys and connections[database].vendor == "postgresql":
        transaction.on_commit(partial(_notify, database, wake_keys), using=database)


def _notify(database: str, wake_keys: tuple[str, ...]) -> None:
    """Send committed writes' NOTIFYs; once more on a new connection if that one broke (the
    writes stand either way, so a failure is logged, never raised)."""
    notifies = ", ".join(["pg_notify(%s, %s)"] * len(wake_keys))
    sql = f"SELECT set_config('synchronous_commit', 'off', true), {notifies}"
    params = [value for key in wake_keys for value in (CHANNEL, key)]
    for attempt in (1, 2):
        try:
            with using(database):
                _execute(sql, params)
            return
        except (Exception, DatabaseUnavailable) as exc:
            with suppress(Exception):
                connections[database].close()
            if attempt == 2:
                logger.warning("Could not announce %s (%s).", ", ".join(wake_keys), exc)


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
            {_NOT_WAITING}
        WHERE workflow_id IN ({placeholders}) AND status IN ('PENDING', 'ENQUEUED')
        RETURNING workflow_id
    """
    with write_transaction():
        cancelled = [row[0] for row in _execute(sql, [now(), *workflow_ids]).fetchall()]
        announce(*[key for workflow_id in cancelled for key in wake_keys(workflow_id)])
    return cancelled


# Messages -------------------------------------------------------------------------------------

_SEND = f"""
INSERT INTO {MESSAGE} (destination_id, topic, message, created_at)
SELECT %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM {WF} WHERE workflow_id = %s)
"""


def send_message(destination_id: str, topic: str, message: str, *, wake_key: str) -> bool:
    """Queue a message for a workflow; False (and nothing written) when it does not exist."""
    cursor = _execute_and_notify(
        _SEND, [destination_id, topic, message, now(), destination_id], wake_key
    )
    return cursor.rowcount == 1


def consume_message(workflow_id: str, topic: str) -> str | None:
    """Mark the oldest unconsumed message of (workflow, topic) consumed and return it."""
    lock = " FOR UPDATE SKIP LOCKED" if connections[alias()].vendor == "postgresql" else ""
    sql = f"""
        UPDATE {MESSAGE} SET consumed_at = %s
        WHERE id = (
            SELECT id FROM {MESSAGE}
            WHERE destination_id = %s AND topic = %s AND consumed_at IS NULL
            ORDER BY id LIMIT 1{lock}
        )
        RETURNING message
    """
    row = _execute(sql, [now(), workflow_id, topic]).fetchone()
    return row[0] if row else None


def list_messages(workflow_id: str) -> list[Notification]:
    return list(Notification.objects.using(alias()).filter(destination_id=workflow_id))


# Events ---------------------------------------------------------------------------------------

_SET_EVENT = f"""
INSERT INTO {EVENT} (workflow_id, key, value, updated_at) VALUES (%s, %s, %s, %s)
ON CONFLICT (workflow_id, key) DO UPDATE SET value = EXCLUDED.value,
    updated_at = EXCLUDED.updated_at
"""
_EVENT_HISTORY = f"""
INSERT INTO {EVENT_HISTORY} (workflow_id, function_id, key, value) VALUES (%s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


def set_event(workflow_id: str, function_id: int, key: str, value: str, *, wake_key: str) -> None:
    """Publish an event's latest value and keep it in the history (call inside a transaction)."""
    _execute(_EVENT_HISTORY, [workflow_id, function_id, key, value])
    _execute_and_notify(_SET_EVENT, [workflow_id, key, value, now()], wake_key)


def get_event(workflow_id: str, key: str) -> str | None:
    if not (storable(workflow_id) and storable(key)):
        return None
    return (
        WorkflowEvent.objects.using(alias())
        .filter(workflow_id=workflow_id, key=key)
        .values_list("value", flat=True)
        .first()
    )


def list_events(workflow_id: str) -> dict[str, str]:
    return dict(
        WorkflowEvent.objects.using(alias())
        .filter(workflow_id=workflow_id)
        .values_list("key", "value")
    )


# Streams --------------------------------------------------------------------------------------

_WRITE_STREAM = f"""
INSERT INTO {STREAM} (workflow_id, key, position, value, closed, function_id, created_at)
SELECT %s, %s, COALESCE(MAX(position) + 1, 0), %s, %s, %s, %s
FROM {STREAM} WHERE workflow_id = %s AND key = %s
"""


def write_stream(
    workflow_id: str,
    function_id: int,
    key: str,
    value: str | None,
    *,
    closed: bool,
    wake_key: str,
) -> None:
    """Append a value (or the closing marker) to a stream (call inside a transaction)."""
    _execute_and_notify(
        _WRITE_STREAM,
        [workflow_id, key, value, closed, function_id, now(), workflow_id, key],
        wake_key,
    )


def read_stream(workflow_id: str, key: str, from_position: int) -> list[tuple[int, str, bool]]:
    """Return (position, value, closed) of the stream's entries from a position on, in order."""
    if not (storable(workflow_id) and storable(key)):
        return []
    return list(
        StreamEntry.objects.using(alias())
        .filter(workflow_id=workflow_id, key=key, position__gte=from_position)
        .order_by("position")
        .values_list("position", "value", "closed")
    )


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
        row = _execute(
            f"SELECT name, inputs, timeout_ms FROM {WF} "
            f"WHERE workflow_id = %s AND status IN ({statuses}){lock}",
            [workflow_id],
        ).fetchone()
        if row is None:
            return None
        name, inputs, timeout_ms = row
        _execute(
            f"""
            DELETE FROM {OP} WHERE workflow_id = %s AND error IS NOT NULL AND function_id =
                (SELECT MAX(function_id) FROM {OP} WHERE workflow_id = %s)
            """,
            [workflow_id, workflow_id],
        )
        moment = now()
        if executor_id is None:
            _execute_and_notify(
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
        (execution,) = _execute(
            f"""
            UPDATE {WF} SET status = 'PENDING', executor_id = %s, recovery_attempts = 0,
                output = NULL, error = NULL, deadline = %s, updated_at = %s,
                execution = execution + 1
            WHERE workflow_id = %s
            RETURNING execution
            """,
            [executor_id, deadline, moment, workflow_id],
        ).fetchone()
    return ClaimedWorkflow(workflow_id, name, inputs, 0, deadline, execution=execution)


def fork_workflow(original: WorkflowStatus, row: NewWorkflow, start_step: int) -> bool:
    """Write a new workflow that starts as a copy of `original` before operation `start_step`:
    its recorded operations, the values its events had then, and its stream entries. False
    (and nothing written) when the new workflow's id is taken."""
    copy = [row.workflow_id, original.workflow_id, start_step]
    with write_transaction():
        queued = row.status == Status.ENQUEUED
        if not insert_workflow(row, wake_key=QUEUE_ACTIVITY if queued else ""):
            return False
        _execute(
            f"""
            INSERT INTO {OP} (workflow_id, function_id, function_name, output, error,
                child_workflow_id, started_at, completed_at)
            SELECT %s, function_id, function_name, output, error, child_workflow_id, started_at,
                completed_at
            FROM {OP} WHERE workflow_id = %s AND function_id < %s
            """,
            copy,
        )
        _execute(
            f"""
            INSERT INTO {EVENT_HISTORY} (workflow_id, function_id, key, value)
            SELECT %s, function_id, key, value FROM {EVENT_HISTORY}
            WHERE workflow_id = %s AND function_id < %s
            """,
            copy,
        )
        _execute(
            f"""
            INSERT INTO {EVENT} (workflow_id, key, value, updated_at)
            SELECT h.workflow_id, h.key, h.value, %s FROM {EVENT_HISTORY} h
            WHERE h.workflow_id = %s AND h.function_id = (
                SELECT MAX(function_id) FROM {EVENT_HISTORY} latest
                WHERE latest.workflow_id = h.workflow_id AND latest.key = h.key)
            """,
            [now(), row.workflow_id],
        )
        _execute(
            f"""
            INSERT INTO {STREAM} (workflow_id, key, position, value, closed, function_id,
                created_at)
            SELECT %s, key, position, value, closed, function_id, created_at FROM {STREAM}
            WHERE workflow_id = %s AND function_id < %s
            """,
            copy,
        )
    return True


def list_workflows(
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
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
) -> list[WorkflowStatus]:
    """Workflows matching every filter given, by creation time."""
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


# Schedules ------------------------------------------------------------------------------------


def active_schedules() -> list[Schedule]:
    return list(Schedule.objects.using(alias()).filter(status=Schedule.State.ACTIVE))


def get_schedule(name: str) -> Schedule | None:
    if not storable(name):
        return None
    return Schedule.objects.using(alias()).filter(name=name).first()


def list_schedules(
    status: str | None = None, workflow_name: str | None = None, name_prefix: str | None = None
) -> list[Schedule]:
    rows = Schedule.objects.using(alias()).all()
    if status is not None:
        rows = rows.filter(status=status)
    if workflow_name is not None:
        rows = rows.filter(workflow_name=workflow_name)
    if name_prefix is not None:
        rows = rows.filter(name__startswith=name_prefix)
    return list(rows)


def create_schedule(**fields: Any) -> Schedule:
    """Validate (as the admin form does) and save a new schedule; ValidationError if invalid."""
    schedule = Schedule(**fields)
    schedule.full_clean()
    schedule.save(using=alias())
    return schedule


def update_schedule(name: str, **fields: Any) -> bool:
    rows = Schedule.objects.using(alias()).filter(name=name)
    return rows.update(**fields, updated_at=now()) == 1


def delete_schedule(name: str) -> bool:
    return Schedule.objects.using(alias()).filter(name=name).delete()[0] > 0


def schedule_fired(name: str, tick: datetime.datetime) -> None:
    """Remember the latest tick fired (never moving it back)."""
    Schedule.objects.using(alias()).filter(name=name).filter(
        Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=tick)
    ).update(last_fired_at=tick)
