"""Messages, events and streams: what workflows send, publish and write."""

from __future__ import annotations

from django.db import connections

from ...models import Notification, StreamEntry, WorkflowEvent
from .connection import EVENT, EVENT_HISTORY, MESSAGE, STREAM, WF, alias, execute, now, storable
from .wakeups import execute_and_notify
from .workflows import get_outcome

_SEND = f"""
INSERT INTO {MESSAGE} (destination_id, topic, message, created_at, idempotency_key)
SELECT %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM {WF} WHERE workflow_id = %s)
ON CONFLICT (destination_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
"""


def send_message(
    destination_id: str,
    topic: str,
    message: str,
    *,
    wake_key: str,
    idempotency_key: str | None = None,
) -> bool:
    """Queue a message for a workflow, unless one with the same idempotency key was; False
    (and nothing written) when the workflow does not exist."""
    params = [destination_id, topic, message, now(), idempotency_key, destination_id]
    if execute_and_notify(_SEND, params, wake_key).rowcount == 1:
        return True
    # Nothing written: the workflow is missing, or the key was used (then it exists).
    return idempotency_key is not None and get_outcome(destination_id) is not None


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
    row = execute(sql, [now(), workflow_id, topic]).fetchone()
    return row[0] if row else None


def message_sent(destination_id: str, idempotency_key: str) -> bool:
    """Whether a message with this idempotency key was sent to the workflow."""
    return (
        Notification.objects.using(alias())
        .filter(destination_id=destination_id, idempotency_key=idempotency_key)
        .exists()
    )


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
    execute(_EVENT_HISTORY, [workflow_id, function_id, key, value])
    execute_and_notify(_SET_EVENT, [workflow_id, key, value, now()], wake_key)


def get_event(workflow_id: str, key: str) -> str | None:
    if not (storable(workflow_id) and storable(key)):
        return None
    return (
        WorkflowEvent.objects.using(alias())
        .filter(workflow_id=workflow_id, key=key)
        .values_list("value", flat=True)
        .first()
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
    execute_and_notify(
        _WRITE_STREAM,
        [workflow_id, key, value, closed, function_id, now(), workflow_id, key],
        wake_key,
    )


def read_stream(
    workflow_id: str, key: str, from_position: int
) -> list[tuple[int, str | None, bool]]:
    """Return (position, value, closed) of the stream's entries from a position on, in order
    (the closing entry has no value)."""
    if not (storable(workflow_id) and storable(key)):
        return []
    return list(
        StreamEntry.objects.using(alias())
        .filter(workflow_id=workflow_id, key=key, position__gte=from_position)
        .order_by("position")
        .values_list("position", "value", "closed")
    )
