"""This process as an executor: its id, its heartbeat and its workflow thread pool.

Every process that runs workflows (web processes included) registers itself on its first
workflow and heartbeats from then on, so that workers can tell when it has died.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid

from django.db import connections

from .. import conf
from . import parking, registry, runtime, system_db
from .event_loop import EventLoopThread
from .pool import WorkflowThreadPool

logger = logging.getLogger("django_dbos")

EXIT_TIMEOUT_SECONDS = 5.0
# Threads that run the checkpoints of async workflows, each with its own connection.
DATABASE_THREADS = 8
# A worker's other threads that use a database connection, at most: its watch loop (recovery),
# the heartbeat, and the dispatcher, scheduler, retention, alert and upgrade loops.
WORKER_LOOP_THREADS = 7


def connections_needed(workflow_threads: int) -> int:
    """How many connections to the DBOS database one worker may hold at once."""
    return workflow_threads + DATABASE_THREADS + WORKER_LOOP_THREADS


class ProcessExecutor:
    """The executor state of one OS process; rebuilt after a fork."""

    STOP_ORDER = 0  # first: stop taking work, let running workflows finish

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.executor_id = conf.get("EXECUTOR_ID") or (
            f"{socket.gethostname()}-{self.pid}-{uuid.uuid4().hex[:8]}"
        )
        self.hostname = socket.gethostname()
        self.started_at = system_db.now()
        self.role = "process"
        self.max_threads = int(conf.get("WORKFLOW_THREADS"))
        # The queues this process dispatches (a worker's), recorded with each heartbeat.
        self.queues: list[str] = []
        self._pool: WorkflowThreadPool | None = None
        self._database_pool: WorkflowThreadPool | None = None
        self._loop: EventLoopThread | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> WorkflowThreadPool:
        with self._lock:
            if self._pool is None:
                self._pool = WorkflowThreadPool(self.max_threads)
            return self._pool

    @property
    def database_pool(self) -> WorkflowThreadPool:
        """The threads that run the checkpoints of async workflows."""
        with self._lock:
            if self._database_pool is None:
                self._database_pool = WorkflowThreadPool(DATABASE_THREADS, name="dbos-database")
            return self._database_pool

    @property
    def loop(self) -> EventLoopThread:
        """The event loop that runs started, dequeued and recovered async workflows."""
        with self._lock:
            if self._loop is None:
                self._loop = EventLoopThread()
            return self._loop

    def ensure_started(self, role: str | None = None) -> str:
        """Register this executor and start its heartbeat, once; return the executor id."""
        if role is not None and role != self.role:
            self.role = role
            self.beat()
        if self._heartbeat is None:
            with self._lock:
                if self._heartbeat is None:
                    self.beat()
                    thread = threading.Thread(
                        target=self._beat_forever, name="dbos-heartbeat", daemon=True
                    )
                    thread.start()
                    self._heartbeat = thread
                    atexit.register(self._at_exit)
        return self.executor_id

    def beat(self) -> None:
        system_db.heartbeat(
            self.executor_id,
            hostname=self.hostname,
            pid=self.pid,
            role=self.role,
            application_version=registry.application_version(),
            started_at=self.started_at,
            queues=self.queues,
        )

    def serve(self, queue_names: list[str]) -> None:
        """Record at once which queues this process dispatches, when they change, so that
        `DBOS.list_queues` stops showing them unserved without waiting for the next heartbeat."""
        if queue_names != self.queues:
            self.queues = queue_names
            self.beat()

    def _beat_forever(self) -> None:
        interval = float(conf.get("HEARTBEAT_SECONDS"))
        try:
            while not self._stop.wait(interval):
                try:
                    self.beat()
                except Exception:
                    logger.warning("DBOS heartbeat failed; retrying.", exc_info=True)
                    connections.close_all()
        finally:
            connections.close_all()

    def _at_exit(self) -> None:
        """At interpreter exit, give running workflows a few seconds to finish (DBOS.shutdown
        does the same when called); what is still running is left to recovery."""
        if runtime.current().made(ProcessExecutor) is self and not self._stop.is_set():
            self.stop(EXIT_TIMEOUT_SECONDS)

    def stop(self, timeout: float) -> bool:
        """Stop taking work and wait for running workflows; True if all finished in time."""
        parking.current().clear()
        deadline = time.monotonic() + timeout
        finished = True
        if self._pool is not None:
            finished = self._pool.shutdown(timeout)
        if self._loop is not None:
            finished = self._loop.shutdown(max(0.0, deadline - time.monotonic())) and finished
        if self._database_pool is not None:
            self._database_pool.shutdown(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            try:
                system_db.delete_executor(self.executor_id)
            except Exception:
                logger.warning("Could not remove this executor's row.", exc_info=True)
        return finished


def current() -> ProcessExecutor:
    """This process's executor (a part of its engine)."""
    return runtime.part(ProcessExecutor)
