"""The workflow that runs Django tasks, and the queues of the DBOS task backends in TASKS.

The app's ready() imports this module, so that every process, a worker above all, knows the
workflow and the queues' limits even if it never instantiated the task backend (a worker only
imports a task's module when it runs the task). It reads TASKS as plain settings: the Tasks
framework itself (`django.tasks`, or `django_tasks` on Django 5.2) is imported by `tasks.py`,
whose functions this module loads by path only when a task runs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.dispatch import receiver
from django.utils.module_loading import import_string

from .api import DBOS, Queue
from .errors import DBOSConfigurationError, DBOSException
from .signals import workflow_finished

TASK_WORKFLOW = "django_dbos.task"
BACKEND_PATH = "django_dbos.tasks.DBOSTaskBackend"
DEFAULT_QUEUES = ["default"]  # the framework's default for QUEUES
# The Queue() arguments a backend's OPTIONS may set: not the flags, as a task queue always has
# priorities (every Django task has one) and never partitions.
QUEUE_LIMITS = {"concurrency", "worker_concurrency", "limiter"}


# The backend's functions that need the Tasks framework, loaded by path when a task runs (as
# Django loads a backend from TASKS), so that this module does not import the framework.
RUN_PATH = "django_dbos.tasks.run"
SEND_FINISHED_PATH = "django_dbos.tasks.send_finished"


@DBOS.workflow(name=TASK_WORKFLOW)
def run_task(module_path: str, args: list[Any], kwargs: dict[str, Any], backend: str) -> Any:
    """Run the task found at `module_path`; its DBOS steps and transactions are recorded."""
    return import_string(RUN_PATH)(module_path, args, kwargs, backend)


@receiver(workflow_finished, sender=TASK_WORKFLOW)
def _send_task_finished(workflow_id: str, status: str, **kwargs: Any) -> None:
    import_string(SEND_FINISHED_PATH)(workflow_id, status)


def queue_limits(options: Any) -> dict[str, dict[str, Any]]:
    """Return `OPTIONS["queues"]` of a backend: queue name -> Queue() limits."""
    if not isinstance(options, dict) or set(options) - {"queues"}:
        raise DBOSConfigurationError(
            'OPTIONS must be a dict whose only key is "queues", for example '
            '{"queues": {"emails": {"concurrency": 4}}}.'
        )
    queues = options.get("queues", {})
    if not isinstance(queues, dict) or not all(
        isinstance(limits, dict) and not set(limits) - QUEUE_LIMITS for limits in queues.values()
    ):
        raise DBOSConfigurationError(
            'OPTIONS["queues"] must map each queue name to a dict of limits, with the keys '
            f"{', '.join(sorted(QUEUE_LIMITS))} (as Queue() takes them)."
        )
    return queues


def declare_queue(name: str, limits: dict[str, Any]) -> Queue:
    """Declare the DBOS queue of a task queue: with priorities, as Django tasks all have one."""
    return Queue(name, priority_enabled=True, **limits)


def _backends() -> dict[str, dict[str, Any]]:
    tasks = getattr(settings, "TASKS", None)
    if not isinstance(tasks, dict):
        return {}
    return {
        alias: params
        for alias, params in tasks.items()
        if isinstance(params, dict) and params.get("BACKEND") == BACKEND_PATH
    }


def declare_queues() -> list[CheckMessage]:
    """Declare every queue the DBOS task backends name; return the errors as check messages."""
    errors: list[CheckMessage] = []
    for alias, params in _backends().items():
        allowed = params.get("QUEUES", DEFAULT_QUEUES)
        try:
            limits = queue_limits(params.get("OPTIONS", {}))
        except DBOSConfigurationError as exc:
            errors.append(Error(f"TASKS[{alias!r}]: {exc}", id="django_dbos.tasks.E001"))
            continue
        for name in sorted({*allowed, *limits}):
            try:
                declare_queue(name, limits.get(name, {}))
            except DBOSException as exc:
                errors.append(Error(f"TASKS[{alias!r}]: {exc}", id="django_dbos.tasks.E002"))
        unused = sorted(set(limits) - set(allowed))
        if allowed and unused:
            errors.append(
                Warning(
                    f'TASKS[{alias!r}]: OPTIONS["queues"] declares {", ".join(unused)}, not '
                    "listed in QUEUES: no task can use them.",
                    hint=f'Add them to TASKS[{alias!r}]["QUEUES"], or remove their limits.',
                    id="django_dbos.tasks.W001",
                )
            )
    return errors


@register(Tags.compatibility)
def check_task_backends(**kwargs: Any) -> list[CheckMessage]:
    """Report the DBOS task backends' bad OPTIONS, and declared queues no task may use."""
    return declare_queues()


# Declared now, so that a worker syncs their limits when it starts. Bad settings are reported by
# the check above (`manage.py check`), never raised while the app registry loads.
declare_queues()
