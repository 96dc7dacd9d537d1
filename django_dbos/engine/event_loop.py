"""The engine's own event loop, on a thread of its own, where started, dequeued and recovered
async workflows run."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

logger = logging.getLogger("django_dbos")

T = TypeVar("T")


class EventLoopThread:
    """An event loop on a daemon thread of its own, where started, dequeued and recovered async
    workflows run (one called directly runs on its caller's loop instead)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._tasks: set[Future[Any]] = set()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Run a coroutine on the loop; return a future of its result, usable from any thread."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        with self._lock:
            self._tasks.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._tasks.discard(future)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="dbos-event-loop", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop

    def shutdown(self, timeout: float) -> bool:
        """Wait for the running async workflows, then stop the loop; True if all finished."""
        with self._lock:
            loop, tasks = self._loop, list(self._tasks)
            self._loop = None
        if loop is None:
            return True
        finished = True
        for task in tasks:
            try:
                task.result(timeout)
            except TimeoutError:
                finished = False
            except BaseException:
                logger.debug("An async workflow ended with an error at shutdown.", exc_info=True)
        # The threads of asyncio.to_thread() end, and their database connections with them.
        closing = asyncio.run_coroutine_threadsafe(loop.shutdown_default_executor(), loop)
        try:
            closing.result(timeout)
        except TimeoutError:
            finished = False
        loop.call_soon_threadsafe(loop.stop)
        return finished
