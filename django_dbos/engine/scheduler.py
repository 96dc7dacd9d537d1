"""Cron schedules: the scheduler thread of a worker, backfills, and the schedule operations.

Each tick of a schedule enqueues one workflow whose id is derived from the schedule and the tick
time, so when several workers fire the same tick, the first insert wins and the others attach to
it: exactly one execution per tick, however many workers run.
"""

from __future__ import annotations

import datetime
import logging
import threading
import uuid
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from croniter import croniter

from ..errors import DBOSConfigurationError, DBOSInvalidArgumentError, DBOSNotRegisteredError
from ..types import WorkflowHandle
from ..validators import cron_error
from . import clock, registry, system_db
from .context import StartOptions, start_options
from .enqueue import INTERNAL_QUEUE
from .pool import tidy_connections

logger = logging.getLogger("django_dbos.worker")

REFRESH_SECONDS = 2.0
# A backfill enqueues at most this many ticks: a per-second schedule down for a day is not
# worth 86,400 workflows, and a bound keeps a worker's start quick.
MAX_BACKFILL_TICKS = 1000


@dataclass(frozen=True)
class Plan:
    """One schedule as the scheduler runs it: from code (@DBOS.scheduled) or from the table."""

    name: str
    workflow_name: str
    cron: str
    timezone: str = ""
    queue_name: str | None = None
    context: Any = None
    from_code: bool = False

    @property
    def timing(self) -> tuple[str, str, str]:
        return (self.name, self.cron, self.timezone)

    @property
    def zone(self) -> datetime.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else datetime.UTC

    def ticks_after(self, moment: datetime.datetime) -> Iterator[datetime.datetime]:
        """The schedule's tick times strictly after `moment`, in its time zone."""
        cron = croniter(
            self.cron,
            moment.astimezone(self.zone),
            second_at_beginning=len(self.cron.split()) == 6,
        )
        while True:
            yield cron.get_next(datetime.datetime)

    def workflow_id(self, tick: datetime.datetime) -> str:
        return f"sched-{self.name}-{tick.astimezone(datetime.UTC).isoformat()}"


def code_plans() -> list[Plan]:
    return [
        Plan(name=name, workflow_name=name, cron=cron, from_code=True)
        for name, cron in registry.schedules().items()
        if cron_error(cron) is None
    ]


def plan_of(row: Any) -> Plan:
    """The plan of a row of the Schedule table."""
    return Plan(
        name=row.name,
        workflow_name=row.workflow_name,
        cron=row.cron,
        timezone=row.timezone,
        queue_name=row.queue_name,
        context=row.context,
    )


def table_plans() -> list[Plan]:
    return [plan_of(row) for row in system_db.active_schedules() if cron_error(row.cron) is None]


def fire(
    plan: Plan, tick: datetime.datetime, *, workflow_id: str | None = None
) -> WorkflowHandle[Any]:
    """Enqueue the run of one tick (a no-op when that tick was enqueued already)."""
    from .workflows import start

    entry = registry.get_workflow(plan.workflow_name)
    queue = (
        registry.get_queue(plan.queue_name)
        if plan.queue_name in {q.name for q in registry.queues()}
        else registry.QueueSpec(plan.queue_name or INTERNAL_QUEUE)
    )
    second = plan.context if not plan.from_code else clock.now().astimezone(plan.zone)
    token = start_options.set(StartOptions(workflow_id=workflow_id or plan.workflow_id(tick)))
    try:
        return start(entry, (tick, second), {}, inline=False, queue=queue)
    finally:
        start_options.reset(token)


def backfill(
    plan: Plan, start: datetime.datetime, end: datetime.datetime
) -> list[WorkflowHandle[Any]]:
    """Enqueue every tick from `start` to `end` (both included), idempotently."""
    handles: list[WorkflowHandle[Any]] = []
    for tick in plan.ticks_after(start - datetime.timedelta(microseconds=1)):
        if tick > end or len(handles) >= MAX_BACKFILL_TICKS:
            break
        handles.append(fire(plan, tick))
    return handles


