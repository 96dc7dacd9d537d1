"""Wake-ups for threads that wait on the database: messages, events, streams, results.

A waiter subscribes to a key, checks the database, and sleeps on its event until it is woken or
a safety-net interval passes, then checks again. Subscribing before checking means a wake-up can
never fall between the check and the sleep.

On PostgreSQL one thread per process LISTENs on a dedicated psycopg connection (not a Django one,
which Django may close or reset) and wakes the subscribers of each NOTIFY payload. After every
(re)connect it wakes everybody, because notifications sent while it was away are lost. On SQLite,
writes made by this process wake local waiters directly, and waiters poll for the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar, overload

import psycopg
from django.db import connections

from .. import conf
from . import listen_target, runtime, system_db
from .system_db import CHANNEL

logger = logging.getLogger("django_dbos")

SQLITE_POLL_SECONDS = 0.05

key = system_db.wake_key  # the key of one thing to wait for, also the NOTIFY payload


class Wakeable(Protocol):
    """A waiting thread's event, or a parked workflow."""

    def set(self) -> None: ...


W = TypeVar("W", bound=Wakeable)


class Notifier:
    """Subscriptions of this process's waiting threads, and the PostgreSQL listener."""

    STOP_ORDER = 1  # after the executor: its workflows wait on it until they end

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Wakeable]] = {}
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = threading.Event()
        # No listener on PostgreSQL: the waits poll (DBOS["LISTEN_DATABASE"]).
        self._polls = False

    @overload
    def subscribe(self, *wake_keys: str) -> AbstractContextManager[threading.Event]: ...

    @overload
    def subscribe(self, *wake_keys: str, waiter: W) -> AbstractContextManager[W]: ...

    def subscribe(
        self, *wake_keys: str, waiter: Wakeable | None = None
    ) -> AbstractContextManager[Wakeable]:
        """Register a waiter (a new threading.Event by default), woken by any of `wake_keys`,
        for the duration of the block."""
        return self._subscription(threading.Event() if waiter is None else waiter, wake_keys)

    @contextmanager
    def _subscription(self, waiter: Wakeable, wake_keys: Iterable[str]) -> Iterator[Wakeable]:
        self.add(waiter, wake_keys)
        try:
            yield waiter
        finally:
            self.remove(waiter, wake_keys)

    def add(self, waiter: Wakeable, wake_keys: Iterable[str]) -> None:
        """Call `waiter.set()` whenever one of `wake_keys` is announced, until `remove()`."""
        self._ensure_listening()
        with self._lock:
            for wake_key in wake_keys:
                self._waiters.setdefault(wake_key, set()).add(waiter)

    def remove(self, waiter: Wakeable, wake_keys: Iterable[str]) -> None:
        with self._lock:
            for wake_key in wake_keys:
                waiters = self._waiters.get(wake_key)
                if waiters is not None:
                    waiters.discard(waiter)
                    if not waiters:
                        del self._waiters[wake_key]

    def wait(self, event: threading.Event, remaining: float | None) -> None:
        """Sleep until woken, the safety-net interval passes, or `remaining` runs out."""
        interval = self.poll_interval()
        event.wait(interval if remaining is None else max(0.0, min(interval, remaining)))
        event.clear()

    def poll_interval(self) -> float:
        if connections[system_db.alias()].vendor == "postgresql":
            return float(conf.get("POLL_SECONDS"))
        return SQLITE_POLL_SECONDS

    def wake(self, wake_key: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(wake_key, ()))
        for waiter in waiters:
            waiter.set()

    def wake_all(self) -> None:
        with self._lock:
            waiters = {waiter for waiters in self._waiters.values() for waiter in waiters}
        for waiter in waiters:
            waiter.set()

    def _ensure_listening(self) -> None:
        if self._listener is not None or self._polls:
            return
        alias = system_db.alias()
        if connections[alias].vendor != "postgresql":
            return
        with self._lock:
            if self._listener is not None or self._polls:
                return
            params = listen_target.listen_parameters(alias)
            if params is None:
                self._polls = True
                if conf.get("LISTEN_DATABASE") is None:
                    logger.warning(
                        "The DBOS database %r goes through a transaction pooler "
                        "(DISABLE_SERVER_SIDE_CURSORS), where LISTEN receives nothing: waits "
                        'poll every %s s. Set DBOS["LISTEN_DATABASE"] to a direct connection.',
                        alias,
                        conf.get("POLL_SECONDS"),
                    )
                return
            self._listener = threading.Thread(
                target=self._listen_forever, args=(params,), name="dbos-notifier", daemon=True
            )
            self._listener.start()

    def _listen_forever(self, params: dict) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 0.1
                    self.wake_all()
                    while not self._stop.is_set():
                        for notification in listener.notifies(timeout=1.0):
                            if self._stop.is_set():
                                break
                            self.wake(notification.payload)
            except Exception as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                logger.warning("DBOS notifier lost its connection (%s); reconnecting.", exc)
                self.wake_all()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.listening.clear()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the listener and wake every waiter (they read the database once more)."""
        self._stop.set()
        if self._listener is not None and self._listener.is_alive():
            try:
                system_db.announce("stop")  # wakes the listener now, not at its next timeout
            except Exception:
                logger.debug("Could not wake the notifier to stop it.", exc_info=True)
            self._listener.join(timeout=min(timeout, 5.0))
        self.wake_all()
        return True


def current() -> Notifier:
    """This process's notifier (a part of its engine)."""
    return runtime.part(Notifier)
