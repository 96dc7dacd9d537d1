"""Deleting finished workflows with everything that is theirs, and finding the old ones.

A workflow owns its recorded operations, the messages sent to it, its events and their
history, and its stream entries: they go in the same transaction as its row, children tables
first, so that a workflow is either whole or gone, whenever the process stops.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections
from django.db.models import Q

from ...models import FINISHED, WorkflowStatus
from .connection import WF, alias, execute, storable, write_transaction
from .owned import WORKFLOW_TABLES

# Keeps every `IN (...)` list far below the databases' limits on parameters.
_CHUNK = 500

# A place in the order of finished workflows: (when it ended, workflow id).
Position = tuple[datetime.datetime, str]


def chunks(workflow_ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(workflow_ids), _CHUNK):
        yield list(workflow_ids[start : start + _CHUNK])


def placeholders(values: Sequence[str]) -> str:
    return ", ".join(["%s"] * len(values))


def delete_finished(workflow_ids: Sequence[str], *, with_children: bool) -> dict[str, str]:
    """Delete these workflows, and with_children their descendants, if every one has finished.

    Returns {workflow id: status} of those that have not: then nothing was deleted. Ids of no
    workflow are ignored. The statuses are read, their rows locked, in the transaction that
    deletes, so that no workflow can start running again in between.
    """
    with write_transaction():
        workflow_ids = [wid for wid in dict.fromkeys(workflow_ids) if storable(wid)]
        if with_children:
            children = [wid for _, wid, _ in _descendants(workflow_ids)]
            workflow_ids = list(dict.fromkeys([*workflow_ids, *children]))
        statuses = _lock(workflow_ids, skip_locked=False)
        active = {wid: status for wid, status in statuses.items() if status not in FINISHED}
        # A running ancestor may still read their outcome.
        parents = dict(
            WorkflowStatus.objects.using(alias())
            .filter(workflow_id__in=list(statuses))
            .values_list("workflow_id", "parent_workflow_id")
        )
        active |= {
            ancestor: status
            for _, ancestor, status in _ancestors(parents)
            if status not in FINISHED and ancestor not in statuses
        }
        if not active:
            _delete(list(statuses))
    return active


def delete_batch(
    candidates: dict[str, str | None], *, ended_before: datetime.datetime | None = None
) -> list[str]:
    """Delete, in one transaction, those of these finished workflows (id -> parent id) that are
    still finished (and, with ended_before, ended before it) and whose family has no active
    member; return their ids.

    A row another transaction holds (say, a resume) is skipped on PostgreSQL rather than
    waited for: the next garbage collection takes it. `ended_before` leaves out a workflow
    resumed since it was read, and finished again: what the caller archived of it is old.
    """
    with write_transaction():
        statuses = _lock(list(candidates), skip_locked=True, ended_before=ended_before)
        finished = {wid: candidates[wid] for wid, status in statuses.items() if status in FINISHED}
        kept = kept_with_family(finished)
        doomed = [wid for wid in finished if wid not in kept]
        _delete(doomed)
    return doomed


def kept_with_family(candidates: dict[str, str | None], *, scrubbing: bool = False) -> set[str]:
    """Those of these finished workflows (id -> parent id) to keep for now.

    Those with an ancestor or a descendant that has not finished: a running parent may still
    read their outcome, and a running child may still report to them. And those whose parent
    is still there and not among them: a finished parent may be resumed or forked, and then
    replays its children's outcomes, so a child goes with its parent or after it (when
    scrubbing, after the parent's payload expired).
    """
    active = {root for root, _, status in _descendants(list(candidates)) if status not in FINISHED}
    active |= {root for root, _, status in _ancestors(candidates) if status not in FINISHED}
    parents = [parent for parent in set(candidates.values()) if parent and parent not in candidates]
    present: set[str] = set()
    for chunk in chunks(parents):
        rows = WorkflowStatus.objects.using(alias()).filter(workflow_id__in=chunk)
        if scrubbing:
            rows = rows.filter(payload_expired_at__isnull=True)
        present.update(rows.values_list("workflow_id", flat=True))
    return active | {wid for wid, parent in candidates.items() if parent in present}


def finished_before(
    bound: Position,
    *,
    after: Position | None,
    status: str | None,
    limit: int,
    payload_kept: bool = False,
) -> list[tuple[str, str | None, datetime.datetime]]:
    """(id, parent id, end) of the oldest finished workflows that ended before `bound` and
    after `after`, by end: the index dbos_wf_finished_idx reads them in that order (with
    payload_kept, only those whose payload has not expired: dbos_wf_payload_kept_idx)."""
    rows = WorkflowStatus.objects.using(alias()).filter(status__in=FINISHED)
    if payload_kept:
        rows = rows.filter(payload_expired_at__isnull=True)
    if status is not None:
        rows = rows.filter(status=status)
    ended, workflow_id = bound
    rows = rows.filter(Q(updated_at__lt=ended) | Q(updated_at=ended, workflow_id__lt=workflow_id))
    if after is not None:
        ended, workflow_id = after
        rows = rows.filter(
            Q(updated_at__gt=ended) | Q(updated_at=ended, workflow_id__gt=workflow_id)
        )
    ordered = rows.order_by("updated_at", "workflow_id")
    return list(ordered.values_list("workflow_id", "parent_workflow_id", "updated_at")[:limit])


def nth_newest_finished(n: int) -> Position | None:
    """The position of the n-th most recently finished workflow (n >= 1); None when fewer
    have finished."""
    newest = (
        WorkflowStatus.objects.using(alias())
        .filter(status__in=FINISHED)
        .order_by("-updated_at", "-workflow_id")
        .values_list("updated_at", "workflow_id")
    )
    row = newest[n - 1 : n].first()
    return (row[0], row[1]) if row is not None else None


def _lock(
    workflow_ids: Sequence[str],
    *,
    skip_locked: bool,
    ended_before: datetime.datetime | None = None,
) -> dict[str, str]:
    """The status of each of these workflows that exists (and ended before `ended_before`),
    its row locked until the transaction ends (on SQLite the write transaction holds the whole
    database already). In id order, so that two deletes cannot deadlock."""
    lock = ""
    if connections[alias()].vendor == "postgresql":
        lock = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE"
    ended = "" if ended_before is None else " AND updated_at < %s"
    statuses: dict[str, str] = {}
    for chunk in chunks(sorted(workflow_ids)):
        sql = (
            f"SELECT workflow_id, status FROM {WF} WHERE workflow_id IN ({placeholders(chunk)})"
            f"{ended} ORDER BY workflow_id{lock}"
        )
        params: list[Any] = [*chunk] if ended_before is None else [*chunk, ended_before]
        statuses.update(execute(sql, params).fetchall())
    return statuses


def _delete(workflow_ids: Sequence[str]) -> None:
    """Delete these workflows' rows in every table, the tables that point to a workflow first."""
    for chunk in chunks(workflow_ids):
        marks = placeholders(chunk)
        for owned in WORKFLOW_TABLES:
            execute(f"DELETE FROM {owned.table} WHERE {owned.owner} IN ({marks})", chunk)
        execute(f"DELETE FROM {WF} WHERE workflow_id IN ({marks})", chunk)


