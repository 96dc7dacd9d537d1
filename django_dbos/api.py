"""The public face of django-dbos: the `DBOS` facade, queues and the start options."""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ParamSpec, Self, TypeVar

from django import forms
from django.core.exceptions import ValidationError
from django.utils.functional import classproperty

from . import conf
from .engine import (
    aio,
    communication,
    deletion,
    enqueue,
    handles,
    management,
    patches,
    registry,
    runtime,
    scheduler,
    serialization,
    steps,
    system_db,
    timers,
    validation,
    workflows,
)
from .engine.context import StartOptions, current_workflow, start_options
from .errors import (
    DBOSConfigurationError,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
)
from .types import (
    QueueStatus,
    Status,
    StepInfo,
    VersionInfo,
    WorkflowHandle,
    WorkflowSchedule,
    WorkflowStatus,
)

P = ParamSpec("P")
R = TypeVar("R")
ISOLATION_LEVELS = ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE")


def _existing_schedule(found: bool, name: str) -> None:
    if not found:
        raise DBOSNotRegisteredError(f"There is no schedule named {name!r}.")


def _registered(func: Callable[..., Any], kind: str) -> registry.Registered:
    entry = getattr(func, "__dbos__", None)
    if not isinstance(entry, registry.Registered) or entry.kind != kind:
        name = getattr(func, "__qualname__", repr(func))
        raise DBOSNotRegisteredError(
            f"{name} is not a registered {kind}. Decorate it with @DBOS.{kind}() first."
        )
    return entry


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    valid = isinstance(value, int | float) and not isinstance(value, bool)
    if not valid or value < 0 or (value == 0 and not allow_zero):
        raise DBOSConfigurationError(f"{name} must be a positive number, not {value!r}.")


def _filters(
    *, status: str | list[str] | None, attributes: dict[str, Any] | None, **filters: Any
) -> dict[str, Any]:
    """The filters of list_workflows as the system-db layer takes them: `status` as a list of
    statuses, `attributes` checked."""
    if attributes is not None:
        attributes = validation.attributes(attributes, "The attributes filter")
    statuses = [status] if isinstance(status, str) else status
    return {"statuses": statuses, "attributes": attributes, **filters}


