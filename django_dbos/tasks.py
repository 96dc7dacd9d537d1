"""A backend for Django's Tasks framework that runs every task as a durable DBOS workflow.

```python
TASKS = {"default": {"BACKEND": "django_dbos.tasks.DBOSTaskBackend"}}
```

A task is enqueued on the DBOS queue named by its `queue_name`, as the workflow `run_task` of
`task_runner.py`, and run by a `manage.py rundbosworker` process. See docs/tasks.md.

The framework imports this module when a @task is declared, which may be before the app registry
is ready (a models module importing a tasks module): the engine, which needs the models, is
imported inside the functions that use it.
"""

from __future__ import annotations

import traceback
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

import django
from django.utils import timezone
from django.utils.module_loading import import_string

from .errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSMaxRecoveryAttemptsExceededError,
)

if TYPE_CHECKING:
    from .api import Queue
    from .types import WorkflowStatus

# The framework, imported once: built into Django 6, the django-tasks backport on Django 5.2
# (which calls two of the exceptions InvalidTaskError and InvalidTaskBackendError). The type
# checker reads Django 6's: the backport has the same API.
if TYPE_CHECKING or django.VERSION >= (6, 0):
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

# Django runs higher priorities first (-100..100); DBOS runs lower numbers first, from 1.
# dbos = 101 - django maps 100 to 1 and -100 to 201, and the default 0 to 101.
PRIORITY_BASE = 101

# Workflow status -> task status.
TASK_STATUS = {
    "ENQUEUED": TaskResultStatus.READY,
    "PENDING": TaskResultStatus.RUNNING,
    "SUCCESS": TaskResultStatus.SUCCESSFUL,
    "ERROR": TaskResultStatus.FAILED,
    "CANCELLED": TaskResultStatus.FAILED,
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": TaskResultStatus.FAILED,
}
# The errors of workflows that ended without an exception of their own.
STOPPED = {
    "CANCELLED": DBOSAwaitedWorkflowCancelledError("The task's workflow was cancelled."),
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": DBOSMaxRecoveryAttemptsExceededError(
        "The task's workflow was recovered more often than allowed and was stopped."
    ),
}
# DBOS records the executor of a workflow's latest attempt only; `worker_ids` has one entry per
# attempt (the framework counts attempts with it) and this one for the earlier attempts.
EARLIER_WORKER = "unknown"


class DBOSTaskBackend(BaseTaskBackend):
    """Run tasks as DBOS workflows on DBOS queues, dispatched by `rundbosworker` processes."""

    # Can a task be enqueued with run_after? Yes: its workflow is dispatched after that time.
    supports_defer = True
    # Can a task function be a coroutine? No: workflows are sync functions for now.
    supports_async_task = False
    # Can a result be read from any thread or process? Yes: it is the workflow's row.
    supports_get_result = True
    # Are higher priorities run first? Yes: mapped onto DBOS priorities (see PRIORITY_BASE).
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        # Instantiated when a @task is declared, maybe before the app registry is ready: no
        # database access here, and bad OPTIONS are left to the system check.
        super().__init__(alias, params)
        self._queues: dict[str, Queue] = {}

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if not isinstance(task.queue_name, str) or not 0 < len(task.queue_name) <= 255:
            raise InvalidTask("A queue name must be a string of 1 to 255 characters.")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Enqueue the task's workflow (in the caller's transaction, if there is one)."""
        from .api import SetEnqueueOptions
        from .task_runner import run_task

        self.validate_task(task)
        _check_importable(task)
        try:
            args, kwargs = normalize_json(args), normalize_json(kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidTask(
                f"The arguments of task {task.module_path} must be JSON-serializable: {exc}."
            ) from exc
        options: dict[str, Any] = {"priority": PRIORITY_BASE - int(task.priority)}
        if task.run_after is not None:
            delay = task.run_after - timezone.now()
            options["delay_seconds"] = max(delay.total_seconds(), 0.0)
        queue = self._queue(task.queue_name)
        enqueued_at = timezone.now()
        with SetEnqueueOptions(**options):
            handle = queue.enqueue(run_task, task.module_path, args, kwargs, self.alias)
        result: TaskResult = TaskResult(
            task=task,
            id=handle.workflow_id,
            status=TaskResultStatus.READY,
            enqueued_at=enqueued_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """Read a task's result from its workflow; TaskResultDoesNotExist if it has none."""
        return load_result(result_id)

    def _queue(self, name: str) -> Queue:
        from .task_runner import declare_queue, queue_limits

        queue = self._queues.get(name)
        if queue is None:
            try:
                limits = queue_limits(self.options).get(name, {})
                queue = self._queues[name] = declare_queue(name, limits)
            except DBOSException as exc:
                raise InvalidTaskBackend(f"TASKS[{self.alias!r}]: {exc}") from exc
        return queue


