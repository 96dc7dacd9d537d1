"""The `dbos_worker` fixture: a real worker on a thread of the test process, drained on demand."""

from __future__ import annotations

import datetime
import threading
import time
from typing import Any

from django.db.models import Q, QuerySet

from ..engine import clock, handles, registry, scheduler, system_db
from ..engine.dispatcher import Dispatcher
from ..engine.enqueue import INTERNAL_QUEUE
from ..signals import workflow_finished
from ..types import Status
from ..worker import Worker
from . import clock as test_clock

# Sweeps of the scheduler per call, each firing up to scheduler.MAX_BACKFILL_TICKS per schedule.
MAX_TICK_SWEEPS = 100


class InProcessWorker:
    """Dispatches queued workflows on this process's workflow threads, as `rundbosworker` does.

    Recovery is off (this process is the test's own executor: there is nothing dead to recover
    unless the test makes it so, and `recover()` then runs recovery). Cron ticks are fired by
    `drain()` and by the `dbos_clock` when it moves, on the clock's time, rather than by a
    scheduler thread, so that a test controls when they happen.
    """

    def __init__(self, queues: list[str] | None = None):
        self.queues = queues
        self.worker = Worker(queues=queues, recovery=False, scheduler=False, shutdown_timeout=10)
        self._thread: threading.Thread | None = None
        self._scheduler = scheduler.Scheduler()
        self._ticks_lock = threading.Lock()
        self._finished: list[str] = []
        self._finished_lock = threading.Lock()

    # Starting and stopping -------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> InProcessWorker:
        workflow_finished.connect(self._note_finished, weak=False, dispatch_uid=self._uid)
        self._thread = threading.Thread(
            target=self.worker.run, name="dbos-test-worker", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.worker.dispatcher is None:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The in-process DBOS worker did not start.")
            time.sleep(0.005)
        self._scheduler._backfill_missed()
        self.fire_due_ticks()
        test_clock.listeners.append(self)
        return self

    def stop(self) -> None:
        if self in test_clock.listeners:
            test_clock.listeners.remove(self)
        workflow_finished.disconnect(dispatch_uid=self._uid)
        if self._thread is None:
            return
        self.worker.stop()
        self._thread.join(30)
        if self._thread.is_alive():
            raise RuntimeError("The in-process DBOS worker did not stop within 30 s.")
        self._thread = None

    @property
    def _uid(self) -> str:
        return f"django_dbos.testing.worker-{id(self)}"

    def _note_finished(self, sender: Any, workflow_id: str, **kwargs: Any) -> None:
        with self._finished_lock:
            self._finished.append(workflow_id)

    # Draining --------------------------------------------------------------------------------

    def drain(self, timeout: float = 30.0) -> list[Any]:
        """Run queued work and due cron ticks until every queue is idle; return the handles of
        the queued workflows that finished since the last drain, in the order they finished.

        Idle means: nothing due is waiting (work delayed past the clock's time is not due), and
        nothing dequeued is still running, except, on a frozen clock, workflows that wait for the
        clock to move (a durable sleep). Raises TimeoutError, saying what is still busy, when
        `timeout` seconds pass first (a rate limit on a frozen clock holds work until the clock
        is advanced).
        """
        dispatcher = self._dispatcher()
        deadline = time.monotonic() + timeout
        idle_looks = 0
        while idle_looks < 2:  # idle twice in a row: a workflow that just ended woke nothing
            self.fire_due_ticks()
            dispatcher.wake()
            idle_looks = idle_looks + 1 if self._idle() else 0
            if idle_looks < 2:
                if time.monotonic() > deadline:
                    raise TimeoutError(self._busy_report(timeout))
                time.sleep(0.01)
        with self._finished_lock:
            finished, self._finished = self._finished, []
        queued = set(
            system_db.workflow_rows()
            .filter(workflow_id__in=finished, queue_name__isnull=False)
            .values_list("workflow_id", flat=True)
        )
        return [handles.handle(workflow_id) for workflow_id in finished if workflow_id in queued]

    def _dispatcher(self) -> Dispatcher:
        dispatcher = self.worker.dispatcher
        if dispatcher is None or self._thread is None:
            raise RuntimeError("The in-process DBOS worker is not running.")
        return dispatcher

    def _served(self) -> QuerySet[system_db.WorkflowRow]:
        """This worker's queued workflows of its own application version (or of none)."""
        if self.queues:
            names = {*self.queues, INTERNAL_QUEUE}
        else:
            names = {queue.name for queue in registry.queues()}
            names |= {queue.name for queue in system_db.queue_limits()} | {INTERNAL_QUEUE}
        version = registry.application_version()
        return (
            system_db.workflow_rows()
            .filter(queue_name__in=names)
            .filter(Q(application_version=version) | Q(application_version__isnull=True))
        )

    def _due(self) -> QuerySet[system_db.WorkflowRow]:
        return self._served().filter(
            Q(dispatch_after__isnull=True) | Q(dispatch_after__lte=clock.now()),
            status=Status.ENQUEUED,
        )

    def _running(self) -> QuerySet[system_db.WorkflowRow]:
        executor_id = self._dispatcher().process.executor_id
        return self._served().filter(status=Status.PENDING, executor_id=executor_id)

    def _idle(self) -> bool:
        """Nothing due, and nothing dequeued still running, unless it waits on a frozen clock."""
        if self._due().exists():
            return False
        running = set(self._running().values_list("workflow_id", flat=True))
        frozen = clock.installed()
        waiting = frozen.parked_workflows() if isinstance(frozen, test_clock.FrozenClock) else set()
        # A workflow that just ended may still count as in flight: not idle until it does not.
        return running <= waiting and self._dispatcher().in_flight <= len(running)

    def _busy_report(self, timeout: float) -> str:
        lines = [f"The queues were not idle after {timeout} s:"]
        for label, rows in (("due, not started", self._due()), ("running", self._running())):
            for row in rows.order_by("created_at")[:10]:
                lines.append(f"  {label}: {row.workflow_id} ({row.name}) on queue {row.queue_name}")
        if clock.installed() is not None:
            lines.append(
                "The clock is frozen: a rate limit or a workflow waiting for time only moves on "
                "when dbos_clock.advance() is called."
            )
        return "\n".join(lines)

    # Cron ticks, on the engine's clock -------------------------------------------------------

    def fire_due_ticks(self, now: datetime.datetime | None = None) -> None:
        """Enqueue every cron tick due by `now` (default: the clock's time) not fired yet."""
        now = now or clock.now()
        with self._ticks_lock:
            for _ in range(MAX_TICK_SWEEPS):
                plans = scheduler.code_plans() + scheduler.table_plans()
                self._scheduler._fire_due(plans, now)
                if all(tick > now for tick in self._scheduler._next.values()):
                    break

    # What the dbos_clock tells its listeners -------------------------------------------------

    def clock_changed(self) -> None:
        """The clock was frozen or released: count ticks afresh from its time."""
        with self._ticks_lock:
            self._scheduler = scheduler.Scheduler()
        self.fire_due_ticks()

    def before_advance(self, now: datetime.datetime) -> None:
        self.fire_due_ticks(now)

    def after_advance(self, now: datetime.datetime) -> None:
        self.fire_due_ticks(now)
        self._dispatcher().wake()

    def has_due_work(self) -> bool:
        return self._thread is not None and self._due().exists()
