"""DBOSClient: enqueue and manage workflows from code that does not have them (another service,
a script, another Django project sharing the database)."""

from __future__ import annotations

import datetime
import functools
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, TypedDict, TypeVar

from .api import DBOS
from .engine import (
    after_commit,
    enqueue,
    handles,
    registry,
    serialization,
    system_db,
    tracing,
    validation,
    workflows,
)
from .errors import DBOSInvalidArgumentError, DBOSNotRegisteredError
from .types import QueueStatus, Status, StepInfo, WorkflowHandle, WorkflowStatus

P = ParamSpec("P")
R = TypeVar("R")


class EnqueueOptions(TypedDict, total=False):
    queue_name: str  # required
    workflow_name: str  # required: the name the workflow is registered under
    workflow_id: str
    priority: int
    deduplication_id: str
    queue_partition_key: str
    delay_seconds: float
    app_version: str
    workflow_timeout: float
    attributes: dict[str, Any]  # as SetWorkflowAttributes records them


def _on_database(
    method: Callable[Concatenate[DBOSClient, P], R],
) -> Callable[Concatenate[DBOSClient, P], R]:
    @functools.wraps(method)
    def wrapper(self: DBOSClient, *args: P.args, **kwargs: P.kwargs) -> R:
        with system_db.using(self.database):
            return method(self, *args, **kwargs)

    return wrapper


class DBOSClient:
    """Enqueue workflows by name and manage them, given only the database of the system tables.

    Workflows enqueued without `app_version` are run by a worker of any application version.
    """

    def __init__(self, database: str | None = None):
        from . import conf

        self.database = database or conf.get("DATABASE")

    def __repr__(self) -> str:
        return f"<DBOSClient {self.database}>"

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue the workflow `options["workflow_name"]` on `options["queue_name"]`."""
        return self._enqueue(options, args, kwargs)

    @_on_database
    def _enqueue(
        self,
        options: EnqueueOptions,
        args: tuple,
        kwargs: dict,
        debounce: Mapping[str, Any] | None = None,
    ) -> WorkflowHandle[Any]:
        """`enqueue`, with the enqueue options a DebouncerClient sets itself (`debounce`: the
        deduplication id, the delay and the debounce deadline)."""
        missing = {"queue_name", "workflow_name"} - set(options)
        if missing:
            raise DBOSInvalidArgumentError(f"enqueue() options need {', '.join(sorted(missing))}.")
        name = validation.name(options["workflow_name"], "workflow_name", allow_empty=False)
        queue_name = validation.name(options["queue_name"], "queue_name", allow_empty=False)
        workflow_id = validation.workflow_id(
            options["workflow_id"] if "workflow_id" in options else str(uuid.uuid4())
        )
        inputs = serialization.dumps_arguments(args, kwargs)
        timeout = options.get("workflow_timeout")
        attributes = options.get("attributes")
        enqueue_options = {k: v for k, v in options.items() if k in enqueue.ENQUEUE_OPTIONS}
        enqueue_options.update(debounce or {})
        row = system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=name,
            status=Status.ENQUEUED,
            inputs=inputs,
            executor_id=None,
            timeout_ms=None
            if timeout is None
            else int(validation.duration(timeout, "workflow_timeout") * 1000),
            trace_context=tracing.carrier(),
            attributes=None if attributes is None else validation.attributes(attributes),
            **enqueue.enqueue_fields(
                queue_name, self._queue(queue_name), enqueue_options, default_version=None
            ),
        )
        with tracing.enqueue_span(name, workflow_id, queue_name):
            inserted = system_db.insert_workflow(row, wake_key=system_db.QUEUE_ACTIVITY)
        if not inserted:
            workflows.check_existing(row)
        elif after_commit.in_transaction():
            after_commit.start_at_commit(workflow_id)  # workers see it once the caller commits
        return handles.handle(workflow_id, database=self.database)

    def _queue(self, name: str) -> registry.QueueSpec | None:
        """The queue as a worker recorded it, or as this process declares it; None when nothing
        declared it yet (its workers may not have started): the workflow waits for them."""
        for queue in system_db.queue_limits():
            if queue.name == name:
                return queue
        try:
            return registry.get_queue(name)
        except DBOSNotRegisteredError:
            return None

    @_on_database
    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        DBOS.send(destination_id, message, topic, idempotency_key)

    @_on_database
    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        return DBOS.get_event(workflow_id, key, timeout_seconds)

    @_on_database
    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        return handles.handle(
            DBOS.retrieve_workflow(workflow_id).workflow_id, database=self.database
        )

    @_on_database
    def cancel_workflow(self, workflow_id: str) -> None:
        DBOS.cancel_workflow(workflow_id)

    @_on_database
    def resume_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        return handles.handle(DBOS.resume_workflow(workflow_id).workflow_id, database=self.database)

    @_on_database
    def fork_workflow(
        self, workflow_id: str, start_step: int, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        handle = DBOS.fork_workflow(workflow_id, start_step, application_version)
        return handles.handle(handle.workflow_id, database=self.database)

    @_on_database
    def delete_workflow(self, workflow_id: str, delete_children: bool = False) -> None:
        DBOS.delete_workflow(workflow_id, delete_children)

    @_on_database
    def delete_workflows(self, workflow_ids: list[str], delete_children: bool = False) -> None:
        DBOS.delete_workflows(workflow_ids, delete_children)

    @_on_database
    def garbage_collect(
        self, cutoff: datetime.datetime | None = None, rows_threshold: int | None = None
    ) -> int:
        return DBOS.garbage_collect(cutoff, rows_threshold)

    @_on_database
    def update_workflow_attributes(
        self, workflow_id: str, attributes: dict[str, Any] | None, merge: bool = False
    ) -> None:
        DBOS.update_workflow_attributes(workflow_id, attributes, merge)

    @_on_database
    def list_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        return DBOS.list_workflows(**filters)

    @_on_database
    def list_queued_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        return DBOS.list_queued_workflows(**filters)

    @_on_database
    def list_queues(self) -> list[QueueStatus]:
        return DBOS.list_queues()

    @_on_database
    def export_workflows(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """`DBOS.export_workflows` on this client's database, with the same filters."""
        return DBOS.export_workflows(**filters)

    @_on_database
    def import_workflow(self, record: dict[str, Any]) -> WorkflowHandle[Any]:
        return handles.handle(DBOS.import_workflow(record).workflow_id, database=self.database)

    @_on_database
    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        return DBOS.list_workflow_steps(workflow_id)
