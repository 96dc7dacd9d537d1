"""The retention policy's share of the system tables: whose turn it is, and scrubbing payloads.

One worker at a time applies the policy: workers take turns on a lease (leases.py). A turn is
not one transaction: that would hold locks (on SQLite, the database's only write lock) while an
archive is uploaded; each of its batches commits on its own instead.
"""

from __future__ import annotations

import datetime
from contextlib import AbstractContextManager

from ...models import FINISHED, WorkflowStatus
from .. import serialization
from . import leases
from .connection import OP, WF, alias, execute, now, write_transaction
from .deletion import chunks, kept_with_family, placeholders
from .owned import OWNED_TABLES

# The retention policy's lease.
TURN = "retention"
# How long a lease lasts if its holder dies without giving it back: another worker takes over
# after this. Far longer than a turn (a batch and its archive upload).
LEASE_SECONDS = 300.0


def retention_turn(holder: str) -> AbstractContextManager[bool]:
    """Yield whether this process has the retention policy's turn (nobody else has it); it
    keeps it until the block ends."""
    return leases.turn(TURN, holder, LEASE_SECONDS)


def expire_payloads(candidates: dict[str, str | None], ended_before: datetime.datetime) -> int:
    """Scrub, in one transaction, the payloads of those of these workflows (id -> parent id)
    that are still finished, ended before `ended_before`, are not scrubbed yet, and have no
    active family member; return how many were scrubbed.

    Inputs and outputs become empty, an error keeps only its class, and so do the errors of
    their steps; the values of their steps, messages, events and streams go. Status, names,
    times and the step timeline stay, and payload_expired_at says when this happened.
    """
    with write_transaction():
        rows = (
            WorkflowStatus.objects.using(alias())
            .filter(
                workflow_id__in=list(candidates),
                status__in=FINISHED,
                payload_expired_at__isnull=True,
                updated_at__lt=ended_before,
            )
            .order_by("workflow_id")
            .select_for_update(skip_locked=True)
            .values_list("workflow_id", flat=True)
        )
        found = {workflow_id: candidates[workflow_id] for workflow_id in rows}
        kept = kept_with_family(found, scrubbing=True)
        doomed = [workflow_id for workflow_id in found if workflow_id not in kept]
        moment = now()
        for chunk in chunks(doomed):
            marks = placeholders(chunk)
            execute(
                f"UPDATE {WF} SET inputs = '', output = NULL, payload_expired_at = %s "
                f"WHERE workflow_id IN ({marks})",
                [moment, *chunk],
            )
            for owned in OWNED_TABLES:
                execute(owned.scrub_statement(marks), chunk)
            _scrub_errors(WF, "workflow_id", chunk)
            _scrub_errors(OP, "workflow_id, function_id", chunk)
    return len(doomed)


def _scrub_errors(table: str, key: str, workflow_ids: list[str]) -> None:
    """Rewrite each recorded error of these workflows in `table` (a row found by its `key`
    columns) as its class alone: which class it was is in the text, so row by row."""
    columns = key.split(", ")
    rows = execute(
        f"SELECT {key}, error FROM {table} "
        f"WHERE workflow_id IN ({placeholders(workflow_ids)}) AND error IS NOT NULL",
        workflow_ids,
    ).fetchall()
    match = " AND ".join(f"{column} = %s" for column in columns)
    for *row_key, error in rows:
        execute(
            f"UPDATE {table} SET error = %s WHERE {match}",
            [serialization.expired_error(error), *row_key],
        )
