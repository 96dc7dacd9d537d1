"""One thread per process that calls functions at given times.

Workflow deadlines and the wake-up times of parked workflows are timers; a worker may hold
100,000 of them. A `threading.Timer` each would be a thread each, so they share one heap and
one thread instead. The functions run on that thread: they must be quick (they wake or submit
work) or close the database connections they open.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from . import runtime

logger = logging.getLogger("django_dbos")

COMPACT_AFTER = 1024


class Alarm:
    """A pending call; `cancel()` stops it if it has not run yet."""

    __slots__ = ("args", "at", "cancelled", "function", "owner")

    def __init__(self, owner: AlarmThread, at: float, function: Callable[..., Any], args: tuple):
        self.owner = owner
        self.at = at
        self.function = function
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.owner.cancelled += 1


class AlarmThread:
    """A heap of alarms ordered by time (`time.time()` seconds), fired by one daemon thread."""

    STOP_ORDER = 2  # last: the workflows stopped before it may still cancel their timers

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        # Cancelled alarms stay in the heap until due; once they are most of it, it is rebuilt.
        self.cancelled = 0

    def call_at(self, at: float, function: Callable[..., Any], *args: Any) -> Alarm:
        alarm = Alarm(self, at, function, args)
        with self._changed:
            if self.cancelled > COMPACT_AFTER and self.cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self.cancelled = 0
            heapq.heappush(self._heap, (at, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dbos-alarms", daemon=True)
                self._thread.start()
            if self._heap[0][2] is alarm:
                self._changed.notify()
        return alarm

    def stop(self, timeout: float) -> bool:
        """Drop the pending alarms and end the thread (the engine is stopping)."""
        with self._changed:
            self._stopped = True
            self._heap.clear()
            self._changed.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        return True

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.time()):
                    timeout = self._heap[0][0] - time.time() if self._heap else None
                    self._changed.wait(timeout)
                if self._stopped:
                    return
                alarm = heapq.heappop(self._heap)[2]
                if alarm.cancelled:
                    self.cancelled -= 1
                    continue
            try:
                alarm.function(*alarm.args)
            except Exception:
                logger.exception("A DBOS timer failed: %r", alarm.function)


def current() -> AlarmThread:
    """This process's alarm thread (a part of its engine)."""
    return runtime.part(AlarmThread)