class Scheduler:
    """Fires the ticks of every active schedule, in a worker, until stopped."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, str, str], datetime.datetime] = {}
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        self._backfill_missed()
        plans: list[Plan] = []
        refreshed_at: datetime.datetime | None = None
        while not stop.is_set():
            now = clock.now()
            try:
                if refreshed_at is None or (now - refreshed_at).total_seconds() > REFRESH_SECONDS:
                    plans, refreshed_at = code_plans() + table_plans(), now
                self._fire_due(plans, now)
            except Exception:
                logger.exception("The scheduler failed; retrying.")
                tidy_connections()
            pause = REFRESH_SECONDS
            if self._next:
                pause = min(pause, (min(self._next.values()) - clock.now()).total_seconds())
            clock.wait(self._wake, max(0.0, pause))
            self._wake.clear()

    def _fire_due(self, plans: list[Plan], now: datetime.datetime) -> None:
        # Keyed by what decides the ticks: an edited cron or time zone starts afresh.
        self._next = {
            plan.timing: self._next.get(plan.timing) or next(plan.ticks_after(now))
            for plan in plans
        }
        for plan in plans:
            tick = self._next[plan.timing]
            if tick > now:
                continue
            due = tick
            try:
                for due in [tick, *self._catch_up(plan, tick, now)]:
                    fire(plan, due)
                if not plan.from_code:
                    system_db.schedule_fired(plan.name, due)
            except Exception as exc:  # one broken schedule must not stop the others
                logger.error("Schedule %s could not run its tick %s: %s", plan.name, due, exc)
            self._next[plan.timing] = next(plan.ticks_after(due))

    @staticmethod
    def _catch_up(
        plan: Plan, tick: datetime.datetime, now: datetime.datetime
    ) -> list[datetime.datetime]:
        """Ticks after `tick` already due (the worker was busy): fired too, never skipped."""
        due: list[datetime.datetime] = []
        for later in plan.ticks_after(tick):
            if later > now or len(due) >= MAX_BACKFILL_TICKS:
                break
            due.append(later)
        return due

    def _backfill_missed(self) -> None:
        """Run the ticks missed while no worker ran, for schedules that ask for it."""
        now = clock.now()
        for row in system_db.active_schedules():
            if row.automatic_backfill and row.last_fired_at and cron_error(row.cron) is None:
                start = row.last_fired_at + datetime.timedelta(microseconds=1)
                handles = backfill(plan_of(row), start, now)
                if handles:
                    logger.info("Schedule %s: backfilled %d missed ticks.", row.name, len(handles))
                    system_db.schedule_fired(row.name, now)


# Operations on schedules (the API) ----------------------------------------------------------


def create(
    name: str,
    workflow_name: str,
    cron: str,
    *,
    context: Any = None,
    automatic_backfill: bool = False,
    cron_timezone: str | None = None,
    queue_name: str | None = None,
) -> system_db.ScheduleRow:
    registry.get_workflow(workflow_name)
    if queue_name is not None and queue_name not in known_queues():
        raise DBOSNotRegisteredError(
            f"There is no queue {queue_name!r}: declare it with Queue({queue_name!r}) first."
        )
    if system_db.get_schedule(name) is not None:
        raise DBOSConfigurationError(f"A schedule named {name!r} exists already.")
    return system_db.create_schedule(
        name=name,
        workflow_name=workflow_name,
        cron=cron,
        timezone=cron_timezone or "",
        context=context,
        automatic_backfill=automatic_backfill,
        queue_name=queue_name,
    )


def known_queues() -> set[str]:
    """Queues a schedule may run on: declared in code, or recorded by a worker."""
    return {q.name for q in registry.queues()} | {q.name for q in system_db.queue_limits()}


def trigger(name: str) -> WorkflowHandle[Any]:
    """Run a schedule's workflow now, once, with the current time as its scheduled time."""
    plan = _table_plan(name)
    now = clock.now().astimezone(plan.zone)
    return fire(plan, now, workflow_id=f"sched-{plan.name}-trigger-{uuid.uuid4()}")


def backfill_schedule(
    name: str, start: datetime.datetime, end: datetime.datetime
) -> list[WorkflowHandle[Any]]:
    plan = _table_plan(name)
    if start.tzinfo is None or end.tzinfo is None:
        raise DBOSInvalidArgumentError(
            "backfill_schedule needs timezone-aware start and end datetimes."
        )
    return backfill(plan, start, end)


def _table_plan(name: str) -> Plan:
    row = system_db.get_schedule(name)
    if row is None:
        raise DBOSNotRegisteredError(f"There is no schedule named {name!r}.")
    error = cron_error(row.cron)
    if error is not None:
        raise DBOSConfigurationError(error)
    return plan_of(row)
