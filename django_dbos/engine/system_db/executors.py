"""Executor rows (heartbeats), and taking over the workflows of dead executors."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import cast

from ...models import Executor, Status, WorkflowStatus
from .connection import EXECUTOR, WF, alias, execute, now, parse_time, write_transaction
from .rows import NOT_WAITING, ClaimedWorkflow
from .wakeups import QUEUE_ACTIVITY, execute_and_notify

_HEARTBEAT = f"""
INSERT INTO {EXECUTOR} (executor_id, hostname, pid, role, application_version, started_at,
    last_heartbeat, queues)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (executor_id) DO UPDATE SET last_heartbeat = EXCLUDED.last_heartbeat,
    role = EXCLUDED.role, hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
    application_version = EXCLUDED.application_version, started_at = EXCLUDED.started_at,
    queues = EXCLUDED.queues
"""


def heartbeat(
    executor_id: str,
    *,
    hostname: str,
    pid: int,
    role: str,
    application_version: str,
    started_at: datetime.datetime,
    queues: Sequence[str] = (),
) -> None:
    """Upsert the executor's row: a flush or an operator's delete cannot make it look dead."""
    identity = [executor_id, hostname, pid, role, application_version, started_at]
    execute(_HEARTBEAT, [*identity, now(), json.dumps(list(queues))])


def delete_executor(executor_id: str) -> None:
    Executor.objects.using(alias()).filter(executor_id=executor_id).delete()


def forget_executors(executor_ids: Iterable[str], *, silent_since: datetime.datetime) -> None:
    """Delete the rows of executors that are still silent (their workflows were taken over)."""
    Executor.objects.using(alias()).filter(
        executor_id__in=list(executor_ids), last_heartbeat__lt=silent_since
    ).delete()


def stale_executor_ids(silent_since: datetime.datetime) -> set[str]:
    """Executors whose last heartbeat is older than the given time."""
    return set(
        Executor.objects.using(alias())
        .filter(last_heartbeat__lt=silent_since)
        .values_list("executor_id", flat=True)
    )


def live_executor_ids() -> set[str]:
    return set(Executor.objects.using(alias()).values_list("executor_id", flat=True))


def pending_executor_ids(application_version: str) -> set[str]:
    """Executors that hold PENDING workflows of this application version."""
    # cast: a PENDING workflow always has an executor (taking it sets one); the column is
    # nullable only for ENQUEUED ones.
    return cast(
        set[str],
        set(
            WorkflowStatus.objects.using(alias())
            .filter(status=Status.PENDING, application_version=application_version)
            .values_list("executor_id", flat=True)
            .distinct()
        ),
    )


class Recovered(list[ClaimedWorkflow]):
    """The workflows a recovery claimed to run here; `requeued` counts those it set back to
    ENQUEUED for their queue."""

    requeued: int = 0


def claim_pending(
    from_executors: Iterable[str], executor_id: str, application_version: str
) -> Recovered:
    """Take over the PENDING workflows of the given executors, counting a recovery attempt.

    Queued ones go back to ENQUEUED, so that their queue's limits apply when they run again;
    the others are claimed by this executor and returned, to be run now. Each is one guarded
    UPDATE: a second claim of the same rows, by this or another worker, finds nothing, because
    the executor id no longer matches.
    """
    executors = list(from_executors)
    if not executors:
        return Recovered()
    placeholders = ", ".join(["%s"] * len(executors))
    guard = f"status = 'PENDING' AND application_version = %s AND executor_id IN ({placeholders})"
    with write_transaction():
        requeued = execute_and_notify(
            f"""
            UPDATE {WF} SET status = 'ENQUEUED', executor_id = NULL,
                recovery_attempts = recovery_attempts + 1, updated_at = %s, {NOT_WAITING}
            WHERE {guard} AND queue_name IS NOT NULL
            """,
            [now(), application_version, *executors],
            QUEUE_ACTIVITY,
        ).rowcount  # read now: the next statement may reuse the cursor
        rows = execute(
            f"""
            UPDATE {WF} SET executor_id = %s, recovery_attempts = recovery_attempts + 1,
                execution = execution + 1, updated_at = %s, {NOT_WAITING}
            WHERE {guard} AND queue_name IS NULL
            RETURNING workflow_id, name, inputs, recovery_attempts, deadline, execution,
                trace_context
            """,
            [executor_id, now(), application_version, *executors],
        ).fetchall()
    recovered = Recovered(
        ClaimedWorkflow(
            workflow_id,
            name,
            inputs,
            attempts,
            parse_time(deadline),
            execution=execution,
            trace_context=trace_context,
        )
        for workflow_id, name, inputs, attempts, deadline, execution, trace_context in rows
    )
    recovered.requeued = max(requeued, 0)
    return recovered
