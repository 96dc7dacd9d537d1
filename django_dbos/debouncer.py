"""Debouncer and DebouncerClient: run a workflow once a burst of calls with one key is over."""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar

from .api import Queue, _registered
from .client import DBOSClient, EnqueueOptions
from .engine import aio, debounce, enqueue, handles, registry, system_db, validation
from .errors import DBOSInvalidArgumentError
from .types import WorkflowHandle

P = ParamSpec("P")
R = TypeVar("R")


def _queue_name(queue: Queue | str | None) -> str | None:
    if queue is None or isinstance(queue, str):
        return queue
    return queue.name


def _function(workflow: Callable[..., Any]) -> Callable[..., Any]:
    if isinstance(workflow, types.MethodType):
        raise DBOSInvalidArgumentError(
            f"{workflow.__qualname__} is a method: only workflow functions may be debounced."
        )
    return workflow


class Debouncer(Generic[P, R]):
    """Start a workflow once calls with one key stop coming (as DBOS Transact's Debouncer).

    Calls of `debounce(key, period, ...)` within `period` seconds of the last call with that key
    make one burst: one workflow, enqueued delayed, which starts `period` seconds after the last
    call (and no later than `debounce_timeout_sec` after the first), with the last call's
    arguments. Every call returns a handle to it, in any process. Once a worker took the
    workflow, the next call starts a new burst.
    """

    def __init__(
        self,
        workflow: Callable[P, Any],
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ):
        self.entry = _registered(_function(workflow), "workflow")
        self.target = debounce.Debounce.checked(
            self.entry.name,
            _queue_name(queue) or enqueue.INTERNAL_QUEUE,
            debounce_timeout_sec,
        )

    @staticmethod
    def create(
        workflow: Callable[P, R],
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer of `workflow`, on `queue` (by default the internal queue, which every
        worker serves)."""
        return Debouncer[P, R](workflow, debounce_timeout_sec, queue)

    @staticmethod
    def create_async(
        workflow: Callable[P, Coroutine[Any, Any, R]],
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ) -> Debouncer[P, R]:
        """`create` for an `async def` workflow."""
        return Debouncer[P, R](workflow, debounce_timeout_sec, queue)

    def __repr__(self) -> str:
        return f"<Debouncer {self.target.workflow_name} on {self.target.queue_name}>"

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Join the burst of `debounce_key` with these arguments, or start one; return a handle
        to its workflow."""
        queue = (
            registry.QueueSpec(enqueue.INTERNAL_QUEUE)
            if self.target.queue_name == enqueue.INTERNAL_QUEUE
            else registry.get_queue(self.target.queue_name)
        )
        workflow_id = debounce.debounce_here(
            self.target, self.entry, queue, debounce_key, debounce_period_sec, args, kwargs
        )
        return handles.handle(workflow_id)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """`debounce` for async callers."""
        return await aio.run_sync(self.debounce, debounce_key, debounce_period_sec, *args, **kwargs)


class DebouncerClient:
    """A Debouncer for a DBOSClient: debounce a workflow by name, from code that does not have it.

    `workflow` is the workflow's registered name, or enqueue options as `DBOSClient.enqueue`
    takes them (`workflow_name`, and `queue_name`, `app_version`, `workflow_timeout`; a
    `workflow_id` names the workflow of every burst: a later burst gets the first one's handle);
    a debounce sets the deduplication id and the delay itself. The queue is
    `queue`, else the options' `queue_name`, else the internal queue every worker serves.
    """

    def __init__(
        self,
        client: DBOSClient,
        workflow: str | EnqueueOptions,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ):
        options = (
            EnqueueOptions(workflow_name=workflow)
            if isinstance(workflow, str)
            else EnqueueOptions(**workflow)
        )
        if "workflow_name" not in options:
            raise DBOSInvalidArgumentError("DebouncerClient options need a workflow_name.")
        debounce.reject_owned_options(options)
        validation.name(options["workflow_name"], "workflow_name", allow_empty=False)
        options["queue_name"] = (
            _queue_name(queue) or options.get("queue_name") or enqueue.INTERNAL_QUEUE
        )
        self.client = client
        self.options = options
        self.target = debounce.Debounce.checked(
            options["workflow_name"], options["queue_name"], debounce_timeout_sec
        )

    def __repr__(self) -> str:
        return f"<DebouncerClient {self.target.workflow_name} on {self.target.queue_name}>"

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Join the burst of `debounce_key` with these arguments, or start one; return a handle
        to its workflow."""

        def enqueue_fresh(fields: dict[str, Any]) -> str:
            return self.client._enqueue(self.options, args, kwargs, fields).workflow_id

        with system_db.using(self.client.database):
            workflow_id = debounce.debounce(
                self.target, debounce_key, debounce_period_sec, args, kwargs, enqueue_fresh
            )
        return handles.handle(workflow_id, database=self.client.database)

    async def debounce_async(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """`debounce` for async callers."""
        return await aio.run_sync(self.debounce, debounce_key, debounce_period_sec, *args, **kwargs)