def _decorate(
    entry: registry.Registered,
    run: Callable[..., Any],
    run_async: Callable[..., Any] | None = None,
) -> Callable[..., Any]:
    """Wrap a registered function: a call runs it through the engine (`run_async` for an
    `async def` function, whose call then returns a coroutine)."""
    if run_async is not None and entry.is_async:

        @functools.wraps(entry.func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            return await run_async(entry, args, kwargs)

        # How the API finds a function's registration; a function's type has no such attribute.
        async_wrapper.__dbos__ = entry  # type: ignore[attr-defined]
        return async_wrapper

    @functools.wraps(entry.func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(entry, args, kwargs)

    wrapper.__dbos__ = entry  # type: ignore[attr-defined]  # as above
    return wrapper


def _run_inline(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    return workflows.start(entry, args, kwargs, inline=True)


async def _run_inline_async(entry: registry.Registered, args: tuple, kwargs: dict) -> Any:
    return await workflows.start_async(entry, args, kwargs, inline=True)


class DBOS:
    """Declare and run durable workflows (the names of DBOS Transact for Python)."""

    logger = logging.getLogger("django_dbos")

    # Declaring ------------------------------------------------------------------------------

    @staticmethod
    def workflow(
        name: str | None = None, max_recovery_attempts: int | None = None, http: bool = False
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function a durable workflow, registered by name."""
        if max_recovery_attempts is not None:
            _positive("max_recovery_attempts", max_recovery_attempts)

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            entry = registry.register(
                "workflow", func, name, max_recovery_attempts=max_recovery_attempts, http=http
            )
            return _decorate(entry, _run_inline, _run_inline_async)

        return decorator

    @staticmethod
    def step(
        name: str | None = None,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
        max_interval_seconds: float = 3600.0,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function a step: its outcome is checkpointed, and it may be retried."""
        _positive("interval_seconds", interval_seconds, allow_zero=True)
        _positive("max_interval_seconds", max_interval_seconds, allow_zero=True)
        _positive("backoff_rate", backoff_rate)
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise DBOSConfigurationError(f"max_attempts must be at least 1, not {max_attempts!r}.")

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            entry = registry.register(
                "step",
                func,
                name,
                retries_allowed=retries_allowed,
                interval_seconds=interval_seconds,
                max_attempts=max_attempts,
                backoff_rate=backoff_rate,
                max_interval_seconds=max_interval_seconds,
            )
            return _decorate(entry, steps.run_step, steps.run_step_async)

        return decorator

    @staticmethod
    def transaction(
        name: str | None = None, isolation_level: str | None = None, database: str | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run a function in `transaction.atomic`, committing its checkpoint with its writes."""
        if isolation_level is not None and isolation_level.upper() not in ISOLATION_LEVELS:
            raise DBOSConfigurationError(
                f"isolation_level must be one of {', '.join(ISOLATION_LEVELS)}, "
                f"not {isolation_level!r}."
            )

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(func):
                raise DBOSConfigurationError(
                    f"{func.__qualname__} is `async def`, but a transaction runs in "
                    "transaction.atomic() on a thread: make it a plain function (an async "
                    "workflow can await it through asyncio.to_thread)."
                )
            entry = registry.register(
                "transaction",
                func,
                name,
                isolation_level=isolation_level.upper() if isolation_level else None,
                database=database,
            )
            return _decorate(entry, steps.run_transaction)

        return decorator

    @staticmethod
    def scheduled(cron: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Run a workflow at every tick of a cron schedule (stack it on @DBOS.workflow()).

        Five fields, or six with seconds first. The workflow is called with
        `(scheduled_time, actual_time)`; `manage.py check` reports a bad expression.
        """

        def decorator(func: Callable[P, R]) -> Callable[P, R]:
            entry = getattr(func, "__dbos__", None)
            if entry is None or entry.kind != "workflow":
                raise DBOSConfigurationError(
                    "@DBOS.scheduled() goes above @DBOS.workflow(): decorate a workflow."
                )
            registry.register_schedule(entry.name, cron)
            return func

        return decorator

    # Schedules made at run time -------------------------------------------------------------

    @staticmethod
    def create_schedule(
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Any],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
    ) -> WorkflowSchedule:
        """Store a schedule; workers run `workflow_fn(scheduled_time, context)` at its ticks."""
        entry = _registered(workflow_fn, "workflow")
        serialization.dumps(context, "schedule context")
        try:
            row = scheduler.create(
                schedule_name,
                entry.name,
                schedule,
                context=context,
                automatic_backfill=automatic_backfill,
                cron_timezone=cron_timezone,
                queue_name=queue_name,
            )
        except ValidationError as exc:
            raise DBOSInvalidArgumentError(
                "; ".join(
                    f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items()
                )
            ) from exc
        return system_db.workflow_schedule(row)

    @staticmethod
    def list_schedules(
        status: str | None = None,
        workflow_name: str | None = None,
        schedule_name_prefix: str | None = None,
    ) -> list[WorkflowSchedule]:
        rows = system_db.list_schedules(status, workflow_name, schedule_name_prefix)
        return [system_db.workflow_schedule(row) for row in rows]

    @staticmethod
    def get_schedule(name: str) -> WorkflowSchedule | None:
        row = system_db.get_schedule(name)
        return system_db.workflow_schedule(row) if row is not None else None

    @staticmethod
    def pause_schedule(name: str) -> None:
        """Stop a schedule's ticks (workers notice within seconds) until it is resumed."""
        _existing_schedule(system_db.update_schedule(name, status="PAUSED"), name)

    @staticmethod
    def resume_schedule(name: str) -> None:
        _existing_schedule(system_db.update_schedule(name, status="ACTIVE"), name)

    @staticmethod
    def delete_schedule(name: str) -> None:
        _existing_schedule(system_db.delete_schedule(name), name)

    @staticmethod
    def trigger_schedule(name: str) -> WorkflowHandle[Any]:
        """Run a schedule's workflow once, now."""
        return scheduler.trigger(name)

    @staticmethod
    def backfill_schedule(
        name: str, start: datetime.datetime, end: datetime.datetime
    ) -> list[WorkflowHandle[Any]]:
        """Enqueue each tick from `start` to `end`, unless it ran already."""
        return scheduler.backfill_schedule(name, start, end)

    # Running and waiting --------------------------------------------------------------------

    @staticmethod
    def start_workflow(
        func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Start a workflow on this process's workflow threads and return its handle."""
        entry = _registered(func, "workflow")
        return workflows.start(entry, args, kwargs, inline=False)

    @staticmethod
    async def start_workflow_async(
        func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[Any]:
        """`start_workflow` for coroutines. An async workflow runs on the engine's event loop,
        a sync one on its workflow threads."""
        entry = _registered(func, "workflow")
        return await workflows.start_async(entry, args, kwargs, inline=False)

    @staticmethod
    def retrieve_workflow(workflow_id: str) -> WorkflowHandle[Any]:
        """Return a handle to an existing workflow."""
        if system_db.get_outcome(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")
        return handles.handle(workflow_id, handles.running().get(workflow_id))

    @staticmethod
    def get_workflow_status(workflow_id: str) -> WorkflowStatus | None:
        row = system_db.get_workflow(workflow_id)
        return system_db.workflow_status(row) if row is not None else None

    @staticmethod
    def list_workflow_steps(workflow_id: str) -> list[StepInfo]:
        """Return the recorded operations of a workflow, in order."""
        return [system_db.step_info(row) for row in system_db.list_operations(workflow_id)]

    @staticmethod
    def wait_first(handles: list[WorkflowHandle[Any]]) -> WorkflowHandle[Any]:
        """Wait until one of the workflows ends and return its handle."""
        first = management.wait_first([handle.workflow_id for handle in handles])
        return next(handle for handle in handles if handle.workflow_id == first)

    # Managing -------------------------------------------------------------------------------

    @staticmethod
    def cancel_workflow(workflow_id: str) -> None:
        """Cancel a workflow and its descendants (except those started detached)."""
        management.cancel(workflow_id)

    @staticmethod
    def resume_workflow(workflow_id: str) -> WorkflowHandle[Any]:
        """Run a cancelled or failed workflow again from its last completed step."""
        future = management.resume(workflow_id)
        return handles.handle(workflow_id, future)

    @staticmethod
    def fork_workflow(
        workflow_id: str, start_step: int, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """Start a new workflow that reuses `workflow_id`'s outcomes before `start_step`."""
        new_id, future = management.fork(workflow_id, start_step, application_version)
        return handles.handle(new_id, future)

    @staticmethod
    def update_workflow_attributes(
        workflow_id: str, attributes: dict[str, Any] | None, merge: bool = False
    ) -> None:
        """Replace a workflow's attributes (None clears them), or with `merge=True` set the
        given top-level keys over its recorded ones."""
        if attributes is not None:
            attributes = validation.attributes(attributes)
        elif merge:
            raise DBOSInvalidArgumentError(
                "merge=True sets the keys of a dict over the workflow's attributes: pass a dict, "
                "or merge=False to clear them with None."
            )
        if not system_db.update_attributes(workflow_id, attributes, merge=merge):
            raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")

    @staticmethod
    def delete_workflow(workflow_id: str, delete_children: bool = False) -> None:
        """Delete a finished workflow with its steps, messages, events and streams (and its
        descendants, with delete_children); DBOSWorkflowActiveError if one has not finished."""
        deletion.delete([workflow_id], delete_children)

    @staticmethod
    def delete_workflows(workflow_ids: list[str], delete_children: bool = False) -> None:
        """Delete finished workflows, all or none: none if one of them has not finished."""
        deletion.delete(workflow_ids, delete_children)

    @staticmethod
    def garbage_collect(
        cutoff: datetime.datetime | None = None, rows_threshold: int | None = None
    ) -> int:
        """Delete the finished workflows that ended before `cutoff`, or beyond the newest
        `rows_threshold` finished ones, except families with an active member; return how
        many were deleted. Batches of a short transaction each, oldest first."""
        return deletion.garbage_collect(cutoff, rows_threshold)

    @staticmethod
    def list_workflows(
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        name: str | None = None,
        queue_name: str | None = None,
        start_time: datetime.datetime | None = None,
        end_time: datetime.datetime | None = None,
        app_version: str | None = None,
        user: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
        load_output: bool = True,
        attributes: dict[str, Any] | None = None,
        workflow_id_prefix: str | None = None,
        executor_id: str | None = None,
        parent_workflow_id: str | None = None,
        has_parent: bool | None = None,
        forked_from: str | None = None,
        is_fork: bool | None = None,
        completed_after: datetime.datetime | None = None,
        completed_before: datetime.datetime | None = None,
    ) -> list[WorkflowStatus]:
        """Workflows matching every filter given, oldest first (newest with sort_desc).

        `attributes` matches the workflows whose attributes contain it (docs/attributes.md);
        `completed_after` and `completed_before` only finished workflows, by when they ended.
        """
        rows = system_db.list_workflows(
            **_filters(
                workflow_ids=workflow_ids,
                status=status,
                name=name,
                queue_name=queue_name,
                start_time=start_time,
                end_time=end_time,
                app_version=app_version,
                user=user,
                attributes=attributes,
                workflow_id_prefix=workflow_id_prefix,
                executor_id=executor_id,
                parent_workflow_id=parent_workflow_id,
                has_parent=has_parent,
                forked_from=forked_from,
                is_fork=is_fork,
                completed_after=completed_after,
                completed_before=completed_before,
            ),
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
        )
        return [system_db.workflow_status(row, load_input, load_output) for row in rows]

    @staticmethod
    def list_queued_workflows(
        queue_name: str | None = None,
        status: str | list[str] | None = None,
        name: str | None = None,
        start_time: datetime.datetime | None = None,
        end_time: datetime.datetime | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
        attributes: dict[str, Any] | None = None,
        workflow_id_prefix: str | None = None,
        executor_id: str | None = None,
        parent_workflow_id: str | None = None,
        has_parent: bool | None = None,
        forked_from: str | None = None,
        is_fork: bool | None = None,
    ) -> list[WorkflowStatus]:
        """Queued workflows still waiting or running (ENQUEUED or PENDING)."""
        rows = system_db.list_workflows(
            **_filters(
                status=status or [Status.ENQUEUED, Status.PENDING],
                name=name,
                queue_name=queue_name,
                queued_only=True,
                start_time=start_time,
                end_time=end_time,
                attributes=attributes,
                workflow_id_prefix=workflow_id_prefix,
                executor_id=executor_id,
                parent_workflow_id=parent_workflow_id,
                has_parent=has_parent,
                forked_from=forked_from,
                is_fork=is_fork,
            ),
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
        )
        return [system_db.workflow_status(row, load_input, load_output=False) for row in rows]

    @staticmethod
    def list_queues() -> list[QueueStatus]:
        """Every queue recorded in the database, declared in this process's code, or with
        workflows waiting or running on it, by name: its limits, its load, and how many live
        workers serve it (live: a heartbeat within EXECUTOR_TIMEOUT_SECONDS)."""
        timeout = datetime.timedelta(seconds=float(conf.get("EXECUTOR_TIMEOUT_SECONDS")))
        specs = {spec.name: spec for spec in registry.queues()}
        loads = system_db.queue_statuses(specs, live_since=system_db.now() - timeout)
        specs[enqueue.INTERNAL_QUEUE] = registry.QueueSpec(enqueue.INTERNAL_QUEUE)
        # The stored limits win (they may have been edited in the admin), as in the dispatcher.
        return [system_db.queue_status(load, specs.get(load.name)) for load in loads]

    # Application versions (docs/deploying.md) -----------------------------------------------

    @staticmethod
    def list_application_versions() -> list[VersionInfo]:
        """Every version a worker recorded at its start, the latest (newest timestamp) first."""
        rows = system_db.application_versions()
        latest = rows[0].version_name if rows else None
        return [system_db.version_info(row, latest) for row in rows]

    @staticmethod
    def get_latest_application_version() -> VersionInfo:
        """The version with the newest timestamp: the last one recorded, unless
        set_latest_application_version chose another since."""
        versions = DBOS.list_application_versions()
        if not versions:
            raise DBOSException(
                "No application version is recorded yet: each worker records its own when it "
                "starts (manage.py rundbosworker)."
            )
        return versions[0]

    @staticmethod
    def set_latest_application_version(version_name: str) -> None:
        """Make a recorded version the latest, by giving it the newest timestamp."""
        name = validation.name(version_name, "version_name")
        if not system_db.set_latest_version(name):
            known = ", ".join(repr(v.version_name) for v in DBOS.list_application_versions())
            raise DBOSInvalidArgumentError(
                f"No application version {name!r} is recorded (a worker records its version "
                f"when it starts). Recorded: {known or 'none'}."
            )

    # Exporting and importing (docs/retention.md) --------------------------------------------

    # The filters of list_workflows, without its paging and loading options.
    @staticmethod
    def export_workflows(
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        name: str | None = None,
        queue_name: str | None = None,
        start_time: datetime.datetime | None = None,
        end_time: datetime.datetime | None = None,
        app_version: str | None = None,
        user: str | None = None,
        attributes: dict[str, Any] | None = None,
        workflow_id_prefix: str | None = None,
        executor_id: str | None = None,
        parent_workflow_id: str | None = None,
        has_parent: bool | None = None,
        forked_from: str | None = None,
        is_fork: bool | None = None,
        completed_after: datetime.datetime | None = None,
        completed_before: datetime.datetime | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield a record of each workflow matching every filter given, oldest first: its row,
        steps, events, streams and messages, JSON-ready, as `import_workflow` takes it back."""
        return system_db.export_workflows(
            **_filters(
                workflow_ids=workflow_ids,
                status=status,
                name=name,
                queue_name=queue_name,
                start_time=start_time,
                end_time=end_time,
                app_version=app_version,
                user=user,
                attributes=attributes,
                workflow_id_prefix=workflow_id_prefix,
                executor_id=executor_id,
                parent_workflow_id=parent_workflow_id,
                has_parent=has_parent,
                forked_from=forked_from,
                is_fork=is_fork,
                completed_after=completed_after,
                completed_before=completed_before,
            )
        )

    @staticmethod
    def import_workflow(record: dict[str, Any]) -> WorkflowHandle[Any]:
        """Write back a workflow from its exported record, with everything that belongs to it.

        An id already in the database raises `DBOSWorkflowConflictIDError`, and a record that
        is not valid `DBOSInvalidArgumentError`; either way nothing is written. A workflow
        exported ENQUEUED or PENDING is imported as it was: the workers dispatch or recover it.
        """
        return handles.handle(system_db.import_workflow(record))

    # The same, for coroutines: each runs the sync form on a database thread.

    @staticmethod
    async def retrieve_workflow_async(workflow_id: str) -> WorkflowHandle[Any]:
        return await aio.run_sync(DBOS.retrieve_workflow, workflow_id)

    @staticmethod
    async def get_workflow_status_async(workflow_id: str) -> WorkflowStatus | None:
        return await aio.run_sync(DBOS.get_workflow_status, workflow_id)

    @staticmethod
    async def list_workflow_steps_async(workflow_id: str) -> list[StepInfo]:
        return await aio.run_sync(DBOS.list_workflow_steps, workflow_id)

    @staticmethod
    async def cancel_workflow_async(workflow_id: str) -> None:
        await aio.run_sync(DBOS.cancel_workflow, workflow_id)

    @staticmethod
    async def resume_workflow_async(workflow_id: str) -> WorkflowHandle[Any]:
        return await aio.run_sync(DBOS.resume_workflow, workflow_id)

    @staticmethod
    async def fork_workflow_async(
        workflow_id: str, start_step: int, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        return await aio.run_sync(DBOS.fork_workflow, workflow_id, start_step, application_version)

    @staticmethod
    async def update_workflow_attributes_async(
        workflow_id: str, attributes: dict[str, Any] | None, merge: bool = False
    ) -> None:
        await aio.run_sync(DBOS.update_workflow_attributes, workflow_id, attributes, merge)

    @staticmethod
    async def delete_workflow_async(workflow_id: str, delete_children: bool = False) -> None:
        await aio.run_sync(DBOS.delete_workflow, workflow_id, delete_children)

    @staticmethod
    async def delete_workflows_async(
        workflow_ids: list[str], delete_children: bool = False
    ) -> None:
        await aio.run_sync(DBOS.delete_workflows, workflow_ids, delete_children)

    @staticmethod
    async def list_workflows_async(**filters: Any) -> list[WorkflowStatus]:
        """`list_workflows` with the same keyword arguments."""
        return await aio.run_sync(DBOS.list_workflows, **filters)

    @staticmethod
    async def list_queued_workflows_async(**filters: Any) -> list[WorkflowStatus]:
        return await aio.run_sync(DBOS.list_queued_workflows, **filters)

    @staticmethod
    def shutdown(timeout_seconds: float = 5) -> None:
        """Stop taking work and wait up to `timeout_seconds` for running workflows."""
        runtime.reset(timeout_seconds)

    # Communicating --------------------------------------------------------------------------

    @staticmethod
    def send(
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a message to a workflow; exactly once when sent from a workflow, or with an
        idempotency key (what a webhook handler that the sender retries passes)."""
        communication.send(destination_id, message, topic, idempotency_key)

    @staticmethod
    def recv(
        topic: str | None = None,
        timeout_seconds: float = 60,
        form: type[forms.BaseForm] | None = None,
    ) -> Any:
        """In a workflow: wait for and consume the next message on `topic` (None on timeout).

        While it waits, the admin's inbox lists it; with a Django `form` class, a person answers
        with that form there, and the message is its cleaned_data (docs/inbox.md).
        """
        return communication.recv(topic, timeout_seconds, form)

    @staticmethod
    async def send_async(
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        await aio.run_sync(communication.send, destination_id, message, topic, idempotency_key)

    @staticmethod
    async def recv_async(
        topic: str | None = None,
        timeout_seconds: float = 60,
        form: type[forms.BaseForm] | None = None,
    ) -> Any:
        """In an async workflow: `recv`, waiting on the event loop."""
        return await communication.recv_async(topic, timeout_seconds, form)

    @staticmethod
    def set_event(key: str, value: Any) -> None:
        """In a workflow: publish `value` under `key` (the latest value wins)."""
        communication.set_event(key, value)

    @staticmethod
    async def set_event_async(key: str, value: Any) -> None:
        await aio.run_sync(communication.set_event, key, value)

    @staticmethod
    def get_event(workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Wait for a workflow's event and return its value (None on timeout)."""
        return communication.get_event(workflow_id, key, timeout_seconds)

    @staticmethod
    async def get_event_async(workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """`get_event` for coroutines (async workflows and views)."""
        return await communication.get_event_async(workflow_id, key, timeout_seconds)

    @staticmethod
    def sleep(seconds: float) -> None:
        """Sleep durably: after a restart, the workflow only sleeps for what is left."""
        timers.sleep(seconds)

    @staticmethod
    async def sleep_async(seconds: float) -> None:
        """`sleep` for async workflows (outside one, a plain `asyncio.sleep`)."""
        await timers.sleep_async(seconds)

    @staticmethod
    def write_stream(key: str, value: Any) -> None:
        """In a workflow: append `value` to the stream `key`."""
        communication.write_stream(key, value)

    @staticmethod
    async def write_stream_async(key: str, value: Any) -> None:
        await aio.run_sync(communication.write_stream, key, value)

    @staticmethod
    async def close_stream_async(key: str) -> None:
        await aio.run_sync(communication.close_stream, key)

    @staticmethod
    def close_stream(key: str) -> None:
        """In a workflow: close the stream `key`; readers stop after its last value."""
        communication.close_stream(key)

    @staticmethod
    def read_stream(workflow_id: str, key: str) -> Iterator[Any]:
        """Yield a workflow's stream values in order until it is closed or the workflow ends."""
        return communication.read_stream(workflow_id, key)

    @staticmethod
    def read_stream_async(workflow_id: str, key: str) -> AsyncIterator[Any]:
        """`read_stream` for coroutines: `async for value in DBOS.read_stream_async(...)`."""
        return communication.read_stream_async(workflow_id, key)

    # Inside a workflow ----------------------------------------------------------------------

    @staticmethod
    def patch(name: str) -> bool:
        """True where this execution runs the new code (docs/versioning-and-recovery.md)."""
        return patches.patch(name)

    @staticmethod
    def deprecate_patch(name: str) -> bool:
        """Retire a patch once no execution of the old code is left; always True."""
        return patches.deprecate_patch(name)

    @classproperty
    def workflow_id(cls) -> str | None:
        """The id of the workflow running here (also inside its steps), else None."""
        ctx = current_workflow.get()
        return ctx.workflow_id if ctx is not None else None

    @classproperty
    def step_id(cls) -> int | None:
        """The function id of the step or transaction running here, else None."""
        ctx = current_workflow.get()
        return ctx.function_id if ctx is not None and ctx.in_step else None


class _StartOptionsBlock:
    """A `with` block that changes the options of the workflows started inside it."""

    def _apply(self, options: StartOptions) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        outer = start_options.get()
        options = outer.nested() if outer is not None else StartOptions()
        self._apply(options)
        self._token = start_options.set(options)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        start_options.reset(self._token)


class SetWorkflowTimeout(_StartOptionsBlock):
    """Give the workflows started in this block a timeout, from start (or dequeue) to end.

    Past it, a workflow is cancelled, with its children. Inside a workflow,
    `SetWorkflowTimeout(None)` starts children detached: neither the parent's deadline nor its
    cancellation reaches them.
    """

    def __init__(self, timeout_seconds: float | None):
        if timeout_seconds is not None:
            validation.duration(timeout_seconds, "timeout_seconds")
        self.timeout_seconds = timeout_seconds

    def _apply(self, options: StartOptions) -> None:
        options.timeout_seconds = self.timeout_seconds
        options.timeout_set = True


class SetWorkflowAttributes(_StartOptionsBlock):
    """Record these attributes (a dict of JSON values) on every workflow started or enqueued in
    this block, to find them with `DBOS.list_workflows(attributes=...)`.

    A workflow's children do not inherit them. An inner block replaces an outer one's
    attributes; `SetWorkflowAttributes(None)` starts workflows without any.
    """

    def __init__(self, attributes: dict[str, Any] | None):
        self.attributes = None if attributes is None else validation.attributes(attributes)

    def _apply(self, options: StartOptions) -> None:
        options.attributes = self.attributes


class SetEnqueueOptions(_StartOptionsBlock):
    """Options for the workflows enqueued in this block."""

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
        app_version: str | None = None,
    ):
        self.options = {
            key: value
            for key, value in {
                "deduplication_id": deduplication_id,
                "priority": priority,
                "queue_partition_key": queue_partition_key,
                "delay_seconds": delay_seconds,
                "app_version": app_version,
            }.items()
            if value is not None
        }

    def _apply(self, options: StartOptions) -> None:
        options.enqueue.update(self.options)


class Queue:
    """A queue of workflows, dispatched by `rundbosworker` processes within its limits.

    `concurrency` bounds the workflows of the queue running at once across all workers (per
    partition on a partitioned queue), `worker_concurrency` those running in one worker, and
    `limiter={"limit": n, "period": seconds}` the starts per period across all workers.
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: dict[str, float] | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ):
        try:
            validation.name(name, "queue name", allow_empty=False)
        except DBOSInvalidArgumentError as exc:
            raise DBOSConfigurationError(str(exc)) from None
        for option, value in (
            ("concurrency", concurrency),
            ("worker_concurrency", worker_concurrency),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise DBOSConfigurationError(
                    f"Queue {name!r}: {option} must be a positive integer, not {value!r}."
                )
        rate_limit: int | None = None
        rate_period: float | None = None
        if limiter is not None:
            if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
                raise DBOSConfigurationError(
                    f'Queue {name!r}: limiter must be {{"limit": starts, "period": seconds}}.'
                )
            limit, rate_period = limiter["limit"], limiter["period"]
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise DBOSConfigurationError(
                    f"Queue {name!r}: the limiter's limit must be a positive integer."
                )
            rate_limit = limit
            _positive(f"Queue {name!r}: the limiter's period", rate_period)
        self.spec = registry.register_queue(
            registry.QueueSpec(
                name=name,
                concurrency=concurrency,
                worker_concurrency=worker_concurrency,
                rate_limit=rate_limit,
                rate_period_seconds=float(rate_period) if rate_period is not None else None,
                priority_enabled=bool(priority_enabled),
                partition_queue=bool(partition_queue),
            )
        )

    @classmethod
    def _declared(cls, name: str) -> Queue:
        """The queue declared in code as `name` (DBOSNotRegisteredError when none is), for the
        surfaces that are given a queue's name."""
        queue = cls.__new__(cls)  # declared already: nothing to check or register again
        queue.spec = registry.get_queue(name)
        return queue

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"

    def enqueue(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        """Enqueue a workflow; a worker runs it when the queue's limits allow."""
        entry = _registered(func, "workflow")
        handle = workflows.start(entry, args, kwargs, inline=False, queue=self.spec)
        enqueue.ensure_row(self.spec)
        return handle

    async def enqueue_async(
        self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[Any]:
        """`enqueue` for coroutines."""
        entry = _registered(func, "workflow")
        handle = await workflows.start_async(entry, args, kwargs, inline=False, queue=self.spec)
        await aio.run_sync(enqueue.ensure_row, self.spec)
        return handle


class SetWorkflowID(_StartOptionsBlock):
    """Use the given id, an idempotency key, for the next workflow started in this block."""

    def __init__(self, workflow_id: str):
        self.workflow_id = validation.workflow_id(workflow_id)

    def _apply(self, options: StartOptions) -> None:
        options.workflow_id = self.workflow_id
