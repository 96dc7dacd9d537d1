"""The engine of this process: one object that holds every part of the engine with state.

The parts (the executor with its threads, the notifier, the parking lot, the alarm thread, the
futures of the workflows running here, the queue rows written) are made on first use, and all
made anew in a forked child, since threads and connections do not survive a fork. Stopping and
forgetting the engine (`reset`) is the one hook that DBOS.shutdown and the testing tools use.

This module knows no part by name, so that every module of the engine can reach its parts
through it without an import cycle.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol, TypeVar, cast, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Stoppable(Protocol):
    """A part with threads to stop; `STOP_ORDER` says when (lower first)."""

    STOP_ORDER: int

    def stop(self, timeout: float) -> bool:
        """Stop within `timeout` seconds; False if workflows it ran were left unfinished (a
        part that runs no workflows, such as the notifier, returns True)."""


class Engine:
    """The parts of the engine of one process, each made on first use."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._parts: dict[type, object] = {}
        self._lock = threading.Lock()

    def part(self, kind: type[T]) -> T:
        """This process's instance of `kind`, made (with no arguments) on first use."""
        part = self._parts.get(kind)
        if part is None:
            with self._lock:
                part = self._parts.get(kind)
                if part is None:
                    part = self._parts[kind] = kind()
        return cast(T, part)

    def made(self, kind: type[T]) -> T | None:
        """This process's instance of `kind` if one was made, without making one."""
        return cast(T | None, self._parts.get(kind))

    def stop(self, timeout: float) -> bool:
        """Stop the parts that run threads, in their order; True if all work finished in time."""
        with self._lock:
            parts = [part for part in self._parts.values() if isinstance(part, Stoppable)]
        deadline = time.monotonic() + timeout
        finished = True
        for part in sorted(parts, key=lambda part: part.STOP_ORDER):
            finished = part.stop(max(0.0, deadline - time.monotonic())) and finished
        return finished


_engine: Engine | None = None
_engine_lock = threading.Lock()


def current() -> Engine:
    """This process's engine (a new one in a forked child)."""
    engine = _engine
    if engine is None or engine.pid != os.getpid():
        engine = _replace(None)
    return engine


def part(kind: type[T]) -> T:
    """This process's instance of an engine part: `runtime.part(Notifier)`."""
    return current().part(kind)


def reset(timeout: float) -> bool:
    """Stop this process's engine and forget it: the next use starts afresh. True if every
    running workflow finished within `timeout` seconds (the rest are left to recovery)."""
    engine = _engine
    finished = True
    if engine is not None and engine.pid == os.getpid():
        finished = engine.stop(timeout)
    _replace(engine)
    return finished


def _replace(expected: Engine | None) -> Engine:
    """Put a new engine in place of `expected` (None: of one from another process)."""
    global _engine
    with _engine_lock:
        engine = _engine
        if engine is None or engine is expected or engine.pid != os.getpid():
            engine = _engine = Engine()
        return engine