def _descendants(workflow_ids: Sequence[str]) -> list[tuple[str, str, str]]:
    """(root, descendant id, status) of every child, grandchild, ... of each of these workflows.

    Detached children too, unlike `workflows.descendants` (what a cancellation reaches): they
    are still the family that deleting with children takes, and that keeps a workflow alive.
    """
    return _walk({wid: {wid} for wid in workflow_ids}, "parent_workflow_id__in", up=False)


def _ancestors(parents: dict[str, str | None]) -> list[tuple[str, str, str]]:
    """(root, ancestor id, status) of every parent, grandparent, ... of each of these workflows
    (id -> parent id)."""
    roots_of: dict[str, set[str]] = {}
    for workflow_id, parent_id in parents.items():
        if parent_id:
            roots_of.setdefault(parent_id, set()).add(workflow_id)
    return _walk(roots_of, "workflow_id__in", up=True)


def _walk(roots_of: dict[str, set[str]], lookup: str, *, up: bool) -> list[tuple[str, str, str]]:
    """Follow parent links from a frontier (workflow id -> the roots it was reached from), a
    generation per query: the rows whose `lookup` is in the frontier are the next one. Returns
    (root, workflow id, status) of each workflow reached, once per root (ids are chosen by
    users, so a loop of parent links is not impossible: a pair seen twice ends its path)."""
    found: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    while roots_of:
        following: dict[str, set[str]] = {}
        for chunk in chunks(list(roots_of)):
            rows = (
                WorkflowStatus.objects.using(alias())
                .filter(**{lookup: chunk})
                .values_list("workflow_id", "parent_workflow_id", "status")
            )
            for workflow_id, parent_id, status in rows:
                # Going down, the rows are the children of the frontier: parent_id is in it.
                roots = roots_of[workflow_id if up else str(parent_id)]
                found.extend((root, workflow_id, status) for root in roots)
                step = parent_id if up else workflow_id
                for root in roots:
                    if step and (root, step) not in seen and root != step:
                        seen.add((root, step))
                        following.setdefault(step, set()).add(root)
        roots_of = following
    return found
