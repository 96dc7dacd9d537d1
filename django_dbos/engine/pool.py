"""The per-process thread pool that runs started, dispatched and recovered workflows."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.db import close_old_connections, connections

logger = logging.getLogger("django_dbos")

_STOP = object()


def tidy_connections() -> None:
    """Close this thread's connections if broken or past CONN_MAX_AGE, as Django does after a
    request; never raise (when the database is away, the next query reconnects)."""
    try:
        close_old_connections()
    except Exception:
        logger.debug("Could not tidy this thread's database connections.", exc_info=True)


class WorkflowThreadPool:
    """A bounded pool of threads, each with its own Django connection.

    Unlike `ThreadPoolExecutor`, each thread tidies its connection whenever it runs out of work
    (as Django does after a request) and closes it when the pool shuts down, so a pool never
    leaks connections, and test databases can be dropped afterwards.
    """

    def __init__(self, max_threads: int, name: str = "dbos-workflow"):
        self.max_threads = max_threads
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
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
                item = self._queue.get()
                if item is _STOP:
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
                    # Before going idle, as Django after a request. Not between two workflows
                    # of a burst: it makes the next query check the connection, a round trip
                    # each (a connection broken meanwhile fails its workflow's first statement,
                    # and the workflow waits for the database and replays).
                    tidy_connections()
                with self._lock:
                    self._busy -= 1
                    self._idle += 1
        finally:
            connections.close_all()

    def shutdown(self, timeout: float) -> bool:
        """Stop accepting work, let queued and running workflows finish; True if all did."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)
