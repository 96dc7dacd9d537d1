"""Enqueueing: the options of an enqueue, checked against the queue, and the queue's row."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from ..errors import DBOSInvalidArgumentError
from . import clock, registry, runtime, system_db, validation

# Resumed and forked workflows that belong to no queue of their own wait here for a worker.
INTERNAL_QUEUE = "_dbos_internal_queue"
ENQUEUE_OPTIONS = {
    "deduplication_id",
    "priority",
    "queue_partition_key",
    "delay_seconds",
    "app_version",
}


class WrittenQueueRows(set[tuple[str, str]]):
    """The (database alias, queue name) pairs whose queue row this process has written (a part
    of its engine): a DBOSClient may enqueue onto another database's queues."""


def ensure_row(queue: registry.QueueSpec) -> None:
    """Give a queue its row (once per process and database), so the admin shows it before a
    worker starts."""
    database = system_db.alias()
    written = runtime.part(WrittenQueueRows)
    if (database, queue.name) not in written:
        system_db.ensure_queue(queue)
        # Remembered once committed: a rolled-back enqueue takes the new row with it.
        transaction.on_commit(lambda: written.add((database, queue.name)), using=database)


def enqueue_fields(
    queue_name: str,
    queue: registry.QueueSpec | None,
    options: Mapping[str, Any],
    default_version: str | None,
) -> dict[str, Any]:
    """Check SetEnqueueOptions, against the queue when it is known; return the columns they set.

    A DBOSClient may enqueue on a queue that no worker has declared yet (`queue=None`): the
    options that depend on its declaration (a priority, a partition key) are then checked by
    the worker that picks the workflow up (`mismatch`). Workers only dequeue workflows of their
    own application version, or of none (`default_version=None`, as the client enqueues
    without knowing the workers' version).
    """
    priority = options.get("priority")
    if priority is None:
        priority = 0
    elif (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (1 <= priority <= validation.MAX_INTEGER)
    ):
        raise DBOSInvalidArgumentError(
            f"priority must be an integer from 1 (highest) to {validation.MAX_INTEGER}."
        )
    partition = options.get("queue_partition_key")
    if partition is not None:
        validation.name(partition, "queue_partition_key", allow_empty=False)
    problem = mismatch(queue, priority, partition) if queue is not None else None
    if problem is not None:
        raise DBOSInvalidArgumentError(problem)
    deduplication_id = options.get("deduplication_id")
    if deduplication_id is not None:
        validation.name(deduplication_id, "deduplication_id", allow_empty=False)
    delay = options.get("delay_seconds")
    dispatch_after = None
    if delay is not None:
        seconds = validation.duration(delay, "delay_seconds")
        dispatch_after = clock.now() + datetime.timedelta(seconds=seconds)
    app_version = options.get("app_version")
    if app_version is not None:
        validation.name(app_version, "app_version", allow_empty=False)
    # Set by a Debouncer, never by SetEnqueueOptions: the latest its later calls may push the
    # dispatch back to, and the first dispatch time is no later either.
    debounce_deadline = options.get("debounce_deadline")
    if debounce_deadline is not None and dispatch_after is not None:
        dispatch_after = min(dispatch_after, debounce_deadline)
    return {
        "queue_name": queue_name,
        "priority": priority,
        "deduplication_id": deduplication_id,
        "queue_partition_key": partition,
        "dispatch_after": dispatch_after,
        "application_version": app_version or default_version,
        "debounced": bool(options.get("debounced")),
        "debounce_deadline": debounce_deadline,
    }


def mismatch(queue: registry.QueueSpec, priority: int, partition: str | None) -> str | None:
    """Why a workflow's priority or partition key does not fit its queue's declaration (as a
    sentence saying what to do), or None when it fits."""
    if priority and not queue.priority_enabled:
        return (
            f"Queue {queue.name!r} does not use priorities; declare it with "
            "priority_enabled=True to enqueue with a priority."
        )
    if queue.partition_queue and partition is None:
        return (
            f"Queue {queue.name!r} is partitioned: enqueue with "
            "SetEnqueueOptions(queue_partition_key=...)."
        )
    if partition is not None and not queue.partition_queue:
        return (
            f"Queue {queue.name!r} is not partitioned; declare it with partition_queue=True to "
            "enqueue with a queue_partition_key."
        )
    return None
