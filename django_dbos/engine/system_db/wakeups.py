"""Wake-ups: the keys waiters wait on, and the NOTIFYs that announce committed writes."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import suppress
from functools import partial
from typing import Any

from django.db import connections, transaction

from .connection import Cursor, DatabaseUnavailable, alias, execute, using

logger = logging.getLogger("django_dbos")

# The PostgreSQL channel on which every write that someone may wait for is announced.
CHANNEL = "django_dbos"


def wake_key(kind: str, workflow_id: str, name: str = "") -> str:
    """The key of one thing waiters wait for (a message, an event, an end...): a NOTIFY payload."""
    return json.dumps([kind, workflow_id, name], separators=(",", ":"))


# Any enqueue, and the end of any queued workflow, wakes the dispatchers of all workers.
QUEUE_ACTIVITY = wake_key("q", "")


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
                execute(sql, params)
            return
        except (Exception, DatabaseUnavailable) as exc:
            with suppress(Exception):
                connections[database].close()
            if attempt == 2:
                logger.warning("Could not announce %s (%s).", ", ".join(wake_keys), exc)


def execute_and_notify(sql: str, params: Sequence[Any], *wake_keys: str) -> Cursor:
    """Run a write and, if it wrote, announce `wake_keys` once it commits."""
    cursor = execute(sql, params)
    if cursor.rowcount:
        announce(*wake_keys)
    return cursor