def _check_importable(task: Task) -> None:
    """A worker finds a task by its module path: make sure that path leads back to it."""
    try:
        found = import_string(task.module_path)
    except ImportError:
        found = None
    if task.func.__module__ == "__main__" or getattr(found, "func", None) is not task.func:
        raise InvalidTask(
            f"Task {task.module_path} cannot be found by a worker: declare it with @task at the "
            "top level of an importable module, under the name of its function."
        )


# What a result needs of its workflow's row (besides started_at and dispatch_after, which the
# public WorkflowStatus lacks), by the names WorkflowStatus and the model share.
STATUS_FIELDS = (
    "status",
    "created_at",
    "updated_at",
    "executor_id",
    "recovery_attempts",
    "priority",
    "queue_name",
)


def load_result(result_id: str) -> TaskResult:
    """Build the TaskResult of a task's workflow."""
    from .api import DBOS
    from .task_runner import TASK_WORKFLOW

    status = DBOS.get_workflow_status(result_id)
    # A task whose payload expired (DBOS["RETENTION"]) has lost which task it ran, and how.
    if status is None or status.name != TASK_WORKFLOW or status.payload_expired:
        raise TaskResultDoesNotExist(result_id)
    fields = _fields(status)
    # cast: get_workflow_status() loads the input, and a task's workflow always has one.
    module_path, args, kwargs, backend = cast(dict[str, Any], status.input)["args"]
    result = _result(result_id, fields, module_path, args, kwargs, backend)
    _set_outcome(result, status.status, status.error or status.output)
    return result


def _fields(status: WorkflowStatus) -> dict[str, Any]:
    """What a TaskResult needs of its workflow: its status's fields, and when it started and
    was delayed to (which the public WorkflowStatus lacks)."""
    from . import queries

    return {name: getattr(status, name) for name in STATUS_FIELDS} | queries.task_times(
        status.workflow_id
    )


def _result(
    result_id: str,
    fields: dict[str, Any],
    module_path: str,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
) -> TaskResult:
    """Build a TaskResult, without its outcome, from the workflow's fields and inputs."""
    task = import_string(module_path).using(
        priority=PRIORITY_BASE - fields["priority"],
        queue_name=fields["queue_name"],
        run_after=fields["dispatch_after"],
        backend=backend,
    )
    executor_id = fields["executor_id"]
    worker_ids = [EARLIER_WORKER] * fields["recovery_attempts"]
    if executor_id is not None:  # the workflow was claimed: this attempt counts
        worker_ids.append(executor_id)
    return TaskResult(
        task=task,
        id=result_id,
        status=TASK_STATUS[fields["status"]],
        enqueued_at=fields["created_at"],
        started_at=fields["started_at"],
        last_attempted_at=fields["started_at"],
        finished_at=None if fields["status"] in ("ENQUEUED", "PENDING") else fields["updated_at"],
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=[],
        worker_ids=worker_ids,
    )


def _set_outcome(result: TaskResult, status: str, outcome: Any) -> None:
    """Give a finished result its return value, or its error (an exception, as DBOS has it)."""
    if status == "SUCCESS":
        object.__setattr__(result, "_return_value", outcome)
        return
    error = STOPPED.get(status) or outcome
    if isinstance(error, BaseException):
        cls = type(error)
        text = getattr(error, "__dbos_traceback__", None) or "".join(
            traceback.format_exception(error)
        )
        error_path = f"{cls.__module__}.{cls.__qualname__}"
        result.errors.append(TaskError(exception_class_path=error_path, traceback=text))


# The result a task's workflow started with, and its outcome: what the worker sends with
# task_finished right after the workflow's end is recorded, in the same thread and context.
_finishing: ContextVar[tuple[TaskResult, Any]] = ContextVar("django_dbos_task_finishing")


def run(module_path: str, args: list[Any], kwargs: dict[str, Any], backend: str) -> Any:
    """The body of the task workflow: call the task, with its context if it takes one."""
    from .api import DBOS

    task = import_string(module_path)
    workflow_id = cast(str, DBOS.workflow_id)  # set: this is the body of a workflow
    fields = _fields(DBOS.retrieve_workflow(workflow_id).get_status())
    started = _result(workflow_id, fields, module_path, args, kwargs, backend)
    task_started.send(type(task_backends[backend]), task_result=started)
    if task.takes_context:
        args = [TaskContext(task_result=started), *args]
    try:
        value = normalize_json(task.call(*args, **kwargs))
    except BaseException as exc:
        _finishing.set((started, exc))
        raise
    _finishing.set((started, value))
    return value


def send_finished(workflow_id: str, status: str) -> None:
    """Send the framework's task_finished signal for a task whose workflow just ended."""
    started, outcome = _finishing.get((None, None))
    if started is not None and started.id == workflow_id:
        result = replace(started, status=TASK_STATUS[status], finished_at=timezone.now(), errors=[])
        _set_outcome(result, status, outcome)
    else:  # the body did not get as far as calling the task: read what was recorded
        result = load_result(workflow_id)
    task_finished.send(type(result.task.get_backend()), task_result=result)
