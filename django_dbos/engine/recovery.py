"""Taking over the PENDING workflows of executors that died, and of this one's past life."""

from __future__ import annotations

import datetime
import logging
import time

from .. import conf
from . import metrics, registry, system_db
from .executor import ProcessExecutor
from .workflows import runnable, submit

logger = logging.getLogger("django_dbos")


class Recovery:
    """Finds dead executors and re-runs their PENDING workflows on this executor's pool.

    An executor is dead when its heartbeat is older than EXECUTOR_TIMEOUT_SECONDS, or when its
    row has been missing for that long (a flush or an operator's delete is repaired by the next
    heartbeat well within that time). Only workflows of this application version are taken.
    """

    def __init__(self, process: ProcessExecutor):
        self.process = process
        self._missing_since: dict[str, float] = {}
        # Trusted from the start; after a failed check, only once the database has answered for
        # a whole executor timeout (every executor has had the time to heartbeat again).
        self._reachable_since: float | None = float("-inf")

    def check(self) -> int:
        """recover_dead(), unless the database was away lately: then every heartbeat failed
        too, and the executors that are silent may just not have written theirs again yet."""
        try:
            claimed = self.recover_dead() if self._trusts_heartbeats() else 0
        except Exception:
            self._reachable_since = None
            raise
        return claimed

    def _trusts_heartbeats(self) -> bool:
        now = time.monotonic()
        if self._reachable_since is None:
            self._reachable_since = now
        return now - self._reachable_since >= float(conf.get("EXECUTOR_TIMEOUT_SECONDS"))

    def recover_own(self) -> int:
        """Re-run what a previous process with this same executor id left PENDING."""
        return self._take_over({self.process.executor_id})

    def recover_dead(self) -> int:
        """Take over the PENDING workflows of dead executors; return how many were claimed."""
        version = registry.application_version()
        holders = system_db.pending_executor_ids(version) - {self.process.executor_id}
        if not holders:
            self._missing_since.clear()
            return 0
        timeout = float(conf.get("EXECUTOR_TIMEOUT_SECONDS"))
        cutoff = system_db.now() - datetime.timedelta(seconds=timeout)
        dead = holders & system_db.stale_executor_ids(cutoff)
        missing = holders - system_db.live_executor_ids()
        now = time.monotonic()
        self._missing_since = {
            executor_id: self._missing_since.get(executor_id, now) for executor_id in missing
        }
        dead |= {
            executor_id
            for executor_id, since in self._missing_since.items()
            if now - since >= timeout
        }
        claimed = self._take_over(dead)
        system_db.forget_executors(dead, silent_since=cutoff)
        return claimed

    def _take_over(self, executor_ids: set[str]) -> int:
        if not executor_ids:
            return 0
        claimed = system_db.claim_pending(
            executor_ids, self.process.executor_id, registry.application_version()
        )
        metrics.recovered(len(claimed) + claimed.requeued)
        for executor_id in executor_ids - {self.process.executor_id}:
            self._missing_since.pop(executor_id, None)
        for workflow in claimed:
            if runnable(workflow, self.process.executor_id) is None:
                continue
            logger.info("Recovering workflow %s (%s).", workflow.workflow_id, workflow.name)
            submit(workflow, self.process.executor_id)
        return len(claimed)
