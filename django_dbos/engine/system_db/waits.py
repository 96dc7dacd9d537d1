"""Waits in `recv`: a row while a workflow waits for a message, what the admin's inbox lists.

A recv writes its row when its wait begins (a recv that finds its message at once writes
none) and deletes it in the transaction that consumes the message or records the timeout. A
cancelled or timed-out workflow leaves its row behind: the listings show PENDING workflows only.
"""

from __future__ import annotations

import datetime

from ...models import MessageWait, Status
from ...types import MessageWaitInfo
from .connection import alias, execute, storable

WAIT = MessageWait._meta.db_table

# A re-run of the recv (after a recovery, or when a parked wait resumes) finds its row, which
# keeps the `since` of the first run.
_BEGIN = f"""
INSERT INTO {WAIT} (workflow_id, function_id, topic, form, since, deadline)
VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING
"""
_END = f"DELETE FROM {WAIT} WHERE workflow_id = %s AND function_id = %s"


def begin_wait(
    workflow_id: str,
    function_id: int,
    topic: str,
    form: str,
    since: datetime.datetime,
    deadline: datetime.datetime,
) -> None:
    """List a recv as waiting (nothing if it is listed already)."""
    execute(_BEGIN, [workflow_id, function_id, topic, form, since, deadline])


def end_wait(workflow_id: str, function_id: int) -> None:
    """Take a recv off the list (call in the transaction that records its outcome)."""
    execute(_END, [workflow_id, function_id])


def waiting_workflows(
    *,
    topic: str | None = None,
    name: str | None = None,
    workflow_id: str | None = None,
    function_id: int | None = None,
    limit: int | None = None,
) -> list[MessageWaitInfo]:
    """The waits of PENDING workflows matching every filter given, the longest waiting first."""
    if not all(storable(key) for key in (topic, name, workflow_id) if key is not None):
        return []
    rows = MessageWait.objects.using(alias()).filter(workflow__status=Status.PENDING)
    if topic is not None:
        rows = rows.filter(topic=topic)
    if name is not None:
        rows = rows.filter(workflow__name=name)
    if workflow_id is not None:
        rows = rows.filter(workflow_id=workflow_id)
    if function_id is not None:
        rows = rows.filter(function_id=function_id)
    values = rows.order_by("since", "workflow_id", "function_id").values_list(
        "workflow_id", "function_id", "workflow__name", "topic", "form", "since", "deadline"
    )
    return [
        MessageWaitInfo(
            workflow_id=wid,
            function_id=fid,
            name=workflow_name,
            topic=wait_topic or None,
            form=form,
            since=since,
            deadline=deadline,
        )
        for wid, fid, workflow_name, wait_topic, form, since, deadline in (
            values[:limit] if limit is not None else values
        )
    ]
