"""The long-running worker process: heartbeat, queue dispatch, cron schedules, recovery of
dead executors, the retention policy, the alert rules, and the upgrade of stranded workflows
(AUTO_UPGRADE)."""

from __future__ import annotations

import logging
import threading
import time

from django.db import connections

from . import conf
from .engine import alerts, executor, parking, registry, runtime, system_db, validation
from .engine.dispatcher import Dispatcher
from .engine.metrics import MetricsServer
from .engine.pool import pool_max_size, tidy_connections
from .engine.recovery import Recovery
from .engine.retention import Policy, Retention
from .engine.scheduler import Scheduler
from .engine.upgrade import AutoUpgrade
from .errors import DBOSConfigurationError

logger = logging.getLogger("django_dbos.worker")

SUMMARY_SECONDS = 60.0


class Worker:
    """Runs until stopped: recovers its own leftovers, dispatches queued workflows, and watches
    for dead executors whose workflows it takes over."""

    def __init__(
        self,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        recovery: bool = True,
        scheduler: bool = True,
        shutdown_timeout: float = 30.0,
        executor_id: str | None = None,
        max_workflows: int | None = None,
        metrics_port: int | None = None,
        metrics_address: str = "0.0.0.0",
    ):
        self.queues = queues
        self.concurrency = concurrency
        if executor_id is not None:
            validation.name(executor_id, "executor id", allow_empty=False)
        self.executor_id = executor_id
        self.max_workflows = max_workflows
        self.recovery_enabled = recovery
        self.scheduler: Scheduler | None = Scheduler() if scheduler else None
        self.shutdown_timeout = shutdown_timeout
        self.metrics_port = metrics_port
        self.metrics_address = metrics_address
        self.metrics_server: MetricsServer | None = None
        self._stop = threading.Event()
        self.dispatcher: Dispatcher | None = None

    def stop(self) -> None:
        self._stop.set()
        if self.dispatcher is not None:
            self.dispatcher.wake()
        if self.scheduler is not None:
            self.scheduler.wake()

    def run(self) -> bool:
        """Work until stop() is called; return True when every running workflow finished."""
        if self.metrics_port is not None:
            self.metrics_server = MetricsServer(self.metrics_port, self.metrics_address)
            logger.info(
                "Serving this worker's metrics on http://%s:%d/metrics.",
                self.metrics_address,
                self.metrics_server.port,
            )
        try:
            return self._run()
        finally:
            if self.metrics_server is not None:
                self.metrics_server.stop()

    def _run(self) -> bool:
        process = executor.current()
        if self.concurrency is not None:
            process.max_threads = self.concurrency
        if self.executor_id is not None:
            process.executor_id = self.executor_id
        _fit_to_connection_pool(process)
        process.ensure_started(role="worker")
        system_db.sync_queues(registry.queues())
        self._record_version()
        logger.info(
            "DBOS worker %s started: app %s, application version %s, database %r (%s), "
            "%d workflow threads, queues: %s.",
            process.executor_id,
            conf.app_name(),
            registry.application_version(),
            conf.get("DATABASE"),
            connections[conf.get("DATABASE")].vendor,
            process.pool.max_threads,
            ", ".join(self.queues) if self.queues else "all",
        )
        recovery = Recovery(process)
        if self.recovery_enabled:
            recovered = recovery.recover_own()
            if recovered:
                logger.info("Recovering %d workflows left by this executor.", recovered)
        self.dispatcher = Dispatcher(process, self.queues, self.max_workflows)
        # The retention policy in a thread of its own, not on the watch loop: a turn may take
        # seconds (an archive upload), which must not delay the detection of dead executors.
        retention = Retention(process.executor_id) if Policy.current().applies else None
        # The alert rules in theirs, for the same reason (a turn mails the admins).
        checker = alerts.Alerts(process.executor_id) if alerts.Settings.current().rules else None
        # Replays may take a while too (each up to a timeout): a thread of its own as well.
        upgrades = AutoUpgrade() if conf.get("AUTO_UPGRADE") else None
        parts = {
            "dbos-dispatcher": self.dispatcher,
            "dbos-scheduler": self.scheduler,
            "dbos-retention": retention,
            "dbos-alerts": checker,
            "dbos-upgrade": upgrades,
        }
        threads = [
            threading.Thread(target=self._loop, args=(part,), name=name, daemon=True)
            for name, part in parts.items()
            if part is not None
        ]
        for thread in threads:
            thread.start()
        self._watch(recovery)
        self.stop()
        for thread in threads:
            thread.join(timeout=10)
        logger.info("DBOS worker stopping: waiting up to %s s.", self.shutdown_timeout)
        finished = runtime.reset(self.shutdown_timeout)
        connections.close_all()
        logger.info("DBOS worker stopped%s.", "" if finished else " (some workflows left PENDING)")
        return finished

    def _record_version(self) -> None:
        """Record this worker's version (once per version), and say if it is not the latest."""
        version = registry.application_version()
        system_db.record_version(version)
        latest = system_db.application_versions()[0].version_name
        if latest != version:
            logger.warning(
                "This worker runs application version %s, but the latest is %s "
                "(DBOS.set_latest_application_version).",
                version,
                latest,
            )

    def _loop(self, part: Dispatcher | Scheduler | Retention | alerts.Alerts | AutoUpgrade) -> None:
        try:
            part.run(self._stop)
        finally:
            connections.close_all()

    def _watch(self, recovery: Recovery) -> None:
        """Check for dead executors every second, and log a summary every minute."""
        interval = min(float(conf.get("HEARTBEAT_SECONDS")), 1.0)
        next_summary = time.monotonic() + SUMMARY_SECONDS
        while not self._stop.wait(interval):
            if self.dispatcher is not None and self.dispatcher.done:
                logger.info(
                    "DBOS worker ran its %d workflows (--max-workflows).", self.max_workflows
                )
                return
            if self.recovery_enabled:
                try:
                    recovery.check()
                except Exception:
                    logger.exception("Recovery check failed; retrying.")
            if time.monotonic() >= next_summary:
                next_summary += SUMMARY_SECONDS
                self._log_summary()
            tidy_connections()

    def _log_summary(self) -> None:
        dispatcher = self.dispatcher
        if dispatcher is not None:
            logger.info(
                "DBOS worker: %d queued workflows started, %d finished, %d running, "
                "%d parked in this process.",
                dispatcher.started,
                dispatcher.finished,
                dispatcher.in_flight,
                len(parking.current()),
            )


def _fit_to_connection_pool(process: executor.ProcessExecutor) -> None:
    """With Django's connection pool on the DBOS database, run no more workflow threads than the
    pool has room for: a thread that waits for a connection longer than the pool's timeout fails
    the statement it was about to run."""
    alias = conf.get("DATABASE")
    size = pool_max_size(connections[alias].settings_dict)
    if size is None:
        return
    room = size - executor.connections_needed(0)
    if room < 1:
        raise DBOSConfigurationError(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] holds {size} connections at most; a worker "
            f"needs at least {executor.connections_needed(1)} (one workflow thread, "
            f"{executor.DATABASE_THREADS} async database threads, "
            f"{executor.WORKER_LOOP_THREADS} loops). Raise the pool's max_size "
            '(docs/deploying.md, "Django\'s connection pool").'
        )
    if process.max_threads > room:
        logger.warning(
            "The connection pool of %r holds %d connections: this worker runs %d workflow "
            "threads instead of %d, so that none waits for a connection (docs/deploying.md, "
            '"Django\'s connection pool").',
            alias,
            size,
            room,
            process.max_threads,
        )
        process.max_threads = room
