"""What the Django surfaces (the admin, its dashboard, the JSON API, the checks, the Tasks
backend) ask of django-dbos beyond the `DBOS` facade: thin calls into the engine, so that no
surface imports the engine or reads the system tables itself."""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from django.db.models import QuerySet

from . import conf
from .engine import deletion, metrics, registry, scheduler, system_db
from .models import FINISHED as FINISHED_STATUSES
from .models import Executor, Schedule, WorkflowStatus
from .validators import cron_error

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# The admin's querysets, on the system database (DBOS["DATABASE"]).


def database() -> str:
    """The alias of the database that holds the system tables."""
    return system_db.alias()


def workflow_rows() -> QuerySet[WorkflowStatus]:
    return system_db.workflow_rows()


def schedule_rows() -> QuerySet[Schedule]:
    return system_db.schedule_rows()


def process_metrics_registry() -> CollectorRegistry | None:
    """This process's Prometheus registry of django-dbos series (a `CollectorRegistry`), for
    the metrics view to expose beside its table gauges; None when metrics are off (no
    prometheus_client, or DBOS["METRICS"] False)."""
    return metrics.process_registry()


# The dashboard's figures.


@dataclass(frozen=True)
class Minute:
    at: datetime.datetime
    finished: int
    failed: int


@dataclass(frozen=True)
class ExecutorState:
    executor: Executor
    alive: bool
    seconds_ago: int


def counts_by_status() -> dict[str, int]:
    """How many workflows are in each status (every status, zero included)."""
    return system_db.counts_by_status()


def last_hour() -> list[Minute]:
    """Workflows finished and failed in each minute of the last hour (oldest first)."""
    now = system_db.now().replace(second=0, microsecond=0)
    since = now - datetime.timedelta(minutes=59)
    by_minute = system_db.finished_by_minute(since)
    minutes = []
    for offset in range(60):
        at = since + datetime.timedelta(minutes=offset)
        finished, failed = by_minute.get(at, (0, 0))
        minutes.append(Minute(at, finished, failed))
    return minutes


def executors() -> list[ExecutorState]:
    """Every executor with its last heartbeat and whether it still counts as alive."""
    timeout = _executor_timeout()
    now = system_db.now()
    return [
        ExecutorState(
            executor=row,
            alive=now - row.last_heartbeat < timeout,
            seconds_ago=max(0, round((now - row.last_heartbeat).total_seconds())),
        )
        for row in system_db.executor_rows()
    ]


def live_executor_count() -> int:
    """Executors with a recent heartbeat; raises DatabaseError if the database does not answer."""
    return system_db.live_executor_count(system_db.now() - _executor_timeout())


def _executor_timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(conf.get("EXECUTOR_TIMEOUT_SECONDS")))


# Pruning, for `manage.py dbos workflow prune`.

# The statuses of a workflow that runs no more (unless resumed): those that can be deleted.
FINISHED = [str(status) for status in FINISHED_STATUSES]


def prune_workflows(
    cutoff: datetime.datetime, *, status: str | None = None, dry_run: bool = False
) -> int:
    """DBOS.garbage_collect(cutoff), kept to one finished status if given; with dry_run, count
    what it would delete and delete nothing."""
    return deletion.garbage_collect(cutoff, None, status=status, dry_run=dry_run)


# What the code declares.

# The limits of a queue, as declared in code, stored in its row and edited in the admin.
QUEUE_LIMITS = registry.QUEUE_LIMITS


def workflow_names() -> list[str]:
    """The names of every registered workflow, sorted."""
    return sorted(entry.name for entry in registry.workflows())


def schedule_queue_names() -> set[str]:
    """The queues a schedule may run on: declared in code, or recorded by a worker."""
    return scheduler.known_queues()


def schedule_errors() -> dict[str, str]:
    """The @DBOS.scheduled cron expressions that cannot be parsed: workflow name -> error."""
    return {
        name: error
        for name, cron in registry.schedules().items()
        if (error := cron_error(cron)) is not None
    }


def sqlite_begins_deferred(settings_dict: dict[str, Any]) -> bool:
    """Whether a SQLite database's transactions begin without the write lock."""
    return system_db.begins_deferred(settings_dict)


@dataclass(frozen=True)
class RegisteredWorkflow:
    """A workflow looked up by name, as the JSON API starts it."""

    name: str
    http: bool  # declared with @DBOS.workflow(http=True)
    signature: inspect.Signature | None
    function: Callable[..., Any]  # what DBOS.start_workflow and queue.enqueue take


def workflow_named(name: str) -> RegisteredWorkflow:
    """The workflow registered under `name`; DBOSNotRegisteredError if there is none."""
    entry = registry.get_workflow(name)
    try:
        signature: inspect.Signature | None = inspect.signature(entry.func)
    except (TypeError, ValueError):
        signature = None

    # The registry keeps the undecorated function; the public API finds a workflow through
    # `__dbos__`, so this stand-in is started as the workflow itself.
    def workflow(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError

    workflow.__qualname__ = entry.name
    workflow.__dbos__ = entry  # type: ignore[attr-defined]  # not in a function's type
    return RegisteredWorkflow(
        name=entry.name,
        http=bool(entry.options.get("http")),
        signature=signature,
        function=workflow,
    )


def task_times(workflow_id: str) -> dict[str, Any]:
    """What a Django task's result needs of its workflow besides its WorkflowStatus: when it
    started, and the time it was delayed to (`started_at`, `dispatch_after`)."""
    return dict(
        system_db.workflow_rows()
        .filter(workflow_id=workflow_id)
        .values("started_at", "dispatch_after")
        .get()
    )
