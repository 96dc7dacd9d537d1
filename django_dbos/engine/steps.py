"""Running steps and transactions inside workflows: replay, retries, and their checkpoints."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import OperationalError, connections, transaction

from .. import conf
from ..errors import DBOSMaxStepRetriesExceeded
from . import aio, metrics, registry, serialization, system_db, tracing
from .context import WorkflowContext, workflow_context
from .workflows import lost_ownership, next_operation, next_operation_async, record_operation

logger = logging.getLogger("django_dbos")

# PostgreSQL's serialization_failure and deadlock_detected: a transaction may simply run again.
RETRYABLE_SQLSTATES = {"40001", "40P01"}
MAX_TRANSACTION_ATTEMPTS = 10


def replayed(ctx: WorkflowContext, function_id: int, name: str) -> tuple[bool, Any]:
    """Return (True, recorded result) when this operation was recorded; raise a recorded error."""
    operation = ctx.recorded_operation(function_id, name)
    if operation is None:
        return False, None
    if operation.error is not None:
        raise serialization.loads_error(operation.error)
    return True, serialization.loads(operation.output)


def _take_operation(ctx: WorkflowContext, name: str) -> tuple[int, bool, Any]:
    """Take the next function id: (id, True, outcome) when it was recorded (on replay), else
    (id, False, None)."""
    function_id = next_operation(ctx)
    done, result = replayed(ctx, function_id, name)
    return function_id, done, result


def run_step(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    """Run a step once per workflow execution, with retries, recording its outcome."""
    ctx = workflow_context()
    if ctx is None:
        return entry.func(*args, **kwargs)
    function_id, done, result = _take_operation(ctx, entry.name)
    if done:
        return result
    started_at = system_db.now()
    with tracing.step_span(entry.name, function_id):
        try:
            with inside_step(ctx), metrics.step_timer(entry.name):
                result = _call_with_retries(entry, args, kwargs)
            output = serialization.dumps(result, f"result of step {entry.name!r}")
        except Exception as exc:
            system_db.unavailable_if_disconnected(exc)  # an outage, not the step's own failure
            _record_error(ctx, function_id, entry.name, exc, started_at)
            raise
        record_operation(ctx, function_id, entry.name, output=output, started_at=started_at)
    return result


async def run_step_async(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    """`run_step` for an `async def` step: it runs on the event loop; its checkpoint is written
    on a database thread."""
    ctx = workflow_context()
    if ctx is None:
        return await entry.func(*args, **kwargs)
    function_id = await next_operation_async(ctx)
    done, result = replayed(ctx, function_id, entry.name)
    if done:
        return result
    started_at = system_db.now()
    with tracing.step_span(entry.name, function_id):
        try:
            with inside_step(ctx), metrics.step_timer(entry.name):
                result = await _call_with_retries_async(entry, args, kwargs)
            output = serialization.dumps(result, f"result of step {entry.name!r}")
        except Exception as exc:
            system_db.unavailable_if_disconnected(exc)
            await aio.run_sync(_record_error, ctx, function_id, entry.name, exc, started_at)
            raise
        await aio.run_sync(
            record_operation, ctx, function_id, entry.name, output=output, started_at=started_at
        )
    return result


@contextmanager
def inside_step(ctx: WorkflowContext) -> Iterator[None]:
    """Mark the workflow as inside a step: DBOS calls made there run as plain functions."""
    ctx.in_step = True
    try:
        yield
    finally:
        ctx.in_step = False


def _call_with_retries(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    if not entry.options["retries_allowed"]:
        return entry.func(*args, **kwargs)
    errors: list[Exception] = []
    while True:
        try:
            return entry.func(*args, **kwargs)
        except Exception as exc:
            errors.append(exc)
            time.sleep(_pause_before_retry(entry, errors))


async def _call_with_retries_async(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    if not entry.options["retries_allowed"]:
        return await entry.func(*args, **kwargs)
    errors: list[Exception] = []
    while True:
        try:
            return await entry.func(*args, **kwargs)
        except Exception as exc:
            errors.append(exc)
            await asyncio.sleep(_pause_before_retry(entry, errors))


def _pause_before_retry(entry: registry.Registered, errors: list[Exception]) -> float:
    """Return how long to wait before the next attempt (exponential backoff, capped), or raise
    DBOSMaxStepRetriesExceeded when the attempts are used up."""
    options = entry.options
    attempt, max_attempts = len(errors), options["max_attempts"]
    if attempt >= max_attempts:
        error = DBOSMaxStepRetriesExceeded(entry.name, max_attempts, repr(errors[-1]))
        error.errors = errors
        raise error from errors[-1]
    metrics.step_retried(entry.name)
    tracing.step_retrying(attempt, errors[-1])
    interval = options["interval_seconds"] * options["backoff_rate"] ** (attempt - 1)
    pause = min(interval, options["max_interval_seconds"])
    logger.warning(
        "Step %s failed (attempt %d of %d): %r; retrying in %.2f s.",
        entry.name,
        attempt,
        max_attempts,
        errors[-1],
        pause,
    )
    return pause


def run_transaction(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    """Run a function in `transaction.atomic` and record its outcome in that same transaction.

    When the function's database is the system database, the ORM writes and the checkpoint
    commit together: the transaction happens exactly once, even across crashes.
    """
    database = entry.options["database"] or conf.get("DATABASE")
    ctx = workflow_context()
    if ctx is None:
        with transaction.atomic(using=database):
            _set_isolation(database, entry.options["isolation_level"])
            return entry.func(*args, **kwargs)
    function_id, done, result = _take_operation(ctx, entry.name)
    if done:
        return result
    vendor = connections[database].vendor
    with (
        tracing.transaction_span(entry.name, function_id, database, vendor),
        metrics.step_timer(entry.name),
    ):
        return _run_transaction(entry, args, kwargs, ctx, function_id, database)


def _run_transaction(
    entry: registry.Registered,
    args: tuple,
    kwargs: dict,
    ctx: WorkflowContext,
    function_id: int,
    database: str,
) -> Any:
    """Run and record a transaction of a workflow, again when PostgreSQL asks to retry."""
    started_at = system_db.now()
    same_database = database == system_db.alias()
    attempt = 0
    while True:
        attempt += 1
        try:
            with inside_step(ctx), transaction.atomic(using=database):
                _set_isolation(database, entry.options["isolation_level"])
                result = entry.func(*args, **kwargs)
                output = serialization.dumps(result, f"result of transaction {entry.name!r}")
                if same_database and not system_db.record_operation(
                    ctx.workflow_id,
                    ctx.executor_id,
                    function_id,
                    entry.name,
                    output=output,
                    started_at=started_at,
                    execution=ctx.execution,
                ):
                    raise lost_ownership(ctx)  # rolls the function's writes back
        except OperationalError as exc:
            system_db.unavailable_if_disconnected(exc)
            if _retryable(exc) and attempt < MAX_TRANSACTION_ATTEMPTS:
                time.sleep(min(0.01 * 2**attempt, 1.0))
                continue
            _record_error(ctx, function_id, entry.name, exc, started_at)
            raise
        except Exception as exc:
            system_db.unavailable_if_disconnected(exc)
            _record_error(ctx, function_id, entry.name, exc, started_at)
            raise
        if not same_database:
            record_operation(ctx, function_id, entry.name, output=output, started_at=started_at)
        return result


def _record_error(
    ctx: WorkflowContext, function_id: int, name: str, exc: BaseException, started_at: Any
) -> None:
    record_operation(
        ctx, function_id, name, error=serialization.dumps_error(exc), started_at=started_at
    )


def _retryable(exc: OperationalError) -> bool:
    sqlstate = getattr(getattr(exc, "__cause__", None), "sqlstate", None)
    return sqlstate in RETRYABLE_SQLSTATES


def _set_isolation(database: str, isolation_level: str | None) -> None:
    if isolation_level is None:
        return
    connection = connections[database]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation_level}")
