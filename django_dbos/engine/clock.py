"""The engine's clock: what durable waits, deadlines, delays and cron ticks take as "now".

By default it is the real clock, bound directly (`clock.now` *is* `timezone.now`), so reading
it costs nothing more than before. A test may install another clock: `django_dbos.testing`
installs a frozen one that moves only when told. Callers therefore always write
`clock.now()`, never `from .clock import now`.

Only time that a workflow records or waits for goes through here: durable sleeps, recv/get_event
deadlines inside workflows, workflow timeouts, delayed enqueues (with the dequeue times that rate
windows count), and cron ticks. Heartbeats, the recovery of dead executors, checkpoint timestamps
and a caller's own patience (`handle.get_result(timeout)`, `get_event` outside a workflow) stay
on the real clock: they are about processes and people, which no test can fast-forward.
"""

from __future__ import annotations

import datetime
import threading
import time as _time
from collections.abc import Callable
from typing import Any, Protocol

from django.utils import timezone

from . import alarms

# Waits on a notifier subscription pass the notifier's `wait(event, timeout)` as `waiter`.
Waiter = Callable[[threading.Event, float | None], Any]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What a replacement clock provides (see `django_dbos.testing.FrozenClock`)."""

    def now(self) -> datetime.datetime: ...

    def time(self) -> float: ...

    def wait(
        self, event: threading.Event, timeout: float | None, waiter: Waiter | None = None
    ) -> None: ...

    def call_at(
        self, moment: datetime.datetime, function: Callable[..., Any], *args: Any
    ) -> Timer: ...

    def sleep(self, seconds: float) -> None: ...


def _wait(event: threading.Event, timeout: float | None, waiter: Waiter | None = None) -> None:
    """Wait until `event` is set or `timeout` seconds pass (None: no limit)."""
    if waiter is None:
        event.wait(timeout)
    else:
        waiter(event, timeout)


def _call_at(moment: datetime.datetime, function: Callable[..., Any], *args: Any) -> Timer:
    """Call `function(*args)` at `moment` (at once if it has passed), on the alarm thread."""
    return alarms.current().call_at(moment.timestamp(), function, *args)


now: Callable[[], datetime.datetime] = timezone.now
time: Callable[[], float] = _time.time
wait = _wait
call_at = _call_at
sleep: Callable[[float], None] = _time.sleep

_installed: Clock | None = None
_install_lock = threading.Lock()


def install(clock: Clock) -> None:
    """Make `clock` the engine's clock, until `uninstall()`."""
    global now, time, wait, call_at, sleep, _installed
    with _install_lock:
        if _installed is not None:
            raise RuntimeError("Another clock is installed already; uninstall it first.")
        _installed = clock
        now, time, wait = clock.now, clock.time, clock.wait
        call_at, sleep = clock.call_at, clock.sleep


def uninstall() -> None:
    """Put the real clock back."""
    global now, time, wait, call_at, sleep, _installed
    with _install_lock:
        _installed = None
        now, time, wait, call_at, sleep = timezone.now, _time.time, _wait, _call_at, _time.sleep


def installed() -> Clock | None:
    """The clock a test installed, or None when the engine runs on the real clock."""
    return _installed
