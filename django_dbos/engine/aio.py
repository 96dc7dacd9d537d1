"""Async workflows: the engine's event loop, and the bridge to its synchronous database code.

Async workflows and steps run on an event loop, without a thread each. The engine's database
code stays synchronous (Django's connections belong to one thread and refuse to be used from an
event loop), so an async workflow runs each checkpoint on one of a few database threads and
awaits it: it holds no thread while its steps run or while it waits for a message or the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from . import executor

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


class LoopEvent:
    """A notifier subscription for a coroutine: `set()` may come from any thread."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float | None) -> None:
        """Wait until set or `timeout` seconds pass, then clear it for the next wait."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


def on_event_loop() -> bool:
    """Whether this thread is running an event loop (where the database must not be used)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def run_sync(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run synchronous engine code on a database thread, in a copy of this task's context (so
    it sees the current workflow), and await its result."""
    context = contextvars.copy_context()
    call = functools.partial(function, *args, **kwargs)
    pool = executor.current().database_pool
    return await asyncio.wrap_future(pool.submit(context.run, call))
