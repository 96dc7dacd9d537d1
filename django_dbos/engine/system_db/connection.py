"""The system database: its alias, how the engine's statements run on it, and what happens
when it goes away."""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, Protocol

import psycopg
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.backends.signals import connection_created
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg.types.json import Jsonb

from ... import conf
from ...models import (
    Executor,
    Notification,
    OperationOutput,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
    WorkflowStatus,
)
from ...models import Queue as QueueRow
from ..context import current_workflow

WF = WorkflowStatus._meta.db_table
OP = OperationOutput._meta.db_table
EXECUTOR = Executor._meta.db_table
MESSAGE = Notification._meta.db_table
EVENT = WorkflowEvent._meta.db_table
EVENT_HISTORY = WorkflowEventHistory._meta.db_table
STREAM = StreamEntry._meta.db_table
QUEUE = QueueRow._meta.db_table


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


class Cursor(Protocol):
    """What the engine's statements give back: psycopg's cursor, or Django's (SQLite)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


def storable(key: object) -> bool:
    """Whether a lookup key can be in the tables at all (PostgreSQL refuses NUL in text): an
    impossible key simply matches nothing."""
    return isinstance(key, str) and "\x00" not in key


def now() -> datetime.datetime:
    return timezone.now()


def execute(sql: str, params: Sequence[Any]) -> Cursor:
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
            # Kept on Django's connection object, which declares no such attribute.
            cursor = connection.dbos_cursor = psycopg.Cursor(raw)  # type: ignore[attr-defined]
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


def json_value(value: Any) -> Any:
    """A JSON column's value as `execute` passes it: jsonb on PostgreSQL, text on SQLite (as
    Django's JSONField stores it there); None stays SQL NULL."""
    if value is None:
        return None
    if connections[alias()].vendor == "postgresql":
        return Jsonb(value)
    return json.dumps(value)


@contextmanager
def read_only() -> Iterator[None]:
    """Inside the block, every connection to the system database, opened by any thread of this
    process, refuses writes: the database itself enforces it (PostgreSQL's
    default_transaction_read_only, SQLite's query_only), whatever code runs."""
    database = alias()

    def refuse_writes(*, connection: Any, **kwargs: Any) -> None:
        if connection.alias != database:
            return
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            else:
                cursor.execute("PRAGMA query_only = ON")

    connections[database].close()  # this thread's, so that it reconnects read-only
    connection_created.connect(refuse_writes, weak=False)
    try:
        yield
    finally:
        connection_created.disconnect(refuse_writes)
        connections[database].close()


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
            execute(_TAKE_WRITE_LOCK, [])
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


def parse_time(value: datetime.datetime | str | None) -> datetime.datetime | None:
    """Read a datetime column fetched by a raw statement (SQLite returns text, in UTC)."""
    if isinstance(value, str):
        value = parse_datetime(value)
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, datetime.UTC)
    return value
