"""The per-process thread pool that runs started, dispatched and recovered workflows."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.db import connections

logger = logging.getLogger("django_dbos")

# A piece of work for a thread: the future of its result, a function and its arguments.
# A thread takes None as the order to stop.
Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
# An engine thread idle this long closes its connections (the next workflow opens new ones).
IDLE_SECONDS_BEFORE_CLOSING = 60.0


# What psycopg_pool opens at most when Django's OPTIONS["pool"] gives no size (its min_size).
PSYCOPG_POOL_DEFAULT_SIZE = 4


def pool_max_size(settings_dict: dict[str, Any]) -> int | None:
    """The most connections Django's connection pool opens for an alias (OPTIONS["pool"],
    PostgreSQL, Django 5.1+); None when the alias has no pool."""
    options = settings_dict.get("OPTIONS", {}).get("pool")
    if not options:
        return None
    if not isinstance(options, dict):
        options = {}
    min_size = options.get("min_size", PSYCOPG_POOL_DEFAULT_SIZE)
    return int(options.get("max_size") or min_size)


def tidy_connections() -> None:
    """Close this engine thread's connections that are broken or past a positive CONN_MAX_AGE,
    as Django does after a request, but keep them when CONN_MAX_AGE is 0. Never raise.

    A connection from Django's connection pool goes back to the pool instead: keeping it costs
    a slot that another thread may be waiting for, and taking it again is cheap.

    CONN_MAX_AGE = 0 (Django's default) means one connection per request. The engine's threads
    serve no requests and live as long as the process: closing there would make every workflow
    pay a new connection and re-prepare its statements, which costs more than a short workflow
    (500 started workflows ran at a third of the speed). So they keep a healthy connection
    until they have been idle for IDLE_SECONDS_BEFORE_CLOSING, or end.
    """
    for connection in connections.all(initialized_only=True):
        try:
            if pool_max_size(connection.settings_dict) is not None:
                connection.close()
                continue
            if not connection.settings_dict["CONN_MAX_AGE"]:
                connection.close_at = None  # "obsolete" only ever means too old
            connection.close_if_unusable_or_obsolete()
        except Exception:
            logger.debug("Could not tidy a database connection.", exc_info=True)


class WorkflowThreadPool:
    """A bounded pool of threads, each with its own Django connection.

    Unlike `ThreadPoolExecutor`, each thread tidies its connection whenever it runs out of work,
    closes it after a long idle, and closes it when the pool shuts down, so a pool never leaks
    connections, and test databases can be dropped afterwards.
    """

    def __init__(self, max_threads: int, name: str = "dbos-workflow"):
        self.max_threads = max_threads
        self.name = name
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._busy = 0
        self._closed = False

    @property
    def busy(self) -> int:
        """How many workflows this pool is running now."""
        return self._busy

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("The DBOS workflow pool is shut down; no new work is accepted.")
            self._queue.put((future, fn, args))
            if self._idle == 0 and len(self._threads) < self.max_threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1  # that idle thread is spoken for
        return future

    def _work(self) -> None:
        try:
            while True:
                item = self._next_item()
                if item is None:
                    return
                future, fn, args = item
                with self._lock:
                    self._busy += 1
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn(*args))
                    except BaseException as exc:
                        future.set_exception(exc)
                if self._queue.empty():
                    # Before going idle. Not between two workflows of a burst: with health
                    # checks on, it makes the next query check the connection, a round trip
                    # each (a connection broken meanwhile fails its workflow's first statement,
                    # and the workflow waits for the database and replays).
                    tidy_connections()
                with self._lock:
                    self._busy -= 1
                    self._idle += 1
        finally:
            connections.close_all()

    def _next_item(self) -> Work | None:
        """The next piece of work; after a long wait for one, close this thread's connections
        first, so that an idle process holds none."""
        try:
            return self._queue.get(timeout=IDLE_SECONDS_BEFORE_CLOSING)
        except queue.Empty:
            connections.close_all()
            return self._queue.get()

    def shutdown(self, timeout: float) -> bool:
        """Stop accepting work, let queued and running workflows finish; True if all did."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)
