"""The alert rules' share of the system tables: whose turn it is to check them, where each rule
stands, the history of its transitions and their delivery, and the conditions the rules read.

A transition is recorded with its rule's new state in one transaction, guarded on the state it
changes, so it is recorded once however many checkers race; it is delivered after, and marked
delivered by a guarded UPDATE.
"""

from __future__ import annotations

import datetime
from contextlib import AbstractContextManager

from ...models import AlertState, AlertTransition, Status, WorkflowStatus
from ...types import Alert, FiringAlert
from . import leases
from .connection import alias, execute, write_transaction

# The alert rules' lease.
TURN = "alerts"
# Another worker takes the turn over this long after its holder died holding it: longer than a
# turn (the checks, then mail to the admins).
LEASE_SECONDS = 120.0

STATE = AlertState._meta.db_table


def alert_turn(holder: str) -> AbstractContextManager[bool]:
    """Yield whether this process has the turn to check the alert rules (nobody else has it)."""
    return leases.turn(TURN, holder, LEASE_SECONDS)


def firing_states() -> dict[str, str]:
    """The rules that fire now, by name, with their message."""
    return dict(
        AlertState.objects.using(alias()).filter(firing=True).values_list("name", "message")
    )


def record_check(
    name: str, kind: str, firing: bool, message: str, at: datetime.datetime
) -> Alert | None:
    """Record what a check of the rule found. If that changes whether it fires, write the new
    state and its transition in one transaction and return the transition (undelivered);
    otherwise only refresh the state (when it was checked; a firing rule's message) and return
    None.

    The state row is locked before it is compared (on SQLite the transaction holds the write
    lock), so of two checkers that find the same change, one records it and the other finds it
    recorded.
    """
    with write_transaction():
        execute(
            f"INSERT INTO {STATE} (name, kind, firing, since, message, checked_at) "
            "VALUES (%s, %s, %s, %s, '', %s) ON CONFLICT (name) DO NOTHING",
            [name, kind, False, at, at],
        )
        states = AlertState.objects.using(alias())
        state = states.select_for_update().get(name=name)
        if state.firing == firing:
            # A firing rule's message follows the figures; a quiet one keeps its resolution's.
            states.filter(name=name).update(
                message=message if firing else state.message, kind=kind, checked_at=at
            )
            return None
        states.filter(name=name).update(
            firing=firing, since=at, message=message, kind=kind, checked_at=at
        )
        transition = AlertTransition.objects.using(alias()).create(
            name=name,
            kind=kind,
            change=AlertTransition.Change.RAISED if firing else AlertTransition.Change.RESOLVED,
            message=message,
            at=at,
        )
    return _alert(transition)


def forget_rules(kept: list[str]) -> int:
    """Drop the states of rules that are no longer configured (their history stays)."""
    deleted, _ = AlertState.objects.using(alias()).exclude(name__in=kept).delete()
    return deleted


def undelivered_transitions() -> list[Alert]:
    """The transitions recorded but not yet delivered, oldest first."""
    rows = AlertTransition.objects.using(alias()).filter(delivered_at__isnull=True).order_by("id")
    return [_alert(row) for row in rows]


def mark_delivered(transition_id: int, at: datetime.datetime) -> bool:
    """Mark a transition delivered; False if it already was."""
    return bool(
        AlertTransition.objects.using(alias())
        .filter(id=transition_id, delivered_at__isnull=True)
        .update(delivered_at=at)
    )


def firing_alerts() -> list[FiringAlert]:
    """The rules that fire now, longest firing first."""
    return [
        FiringAlert(name=row.name, kind=row.kind, since=row.since, message=row.message)
        for row in AlertState.objects.using(alias()).filter(firing=True).order_by("since", "name")
    ]


def recent_transitions(limit: int) -> list[Alert]:
    """The last `limit` transitions, newest first."""
    rows = AlertTransition.objects.using(alias()).order_by("-at", "-id")[:limit]
    return [_alert(row) for row in rows]


def _alert(row: AlertTransition) -> Alert:
    return Alert(
        id=row.id,
        name=row.name,
        kind=row.kind,
        change=row.change,
        message=row.message,
        at=row.at,
        delivered=row.delivered_at is not None,
    )


# The conditions the rules read.


def failed_count(workflow_name: str, ended_since: datetime.datetime) -> int:
    """How many workflows of this name ended in ERROR since then (the finished index: the rows
    that ended since then, a short range when the window is minutes)."""
    return (
        WorkflowStatus.objects.using(alias())
        .filter(status=Status.ERROR, name=workflow_name, updated_at__gte=ended_since)
        .count()
    )


def gave_up(limit: int) -> tuple[int, list[str]]:
    """How many workflows are in MAX_RECOVERY_ATTEMPTS_EXCEEDED, and the ids of the first
    `limit` of them (the status index)."""
    rows = WorkflowStatus.objects.using(alias()).filter(
        status=Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    )
    first = rows.order_by("created_at").values_list("workflow_id", flat=True)[:limit]
    return rows.count(), list(first)
