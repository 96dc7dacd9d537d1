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
from collections.abc import Callable
from typing import Any, TypeVar

from . import runtime
from .executor import ProcessExecutor

logger = logging.getLogger("django_dbos")

T = TypeVar("T")


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
    pool = runtime.part(ProcessExecutor).database_pool
    return await asyncio.wrap_future(pool.submit(context.run, call))
