"""Jobs that one worker at a time does (the retention policy, the alert rules): workers take
turns on a row of dbos_lease, which a guarded UPDATE takes when it is free or its holder's time
ran out. A turn needs no session and no open transaction, so it works behind a pooler in
transaction mode, and holds no lock while its holder works.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager

from ...models import Lease
from .connection import execute, now

LEASE = Lease._meta.db_table


@contextmanager
def turn(name: str, holder: str, seconds: float) -> Iterator[bool]:
    """Yield whether `holder` has the turn of the job `name` (nobody else has it); it keeps it
    until the block ends, or for `seconds` if it dies first."""
    mine = _take(name, holder, seconds)
    try:
        yield mine
    finally:
        if mine:
            execute(
                f"UPDATE {LEASE} SET holder = '', expires_at = %s WHERE name = %s AND holder = %s",
                [now(), name, holder],
            )


def _take(name: str, holder: str, seconds: float) -> bool:
    """Take the lease if it is free, expired, or already ours: one guarded UPDATE, so that of
    two workers trying at once, one changes the row and the other finds it taken."""
    moment = now()
    execute(
        f"INSERT INTO {LEASE} (name, holder, expires_at) VALUES (%s, '', %s) "
        "ON CONFLICT (name) DO NOTHING",
        [name, moment],
    )
    cursor = execute(
        f"""
        UPDATE {LEASE} SET holder = %s, expires_at = %s
        WHERE name = %s AND (holder = '' OR holder = %s OR expires_at < %s)
        """,
        [holder, moment + datetime.timedelta(seconds=seconds), name, holder, moment],
    )
    return cursor.rowcount == 1
