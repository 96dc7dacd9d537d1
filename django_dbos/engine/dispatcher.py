"""The dispatcher: claims queued workflows for a worker and runs them on its thread pool."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from functools import partial

from ..errors import DBOSInvalidArgumentError
from . import metrics, notifier, parking, registry, system_db
from .enqueue import INTERNAL_QUEUE, mismatch
from .executor import ProcessExecutor
from .pool import tidy_connections
from .workflows import end_in_error, run_claimed, run_claimed_async, runnable

logger = logging.getLogger("django_dbos.worker")


class Dispatcher:
    """Claims this worker's share of queued workflows and runs them on its thread pool.

    It sleeps until an enqueue or the end of a queued workflow (in any process) wakes it, or for
    POLL_SECONDS at most, then claims what the queues' limits allow.
    """

    LIMITS_REFRESH_SECONDS = 2.0

    def __init__(
        self,
        process: ProcessExecutor,
        queue_names: list[str] | None = None,
        max_workflows: int | None = None,
    ):
        self.process = process
        self.only = set(queue_names) if queue_names else None
        # Start no more than this many workflows, then claim nothing (rundbosworker
        # --max-workflows); None: no end.
        self.max_workflows = max_workflows
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()
        self._in_flight = 0
        self._limits: list[registry.QueueSpec] = []
        self._limits_read_at = 0.0
        self._wake: threading.Event | None = None
        self.started = 0
        self.finished = 0
        self.parked = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def done(self) -> bool:
        """Whether it started its last workflow (max_workflows) and none of them still runs."""
        with self._lock:
            return self.max_workflows is not None and (
                self.started >= self.max_workflows and self._in_flight == 0
            )

    def run(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set (call `wake()` after setting it)."""
        listener = notifier.current()
        with listener.subscribe(system_db.QUEUE_ACTIVITY) as event:
            self._wake = event
            while not stop.is_set():
                try:
                    claimed = self.dispatch_once()
                except Exception:
                    logger.exception("Queue dispatch failed; retrying.")
                    tidy_connections()
                    claimed = 0
                    time.sleep(0.5)
                if not claimed and not stop.is_set():
                    listener.wait(event, None)
            self._wake = None

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def dispatch_once(self) -> int:
        """Claim and start what the queues allow now; return how many started."""
        started = 0
        version = registry.application_version()
        for queue in self._queue_limits():
            with self._lock:
                want = self.process.pool.max_threads - self._in_flight
                if self.max_workflows is not None:
                    want = min(want, self.max_workflows - self.started)
                if queue.worker_concurrency is not None:
                    want = min(want, queue.worker_concurrency - self._running[queue.name])
            if want <= 0:
                continue
            for claimed in system_db.claim_queued(queue, self.process.executor_id, version, want):
                metrics.dispatched(claimed.waited_seconds)
                self._start(queue, claimed)
                started += 1
        return started

    def _queue_limits(self) -> list[registry.QueueSpec]:
        """The queues this worker serves, with their limits; recorded on its executor row."""
        if time.monotonic() - self._limits_read_at > self.LIMITS_REFRESH_SECONDS:
            # The stored limits win (they may have been edited in the admin); queues declared
            # in code but without a row yet are dispatched with their declared limits.
            limits = {queue.name: queue for queue in registry.queues()}
            limits.update({queue.name: queue for queue in system_db.queue_limits()})
            limits.setdefault(INTERNAL_QUEUE, registry.QueueSpec(INTERNAL_QUEUE))
            if self.only is not None:
                served = self.only | {INTERNAL_QUEUE}
                limits = {name: queue for name, queue in limits.items() if name in served}
            self._limits = list(limits.values())
            self._limits_read_at = time.monotonic()
            self.process.serve(sorted(limits))
        return self._limits

    def _start(self, queue: registry.QueueSpec, claimed: system_db.ClaimedWorkflow) -> None:

        queue_name = queue.name
        entry = runnable(claimed, self.process.executor_id)
        if entry is None:
            return
        # A DBOSClient may have enqueued it before any worker declared the queue: the options
        # that depend on the declaration are checked here.
        problem = mismatch(queue, claimed.priority, claimed.queue_partition_key)
        if problem is not None:
            end_in_error(claimed, self.process.executor_id, DBOSInvalidArgumentError(problem))
            return
        with self._lock:
            self._running[queue_name] += 1
            self._in_flight += 1
            self.started += 1
        logger.info(
            "Starting workflow %s (%s) from queue %s.",
            claimed.workflow_id,
            claimed.name,
            queue_name,
        )
        if entry.is_async:
            self.process.loop.submit(self._run_async(queue_name, claimed))
        else:
            self.process.pool.submit(self._run, queue_name, claimed, False)

    def _resume(self, queue_name: str, claimed: system_db.ClaimedWorkflow) -> None:
        """Run a parked workflow again: it counts against the worker's threads once more."""
        with self._lock:
            self._in_flight += 1
            self.parked -= 1
        self.process.pool.submit(self._run, queue_name, claimed, True)

    def _run(self, queue_name: str, claimed: system_db.ClaimedWorkflow, parked: bool) -> None:
        began = time.monotonic()
        resume = partial(self._resume, queue_name, claimed)
        try:
            result = run_claimed(claimed, self.process.executor_id, resume, parked)
        except BaseException as exc:  # the workflow's own error is recorded; the worker goes on
            self._done(queue_name, claimed, began, exc)
        else:
            if result is parking.PARKED:
                with self._lock:  # it still counts against the queue's worker_concurrency
                    self._in_flight -= 1
                    self.parked += 1
                self.wake()
            else:
                self._done(queue_name, claimed, began)

    async def _run_async(self, queue_name: str, claimed: system_db.ClaimedWorkflow) -> None:
        began = time.monotonic()
        try:
            await run_claimed_async(claimed, self.process.executor_id)
        except BaseException as exc:
            self._done(queue_name, claimed, began, exc)
        else:
            self._done(queue_name, claimed, began)

    def _done(
        self,
        queue_name: str,
        claimed: system_db.ClaimedWorkflow,
        began: float,
        error: BaseException | None = None,
    ) -> None:
        """Free the workflow's slot, look for more work, and log how it ended."""
        with self._lock:
            self._in_flight -= 1
            self._running[queue_name] -= 1
            self.finished += 1
        self.wake()
        logger.info(
            "Workflow %s finished in %.0f ms: %s.",
            claimed.workflow_id,
            (time.monotonic() - began) * 1000,
            "SUCCESS" if error is None else f"{type(error).__name__}: {error}",
        )
