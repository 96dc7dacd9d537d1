"""The long-running worker process: heartbeat, recovery of dead executors, and (later) dispatch."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connections

from . import conf
from .engine import executor, registry
from .engine.recovery import Recovery

logger = logging.getLogger("django_dbos.worker")


class Worker:
    """Runs until stopped: recovers its own leftovers, then watches for dead executors."""

    def __init__(self, *, recovery: bool = True, shutdown_timeout: float = 30.0):
        self.recovery_enabled = recovery
        self.shutdown_timeout = shutdown_timeout
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> bool:
        """Work until stop() is called; return True when every running workflow finished."""
        process = executor.current()
        process.ensure_started(role="worker")
        logger.info(
            "DBOS worker %s started: app %s, application version %s, database %r (%s), "
            "%d workflow threads.",
            process.executor_id,
            conf.app_name(),
            registry.application_version(),
            conf.get("DATABASE"),
            connections[conf.get("DATABASE")].vendor,
            process.pool.max_threads,
        )
        recovery = Recovery(process)
        if self.recovery_enabled:
            recovered = recovery.recover_own()
            if recovered:
                logger.info("Recovering %d workflows left by this executor.", recovered)
        interval = min(float(conf.get("HEARTBEAT_SECONDS")), 1.0)
        while not self._stop.wait(interval):
            if not self.recovery_enabled:
                continue
            try:
                recovery.recover_dead()
            except Exception:
                logger.exception("Recovery check failed; retrying.")
            close_old_connections()
        logger.info("DBOS worker stopping: waiting up to %s s.", self.shutdown_timeout)
        finished = process.shutdown(self.shutdown_timeout)
        executor.reset()
        connections.close_all()
        logger.info("DBOS worker stopped%s.", "" if finished else " (some workflows left PENDING)")
        return finished
