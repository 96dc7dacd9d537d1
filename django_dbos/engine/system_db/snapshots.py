"""Rows of the system tables as the public API's value types."""

from __future__ import annotations

import json

from ...models import FINISHED, ApplicationVersion, OperationOutput, Schedule, Status
from ...models import WorkflowStatus as WorkflowRow
from ...types import (
    QueueStatus,
    StepInfo,
    UpgradeBlock,
    VersionInfo,
    WorkflowSchedule,
    WorkflowStatus,
)
from .. import serialization
from ..registry import QueueSpec
from .connection import now
from .queues import QueueLoad


def workflow_status(
    row: WorkflowRow, load_input: bool = True, load_output: bool = True
) -> WorkflowStatus:
    return WorkflowStatus(
        workflow_id=row.workflow_id,
        status=Status(row.status),
        name=row.name,
        input=serialization.loads(row.inputs) if row.inputs and load_input else None,
        output=serialization.loads(row.output) if load_output else None,
        error=serialization.loads_error(row.error) if row.error and load_output else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        queue_name=row.queue_name,
        executor_id=row.executor_id,
        app_version=row.application_version,
        recovery_attempts=row.recovery_attempts,
        priority=row.priority,
        deduplication_id=row.deduplication_id,
        parent_workflow_id=row.parent_workflow_id,
        forked_from=row.forked_from,
        payload_expired=row.payload_expired_at is not None,
        upgrade_blocked_at=upgrade_block(row.upgrade_blocked_at, row.upgrade_checked_version),
        attributes=row.attributes,
        # A finished workflow's row changes no more (but for its attributes and payload, which
        # leave updated_at alone): updated_at is when it ended.
        completed_at=row.updated_at if row.status in FINISHED else None,
    )


def upgrade_block(divergence: str | None, version: str | None) -> UpgradeBlock | None:
    """The divergence an upgrade recorded (JSON), as the value type."""
    if divergence is None or version is None:
        return None
    fields = json.loads(divergence)
    return UpgradeBlock(
        version=version,
        function_id=fields.get("function_id"),
        expected=fields.get("expected"),
        found=fields.get("found"),
        reason=fields.get("reason", ""),
    )


def step_info(row: OperationOutput) -> StepInfo:
    return StepInfo(
        function_id=row.function_id,
        function_name=row.function_name,
        output=serialization.loads(row.output),
        error=serialization.loads_error(row.error) if row.error else None,
        child_workflow_id=row.child_workflow_id,
        started_at=row.started_at,
        completed_at=row.completed_at,
    )


def workflow_schedule(row: Schedule) -> WorkflowSchedule:
    return WorkflowSchedule(
        schedule_name=row.name,
        workflow_name=row.workflow_name,
        schedule=row.cron,
        status=row.status,
        context=row.context,
        automatic_backfill=row.automatic_backfill,
        cron_timezone=row.timezone or None,
        queue_name=row.queue_name,
        last_fired_at=row.last_fired_at,
    )


def queue_status(load: QueueLoad, spec: QueueSpec | None) -> QueueStatus:
    """A queue's load with its limits: the stored ones, else `spec` (declared in code)."""
    spec = load.limits or spec
    limiter = None
    # As the dispatcher reads it: a limit without a period (possible in the admin) limits nothing.
    if spec is not None and spec.rate_limit is not None and spec.rate_period_seconds:
        limiter = {"limit": spec.rate_limit, "period": spec.rate_period_seconds}
    oldest = load.oldest_enqueued_at
    return QueueStatus(
        name=load.name,
        declared=spec is not None,
        concurrency=spec.concurrency if spec else None,
        worker_concurrency=spec.worker_concurrency if spec else None,
        limiter=limiter,
        priority_enabled=spec.priority_enabled if spec else None,
        partition_queue=spec.partition_queue if spec else None,
        enqueued=load.enqueued,
        pending=load.pending,
        oldest_enqueued_age_seconds=(
            None if oldest is None else max(0.0, (now() - oldest).total_seconds())
        ),
        live_workers=load.live_workers,
        served=load.live_workers > 0,
        stranded=load.stranded,
    )


def version_info(row: ApplicationVersion, latest: str | None) -> VersionInfo:
    return VersionInfo(
        version_name=row.version_name,
        version_timestamp=row.version_timestamp,
        created_at=row.created_at,
        is_latest=row.version_name == latest,
    )
