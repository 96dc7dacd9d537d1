"""What the Django surfaces (the admin, its dashboard, the JSON API, the checks, the Tasks
backend) ask of django-dbos beyond the `DBOS` facade: thin calls into the engine, so that no
surface imports the engine or reads the system tables itself."""

from __future__ import annotations

import datetime
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.db.models import QuerySet

from . import conf
from .api import DBOS
from .engine import (
    alert_rules,
    deletion,
    executor,
    listen_target,
    metrics,
    pool,
    registry,
    scheduler,
    system_db,
    upgrade,
)
from .models import FINISHED as FINISHED_STATUSES
from .models import Executor, Schedule, WorkflowStatus
from .types import Alert, FiringAlert, Status, UpgradeBlock, UpgradeCheck, VersionInfo
from .validators import cron_error

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

# The admin's querysets, on the system database (DBOS["DATABASE"]).


def through_transaction_pooler(alias: str) -> bool:
    """Whether a database alias says it goes through a transaction-mode pooler."""
    return listen_target.through_transaction_pooler(alias)


def pool_room(alias: str) -> tuple[int, int] | None:
    """(connections Django's pool for the alias holds at most, connections a worker with
    WORKFLOW_THREADS threads may hold), or None when the alias has no pool."""
    size = pool.pool_max_size(settings.DATABASES[alias])
    if size is None:
        return None
    return size, executor.connections_needed(int(conf.get("WORKFLOW_THREADS")))


def database() -> str:
    """The alias of the database that holds the system tables."""
    return system_db.alias()


def workflow_rows() -> QuerySet[WorkflowStatus]:
    return system_db.workflow_rows()


def with_attributes(
    rows: QuerySet[WorkflowStatus], attributes: dict[str, Any]
) -> QuerySet[WorkflowStatus]:
    """The workflows of `rows` whose attributes contain `attributes` (as list_workflows)."""
    return system_db.containing(rows, attributes)


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


def firing_alerts() -> list[FiringAlert]:
    """The alert rules of DBOS["ALERTS"] that fire now, longest firing first."""
    return system_db.firing_alerts()


def alert_history(limit: int = 20) -> list[Alert]:
    """The last `limit` times an alert rule began or stopped firing, newest first."""
    return system_db.recent_transitions(limit)


def _executor_timeout() -> datetime.timedelta:
    return datetime.timedelta(seconds=float(conf.get("EXECUTOR_TIMEOUT_SECONDS")))


# Monitoring: the metrics endpoint and the health probes (docs/monitoring.md).

# The statuses of a workflow that waits or runs: few rows, read through the status index.
ACTIVE = [str(Status.PENDING), str(Status.ENQUEUED)]


def workflow_counts(statuses: list[str]) -> dict[tuple[str, str], int]:
    """How many workflows of each (status, name) there are, for these statuses only."""
    return system_db.counts_by_status_and_name(statuses)


def stranded_counts() -> dict[str, int]:
    """PENDING or ENQUEUED workflows by application version, of versions no live worker runs."""
    return system_db.stranded_counts(system_db.now() - _executor_timeout())


@dataclass(frozen=True)
class Health:
    """What the probes report: the database answered, and who serves the queued work."""

    live_executors: int
    # Queues with ENQUEUED workflows that no live worker serves: name -> how many wait.
    unserved_queues: dict[str, int]

    def worker_problem(self) -> str | None:
        """Why the queued work is not being served, or None when it is."""
        if not self.unserved_queues:
            return None
        waiting = ", ".join(f"{name} ({n} enqueued)" for name, n in self.unserved_queues.items())
        return f"No live worker serves these queues: {waiting}."


def health(*, worker: bool = False) -> Health:
    """Ask the system database (and, with `worker`, which queued work no live worker serves);
    raises DatabaseError if it does not answer."""
    live_since = system_db.now() - _executor_timeout()
    live = system_db.live_executor_count(live_since)
    unserved = {
        load.name: load.enqueued
        for load in (system_db.queue_statuses([], live_since) if worker else [])
        if load.enqueued and not load.live_workers
    }
    return Health(live_executors=live, unserved_queues=unserved)


# Versions and upgrades (docs/deploying.md), for the admin and `manage.py dbos`.

Upgrade = upgrade.Upgrade


@dataclass(frozen=True)
class VersionState:
    """One application version as the admin's Versions page shows it."""

    version_name: str
    info: VersionInfo | None  # None: a version seen on workflows or executors, never recorded
    live_executors: list[Executor]
    pending: int
    enqueued: int
    stranded: int  # PENDING or ENQUEUED, and no live worker runs this version


def versions() -> list[VersionState]:
    """Every version recorded, run by a live executor or held by in-flight workflows: the
    latest first, then the others newest first (those never recorded last, by name)."""
    since = upgrade.live_since()
    recorded = {info.version_name: info for info in DBOS.list_application_versions()}
    executors = system_db.live_executors_by_version(since)
    in_flight = system_db.in_flight_by_version()
    stranded = system_db.stranded_counts(since)
    names = [*recorded, *sorted({*executors, *(v for v in in_flight if v)} - set(recorded))]
    return [
        VersionState(
            version_name=name,
            info=recorded.get(name),
            live_executors=executors.get(name, []),
            pending=in_flight.get(name, {}).get(Status.PENDING, 0),
            enqueued=in_flight.get(name, {}).get(Status.ENQUEUED, 0),
            stranded=stranded.get(name, 0),
        )
        for name in names
    ]


def upgrade_block(row: WorkflowStatus) -> UpgradeBlock | None:
    """The divergence an upgrade recorded on a workflow's row (the admin's workflow page)."""
    return system_db.upgrade_block(row.upgrade_blocked_at, row.upgrade_checked_version)


def running_version() -> str:
    """The application version of this process's code."""
    return registry.application_version()


def upgrade_stranded(*, from_version: str | None = None, dry_run: bool = False) -> Upgrade:
    """`dbos workflow upgrade`: replay every stranded workflow on this code; move those it
    continues to this code's version (not with dry_run, which writes nothing)."""
    return upgrade.upgrade(from_version=from_version, dry_run=dry_run)


def check_deploy() -> list[UpgradeCheck]:
    """`dbos check-deploy`: the in-flight workflows this code cannot continue. Every connection
    to the system database is read-only meanwhile, so the check writes nothing."""
    with system_db.read_only():
        return upgrade.check_deploy()


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


# The alert rules as written, for the checks.


def alert_rule_problems(index: int, rule: Any) -> list[str]:
    """What is wrong with the rule at this position of DBOS["ALERTS"]["RULES"], in sentences."""
    return alert_rules.rule_problems(index, rule)


def alert_duplicate_names(rules: list[Any]) -> list[str]:
    """The names that more than one alert rule has."""
    return alert_rules.duplicate_names(rules)


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
