"""Parked workflows: long waits that give their thread back.

A workflow that would block in `sleep`, `recv` or `get_event` for longer than
PARK_WAITS_OVER_SECONDS unwinds instead (the wait raises `Parked`). Its row stays PENDING and
this process's parking lot remembers what wakes it: a notifier key (a message, an event, a
cancellation) or its wake-up time. When one comes, the lot submits it to the pool again, and it
re-runs from the start, replaying what it recorded, as after a recovery. So a worker waits on
100,000 workflows with a handful of threads.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections

from . import alarms, clock, notifier, runtime, system_db

logger = logging.getLogger("django_dbos")

# Without LISTEN/NOTIFY (SQLite), a parked workflow looks again this often (real seconds), for
# messages and events written by other processes.
SQLITE_RECHECK_SECONDS = 1.0

# What `execute()` returns for a workflow that parked instead of finishing.
PARKED: Any = object()

_PARKING, _PARKED, _WOKEN, _RELEASED = range(4)


class ParkedWorkflow:
    """One workflow in the lot: what wakes it, and how to run it again."""

    __slots__ = ("lot", "resume", "state", "timers", "wake_keys", "workflow_id")

    def __init__(
        self,
        lot: ParkingLot,
        workflow_id: str,
        wake_keys: tuple[str, ...],
        resume: Callable[[], Any],
    ):
        self.lot = lot
        self.workflow_id = workflow_id
        self.wake_keys = wake_keys
        self.resume = resume
        self.state = _PARKING
        self.timers: list[clock.Timer] = []

    def set(self) -> None:
        """Called by the notifier or a timer: something it waits for may have happened."""
        self.lot.wake(self)


class Parked(BaseException):
    """Internal: unwinds the body of a workflow that parked. A BaseException, so that a user's
    `except Exception:` cannot swallow it (their `finally:` blocks do run, as on recovery)."""

    def __init__(self, workflow: ParkedWorkflow):
        super().__init__(workflow.workflow_id)
        self.workflow = workflow


class ParkingLot:
    """The parked workflows of this process.

    A workflow enters the lot before its wait looks at the database for the last time, so a
    wake-up that comes while its body is still unwinding is kept (state _WOKEN) and acted on
    as soon as the thread lets go (`settle`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parked: dict[str, ParkedWorkflow] = {}

    def enter(
        self,
        workflow_id: str,
        wake_keys: Iterable[str],
        wake_at: datetime.datetime | None,
        resume: Callable[[], Any],
    ) -> ParkedWorkflow:
        """Start listening for what wakes a workflow that is about to park."""
        parked = ParkedWorkflow(self, workflow_id, tuple(wake_keys), resume)
        with self._lock:
            self._parked[workflow_id] = parked
        notifier.current().add(parked, parked.wake_keys)
        if wake_at is not None:
            parked.timers.append(clock.call_at(wake_at, parked.set))
        if connections[system_db.alias()].vendor != "postgresql":
            recheck_at = time.time() + SQLITE_RECHECK_SECONDS
            parked.timers.append(alarms.current().call_at(recheck_at, parked.set))
        return parked

    def settle(self, parked: ParkedWorkflow) -> None:
        """The workflow's thread let go: from now on a wake-up resumes it (or now, if one came)."""
        with self._lock:
            woken = parked.state == _WOKEN
            if parked.state == _PARKING:
                parked.state = _PARKED
        if woken:
            self._resume(parked)

    def wake(self, parked: ParkedWorkflow) -> None:
        with self._lock:
            state = parked.state
            if state in (_PARKING, _PARKED):
                parked.state = _WOKEN
        if state == _PARKED:
            self._resume(parked)

    def leave(self, parked: ParkedWorkflow) -> None:
        """Forget a workflow: it did not park after all, it resumes, or the process stops."""
        with self._lock:
            parked.state = _RELEASED
            if self._parked.get(parked.workflow_id) is parked:
                del self._parked[parked.workflow_id]
        notifier.current().remove(parked, parked.wake_keys)
        for timer in parked.timers:
            timer.cancel()

    def _resume(self, parked: ParkedWorkflow) -> None:
        self.leave(parked)
        try:
            parked.resume()
        except Exception:  # the pool is shut down: the workflow is left to recovery
            logger.warning("Could not resume parked workflow %s.", parked.workflow_id)

    def __len__(self) -> int:
        return len(self._parked)

    def workflow_ids(self) -> set[str]:
        with self._lock:
            return set(self._parked)

    def clear(self) -> None:
        """Forget every parked workflow (at shutdown): they stay PENDING, for recovery."""
        with self._lock:
            parked = list(self._parked.values())
        for workflow in parked:
            self.leave(workflow)


def current() -> ParkingLot:
    """This process's parking lot (a part of its engine)."""
    return runtime.part(ParkingLot)
