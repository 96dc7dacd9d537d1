"""Replay-checked upgrades: stranded workflows move to the running version when its code replays
their record, and stay, with the first diverging operation recorded, when it does not.

A workflow is stranded when it is PENDING or ENQUEUED on an application version that no live
worker runs (after a deploy, the old workers are gone). The running code replays each one's
recorded operations without running any step (`replay.py`); if they match, a compare-and-set on
its status, version and execution moves it to the running version, so that with several workers
each workflow moves once; it then continues like any other of this version: a PENDING one is
recovered from its dead executor, an ENQUEUED one dequeued. A parked one (in `recv` or `sleep`)
replays up to its last record, which is where it waits: once recovered, it parks again on this
version's worker, with the deadline it recorded.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .. import conf
from ..errors import DBOSNotRegisteredError
from ..types import Status, UpgradeBlock, UpgradeCheck
from . import registry, system_db
from .context import RecordedOperation
from .replay import replay_recorded

logger = logging.getLogger("django_dbos.worker")

# Workflows read, replayed and moved per transaction.
BATCH_SIZE = 100
# A replay that does not end by then (it waits for something the record lacks) blocks the move.
REPLAY_TIMEOUT_SECONDS = 10.0
# A worker's turn rests this many times as long as each batch took before the next: replays are
# Python code, which would otherwise hold the interpreter lock that the worker's dispatch and its
# workflows need (a third of the queue's throughput, measured with bench/upgrade.py).
AUTO_UPGRADE_REST = 2.0


@dataclass(frozen=True)
class Upgrade:
    """What one pass of an upgrade found: every workflow it checked, in workflow id order."""

    to_version: str
    checked: list[UpgradeCheck]

    @property
    def moved(self) -> list[UpgradeCheck]:
        return [check for check in self.checked if check.moved]

    @property
    def blocked(self) -> list[UpgradeCheck]:
        return [check for check in self.checked if check.blocked_at is not None]


def check(
    row: system_db.WorkflowRow, history: dict[int, RecordedOperation], version: str
) -> UpgradeBlock | None:
    """Replay one workflow's record on the running code: None when it continues it."""
    try:
        found = replay_recorded(row, history, timeout=REPLAY_TIMEOUT_SECONDS)
    except DBOSNotRegisteredError:
        return UpgradeBlock(
            version=version,
            function_id=None,
            expected=row.name,
            found=None,
            reason=f"No workflow is registered as {row.name!r} in this code.",
        )
    except Exception as exc:  # its inputs cannot be read by this code, say
        reason = f"The replay failed before its first operation: {type(exc).__name__}: {exc}"
        return UpgradeBlock(
            version=version, function_id=None, expected=None, found=None, reason=reason
        )
    if found.ok:
        return None
    return UpgradeBlock(
        version=version,
        function_id=found.mismatch,
        expected=found.expected,
        found=found.found,
        reason=found.reason,
    )


def _checked(
    rows: Sequence[system_db.WorkflowRow], version: str
) -> Iterator[tuple[system_db.WorkflowRow, UpgradeBlock | None]]:
    histories = system_db.load_operations_of([row.workflow_id for row in rows])
    for row in rows:
        yield row, check(row, histories[row.workflow_id], version)


def _outcome(
    row: system_db.WorkflowRow, block: UpgradeBlock | None, moved: bool = False
) -> UpgradeCheck:
    return UpgradeCheck(
        workflow_id=row.workflow_id,
        name=row.name,
        status=Status(row.status),
        app_version=row.application_version,
        blocked_at=block,
        moved=moved,
    )


def _divergence(block: UpgradeBlock) -> str:
    fields = {"function_id": block.function_id, "expected": block.expected, "found": block.found}
    return json.dumps({**fields, "reason": block.reason})


def _batches(
    read: Callable[[str], list[system_db.WorkflowRow]],
) -> Iterator[list[system_db.WorkflowRow]]:
    after = ""
    while rows := read(after):
        yield rows
        after = rows[-1].workflow_id


def live_since() -> datetime.datetime:
    """Executors heard from since then are alive (EXECUTOR_TIMEOUT_SECONDS)."""
    timeout = datetime.timedelta(seconds=float(conf.get("EXECUTOR_TIMEOUT_SECONDS")))
    return system_db.now() - timeout


def upgrade(
    *,
    from_version: str | None = None,
    dry_run: bool = False,
    recheck: bool = True,
    between_batches: Callable[[float], bool] | None = None,
) -> Upgrade:
    """Check every stranded workflow (of `from_version` only, if given) against the running code;
    move those it continues, record the divergence of the others, a batch per transaction.

    `dry_run` writes nothing. Without `recheck`, workflows already found blocked on the running
    version are not replayed again (the workers' AUTO_UPGRADE turns). `between_batches` is
    called with each batch's duration in seconds; it returns False to stop there.
    """
    version = registry.application_version()
    since = live_since()
    checked: list[UpgradeCheck] = []

    def read(after: str) -> list[system_db.WorkflowRow]:
        return system_db.stranded_workflows(
            since,
            version,
            from_version=from_version,
            unchecked_only=not recheck,
            after=after,
            limit=BATCH_SIZE,
        )

    for rows in _batches(read):
        began = time.monotonic()
        found = list(_checked(rows, version))
        if dry_run:
            checked += [_outcome(row, block) for row, block in found]
        else:
            moves = [row for row, block in found if block is None]
            blocks = [(row, _divergence(block)) for row, block in found if block is not None]
            moved = {row.workflow_id for row in system_db.upgrade_batch(moves, blocks, version)}
            checked += [_outcome(row, block, row.workflow_id in moved) for row, block in found]
        if between_batches is not None and not between_batches(time.monotonic() - began):
            break
    return Upgrade(version, checked)


def check_deploy() -> list[UpgradeCheck]:
    """The in-flight workflows (PENDING or ENQUEUED, of any version) that the running code cannot
    continue; it writes nothing (the caller makes the connections read-only)."""
    version = registry.application_version()

    def read(after: str) -> list[system_db.WorkflowRow]:
        return system_db.in_flight_workflows(after=after, limit=BATCH_SIZE)

    return [
        _outcome(row, block)
        for rows in _batches(read)
        for row, block in _checked(rows, version)
        if block is not None
    ]


class AutoUpgrade:
    """A worker's AUTO_UPGRADE thread: an upgrade of the stranded workflows not yet checked on
    this version, every HEARTBEAT_SECONDS. Several workers may run it at once: each workflow is
    moved by one of them (the compare-and-set)."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        while not stop.wait(float(conf.get("HEARTBEAT_SECONDS"))):
            try:
                self.turn()
            except Exception:
                logger.exception("The upgrade of stranded workflows failed; retrying.")

    def _rest(self, spent: float) -> bool:
        """Between two batches: give the worker's other threads their time; False to stop."""
        return not self._stop.wait(spent * AUTO_UPGRADE_REST)

    def turn(self) -> Upgrade:
        done = upgrade(recheck=False, between_batches=self._rest)
        if done.checked:
            logger.info(
                "Upgrade to version %s: %d stranded workflows moved, %d cannot continue on it.",
                done.to_version,
                len(done.moved),
                len(done.blocked),
            )
        return done
