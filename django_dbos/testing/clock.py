"""A clock that moves only when told, so that a test skips days of durable time at once.

`FrozenClock` replaces the engine's clock (`django_dbos.engine.clock`) while a test holds time
still; `ClockControl` is the `dbos_clock` fixture around it. Advancing wakes everything that
waits for time: durable sleeps, recv/get_event deadlines, workflow timeouts, delayed enqueues and
the cron ticks of a `dbos_worker`.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from django.db.models import Count
from django.utils import timezone

from ..engine import clock, executor, handles, notifier, parking, system_db
from ..engine.clock import Waiter
from ..engine.context import current_workflow
from ..errors import DBOSInvalidArgumentError
from ..types import Status


class AdvanceListener(Protocol):
    """Something acting on clock time in the test process (the `dbos_worker` fires cron ticks)."""

    def clock_changed(self) -> None: ...

    def before_advance(self, now: datetime.datetime) -> None: ...

    def after_advance(self, now: datetime.datetime) -> None: ...

    def has_due_work(self) -> bool: ...


# The in-process workers of the running test, told when the clock is frozen, moved or released.
listeners: list[AdvanceListener] = []


class _FrozenTimer:
    """A timer (a workflow's deadline) that fires when the frozen clock is advanced past it."""

    def __init__(self, at: datetime.datetime, function: Callable[..., Any], args: tuple):
        self.at = at
        self.function = function
        self.args = args
        self.cancelled = False
        self._real: threading.Timer | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._real is not None:
            self._real.cancel()

    def fire(self) -> threading.Thread | None:
        """Run the function on a thread of its own, as a real timer would."""
        if self.cancelled:
            return None
        thread = threading.Thread(
            target=self.function, args=self.args, name="dbos-frozen-timer", daemon=True
        )
        thread.start()
        return thread

    def go_real(self, seconds: float) -> None:
        """Become a real timer, due in `seconds` (when the clock is released)."""
        if not self.cancelled:
            self._real = threading.Timer(max(0.0, seconds), self.function, self.args)
            self._real.daemon = True
            self._real.start()


class FrozenClock:
    """The engine's clock while a test holds time still: only `advance()` moves it.

    Every wait on this clock registers its event; an advance sets them all (and wakes every
    notifier subscription), so each waiter looks at the new time at once. A workflow waiting on
    it is "parked": `ClockControl.advance` waits until every running workflow is parked before
    and after moving the time.
    """

    def __init__(self, start: datetime.datetime):
        self._now = start
        self._lock = threading.Lock()
        self._waiting: Counter[threading.Event] = Counter()
        self._parked: dict[int, tuple[str, int]] = {}  # thread -> (workflow id, generation)
        self._generation = 0
        self._seen: dict[int, int] = {}  # thread -> the generation it last read the time in
        self._timers: list[_FrozenTimer] = []

    # The engine's clock interface (django_dbos.engine.clock.Clock) ----------------------------

    def now(self) -> datetime.datetime:
        with self._lock:
            self._seen[threading.get_ident()] = self._generation
            return self._now

    def time(self) -> float:
        return self.now().timestamp()

    def wait(
        self, event: threading.Event, timeout: float | None, waiter: Waiter | None = None
    ) -> None:
        if timeout is not None and timeout <= 0:
            return
        ctx = current_workflow.get()
        thread = threading.get_ident()
        with self._lock:
            if self._seen.get(thread, self._generation) != self._generation:
                return  # the time moved since this thread read it: let it look again
            self._waiting[event] += 1
            if ctx is not None:
                self._parked[thread] = (ctx.workflow_id, self._generation)
        try:
            # Clock time passes only in advance(), which sets the event. A notifier's waiter
            # still returns after its real safety-net interval, for the caller to look again.
            if waiter is None:
                event.wait()
            else:
                waiter(event, None)
        finally:
            with self._lock:
                self._waiting[event] -= 1
                if not self._waiting[event]:
                    del self._waiting[event]
                self._parked.pop(thread, None)

    def call_at(
        self, moment: datetime.datetime, function: Callable[..., Any], *args: Any
    ) -> _FrozenTimer:
        timer = _FrozenTimer(moment, function, args)
        with self._lock:
            due = moment <= self._now
            if not due:
                self._timers.append(timer)
        if due:
            timer.fire()
        return timer

    def sleep(self, seconds: float) -> None:
        until = self.now() + datetime.timedelta(seconds=seconds)
        event = threading.Event()
        while (remaining := (until - self.now()).total_seconds()) > 0:
            self.wait(event, remaining)
            event.clear()

    # Moving it -----------------------------------------------------------------------------

    def advance(self, delta: datetime.timedelta) -> None:
        """Move the time forward, fire the timers it makes due, and wake every waiter."""
        with self._lock:
            self._now += delta
            self._generation += 1
            due = sorted((t for t in self._timers if t.at <= self._now), key=lambda t: t.at)
            self._timers = [t for t in self._timers if t.at > self._now and not t.cancelled]
        for thread in [timer.fire() for timer in due]:
            if thread is not None:
                thread.join(10)
        self._wake_everyone()

    def release(self) -> None:
        """After the clock is uninstalled: pending timers become real ones, waiters look again."""
        with self._lock:
            timers, self._timers = self._timers, []
            now = self._now
        for timer in timers:
            timer.go_real((timer.at - now).total_seconds())
        self._wake_everyone()

    def _wake_everyone(self) -> None:
        with self._lock:
            events = list(self._waiting)
        for event in events:
            event.set()
        notifier.current().wake_all()

    def parked_workflows(self) -> set[str]:
        """Workflows waiting on this clock since its latest advance, or parked by the engine
        (their wake-up time is a timer of this clock)."""
        with self._lock:
            waiting = {
                workflow_id
                for workflow_id, generation in self._parked.values()
                if generation == self._generation
            }
        return waiting | parking.current().workflow_ids()


class ClockControl:
    """The `dbos_clock` fixture: freeze the engine's clock, then move it by hand.

    with dbos_clock.frozen():
        handle = DBOS.start_workflow(remind_in_three_days, user.pk)
        dbos_clock.advance(days=3)
        assert handle.get_result(timeout=5) == "reminded"
    """

    #: How long advance() waits for the workflows running in this process to reach a durable
    #: wait (or finish), before and after moving the time.
    settle_timeout = 10.0
    #: A workflow that is neither parked nor finished, while no operation is recorded for this
    #: long, is taken as blocked on something else (a child's result, a slow step).
    quiet_seconds = 0.2

    def __init__(self) -> None:
        self._frozen: FrozenClock | None = None

    @contextmanager
    def frozen(self, at: datetime.datetime | None = None) -> Iterator[ClockControl]:
        """Hold the engine's time still until the block ends, at `at` or else at the current
        whole second (whole seconds keep durable deadlines exact: a sleep of 3 days then ends
        exactly when the clock is advanced by 3 days)."""
        if self._frozen is not None:
            raise RuntimeError("The clock is frozen already.")
        if at is not None and timezone.is_naive(at):
            raise DBOSInvalidArgumentError("frozen(at=...) needs a timezone-aware datetime.")
        frozen = FrozenClock(at or timezone.now().replace(microsecond=0))
        clock.install(frozen)
        self._frozen = frozen
        _tell_listeners(lambda listener: listener.clock_changed())
        try:
            yield self
        finally:
            self.release()

    def release(self) -> None:
        """Give the engine its real clock back (the end of `frozen()`, or of the test)."""
        frozen, self._frozen = self._frozen, None
        if frozen is None:
            return
        if clock.installed() is frozen:
            clock.uninstall()
        frozen.release()
        _tell_listeners(lambda listener: listener.clock_changed())

    @property
    def is_frozen(self) -> bool:
        return self._frozen is not None

    def now(self) -> datetime.datetime:
        """The engine's time now (frozen or not)."""
        return clock.now()

    def advance(
        self, delta: datetime.timedelta | None = None, **kwargs: float
    ) -> datetime.datetime:
        """Move the frozen time forward, by a timedelta or by its keywords (`days=3`).

        First waits until the workflows running in this process wait on the clock (so that a
        workflow started just before is asleep, not still on its way there); then moves the
        time, fires the deadlines and cron ticks it passes, wakes every durable wait, and waits
        until the woken workflows wait again or finish. Returns the new time.
        """
        frozen = self._frozen
        if frozen is None:
            raise RuntimeError(
                "The clock is not frozen: advance it inside `with dbos_clock.frozen():`."
            )
        if delta is None:
            delta = datetime.timedelta(**kwargs)
        elif kwargs:
            raise TypeError("Give advance() a timedelta or its keywords, not both.")
        if delta <= datetime.timedelta(0):
            raise DBOSInvalidArgumentError(
                f"The clock only moves forward; {delta} is not a step forward."
            )
        self.settle()
        before = frozen.now()
        _tell_listeners(lambda listener: listener.before_advance(before))
        frozen.advance(delta)
        after = frozen.now()
        _tell_listeners(lambda listener: listener.after_advance(after))
        self.settle()
        return after

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every workflow running in this process waits on the frozen clock or has
        finished, and no queued work is due; False if that did not happen within `timeout`."""
        frozen = self._frozen
        deadline = time.monotonic() + (self.settle_timeout if timeout is None else timeout)
        progress, progress_at = None, time.monotonic()
        while True:
            parked = frozen.parked_workflows() if frozen is not None else set()
            busy = _running_workflows() - parked
            if not busy and not any(listener.has_due_work() for listener in list(listeners)):
                return True
            now = time.monotonic()
            seen = _progress()
            if seen != progress:
                progress, progress_at = seen, now
            elif now - progress_at >= self.quiet_seconds:
                return True  # nothing moves: what is left waits for something else
            if now >= deadline:
                return False
            time.sleep(0.005)


def _tell_listeners(call: Callable[[AdvanceListener], None]) -> None:
    for listener in list(listeners):
        call(listener)


def _running_workflows() -> set[str]:
    """Workflows this process runs (inline, started, dequeued or recovered), including those
    whose row is written but whose thread has not begun yet."""
    running = handles.running().ids()
    mine = (
        system_db.workflow_rows()
        .filter(status=Status.PENDING, executor_id=executor.current().executor_id)
        .values_list("workflow_id", flat=True)
    )
    return running | set(mine)


def _progress() -> tuple:
    """A fingerprint of the system tables that changes whenever a workflow makes progress."""
    operations = system_db.operation_rows().count()
    statuses = (
        system_db.workflow_rows()
        .values_list("status")
        .annotate(count=Count("workflow_id"))
        .order_by("status")
    )
    return operations, tuple(statuses)
