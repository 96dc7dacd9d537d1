"""One object per OS process: the engine's threads and their state do not survive a fork."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """Holds an object made on first use in each process (again in a forked child)."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._lock = threading.Lock()
        self._made: tuple[int, T] | None = None

    def get(self) -> T:
        made = self._made
        if made is None or made[0] != os.getpid():
            with self._lock:
                made = self._made
                if made is None or made[0] != os.getpid():
                    made = self._made = (os.getpid(), self._factory())
        return made[1]

    def forget(self) -> T | None:
        """Drop this process's object (the next `get` makes a new one); return it."""
        with self._lock:
            made, self._made = self._made, None
        return made[1] if made is not None and made[0] == os.getpid() else None
