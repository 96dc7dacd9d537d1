"""Deleting finished workflows: some by id, or the old ones in batches (garbage collection)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from ..errors import DBOSInvalidArgumentError, DBOSWorkflowActiveError
from . import system_db, validation

# Workflows per transaction of a garbage collection: each batch is a short transaction, so the
# dispatcher's and the steps' writes never wait long, and a crash loses at most one batch's
# work (the batch commits whole, or not at all).
BATCH_SIZE = 500


def delete(workflow_ids: Sequence[str], delete_children: bool) -> None:
    """Delete finished workflows with all that is theirs; refuse, deleting nothing, if one of
    them (or, with delete_children, one of their descendants) has not finished."""
    if isinstance(workflow_ids, str) or not isinstance(workflow_ids, Sequence):
        raise DBOSInvalidArgumentError(
            f"delete_workflows() takes a list of workflow ids, not {workflow_ids!r}."
        )
    ids = [validation.workflow_id(workflow_id) for workflow_id in workflow_ids]
    active = system_db.delete_finished(ids, with_children=bool(delete_children))
    if active:
        which = ", ".join(f"{wid!r} is {status}" for wid, status in sorted(active.items()))
        raise DBOSWorkflowActiveError(
            f"Only finished workflows can be deleted, and {which}. Nothing was deleted: wait "
            "for it to finish, or cancel it (DBOS.cancel_workflow) first."
        )


def garbage_collect(
    cutoff: datetime.datetime | None,
    rows_threshold: int | None,
    *,
    status: str | None = None,
    dry_run: bool = False,
) -> int:
    """Delete the finished workflows that ended before `cutoff`, or that are older than the
    newest `rows_threshold` finished ones, oldest first and a batch per transaction, skipping
    those whose family still has an active member; return how many were deleted (with
    dry_run, how many would be, deleting nothing). `status` keeps to one finished status."""
    bound = _bound(_checked_cutoff(cutoff), _checked_threshold(rows_threshold))
    if bound is None:
        return 0
    deleted = 0
    while True:
        # A child goes after its parent, which ends later: once a pass has deleted parents,
        # another one takes the children it had to keep.
        in_pass = _one_pass(bound, status, dry_run)
        deleted += in_pass
        if not in_pass or dry_run:
            return deleted


def _one_pass(bound: system_db.Position, status: str | None, dry_run: bool) -> int:
    deleted = 0
    after = None
    while batch := system_db.finished_before(bound, after=after, status=status, limit=BATCH_SIZE):
        # Past the last one seen, so that a kept workflow is not read again in each batch.
        after = (batch[-1][2], batch[-1][0])
        candidates = {workflow_id: parent_id for workflow_id, parent_id, _ in batch}
        if dry_run:
            deleted += len(candidates) - len(system_db.kept_with_family(candidates))
        else:
            deleted += len(system_db.delete_batch(candidates))
    return deleted


def _bound(
    cutoff: datetime.datetime | None, rows_threshold: int | None
) -> system_db.Position | None:
    """The position in the order of finished workflows (end, id) before which all go: the
    later of the cutoff's and the threshold's, as either alone deletes those before it."""
    bounds = []
    if cutoff is not None:
        bounds.append((cutoff, ""))  # "" sorts before every id: all that ended before cutoff
    if rows_threshold is not None:
        newest_kept = system_db.nth_newest_finished(rows_threshold)
        if newest_kept is not None:
            bounds.append(newest_kept)
    return max(bounds, default=None)


def _checked_cutoff(cutoff: Any) -> datetime.datetime | None:
    if cutoff is not None and not (
        isinstance(cutoff, datetime.datetime) and timezone.is_aware(cutoff)
    ):
        raise DBOSInvalidArgumentError(
            f"cutoff must be a timezone-aware datetime (django.utils.timezone.now() - ...), "
            f"not {cutoff!r}."
        )
    return cutoff


def _checked_threshold(rows_threshold: Any) -> int | None:
    if rows_threshold is not None and (
        isinstance(rows_threshold, bool)
        or not isinstance(rows_threshold, int)
        or rows_threshold < 1
    ):
        raise DBOSInvalidArgumentError(
            f"rows_threshold must be a whole number of 1 or more (the finished workflows to "
            f"keep), not {rows_threshold!r}; to delete them all, give cutoff=timezone.now()."
        )
    return rows_threshold
