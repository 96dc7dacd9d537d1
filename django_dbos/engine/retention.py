"""The retention policy (DBOS["RETENTION"]): what the workers delete, archive and scrub of
finished workflows, a batch of each per interval, one worker at a time (docs/retention.md)."""

from __future__ import annotations

import datetime
import gzip
import io
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import storages

from .. import conf
from . import system_db

logger = logging.getLogger("django_dbos.worker")

ARCHIVE_FOLDER = "dbos-archive"
# Workflows per batch, as for garbage_collect: a turn deletes one batch and scrubs another, each
# in a short transaction on SQLite (on PostgreSQL, the turn's one transaction).
BATCH_SIZE = 500


@dataclass(frozen=True)
class Policy:
    """DBOS["RETENTION"] as read now (checks.py reports bad values)."""

    finished_days: float | None
    payload_days: float | None
    archive_storage: str | None
    interval_seconds: float

    @classmethod
    def current(cls) -> Policy:
        values: dict[str, Any] = conf.get("RETENTION")
        return cls(
            finished_days=values["FINISHED_DAYS"],
            payload_days=values["PAYLOAD_DAYS"],
            archive_storage=values["ARCHIVE_STORAGE"],
            interval_seconds=float(values["INTERVAL_SECONDS"]),
        )

    @property
    def applies(self) -> bool:
        """Whether the policy deletes or scrubs anything (by default it keeps all)."""
        return self.finished_days is not None or self.payload_days is not None


@dataclass(frozen=True)
class Turn:
    """What one turn of the policy did."""

    deleted: int
    expired: int
    archive: str | None  # the name of the archive file saved, if any


class Retention:
    """The retention thread of a worker: a turn per interval, when no other worker has it.

    Each kind of batch reads on from where this worker's last one stopped (the position of the
    last workflow it read), so that workflows kept because their family is active are not read
    again in every batch; it starts over from the oldest after a short batch.
    """

    def __init__(self, holder: str):
        self.holder = holder
        self._after: dict[str, system_db.Position | None] = {"delete": None, "expire": None}

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(Policy.current().interval_seconds):
            try:
                self.apply()
            except Exception:
                logger.exception("The retention policy's turn failed; retrying next interval.")

    def apply(self) -> Turn | None:
        """Take a turn now: a batch of deletes (archived first) and a batch of scrubs, as the
        policy asks. None when another worker has the turn."""
        policy = Policy.current()
        moment = system_db.now()
        with system_db.retention_turn(self.holder) as mine:
            if not mine:
                return None
            deleted, archive = 0, None
            cutoff = _ended_before(moment, policy.finished_days)
            if cutoff is not None:
                deleted, archive = self._delete(cutoff, policy.archive_storage)
            expired = 0
            cutoff = _ended_before(moment, policy.payload_days)
            if cutoff is not None:
                expired = self._expire(cutoff)
        if deleted or expired:
            logger.info(
                "Retention: %d finished workflows deleted%s, %d payloads expired.",
                deleted,
                f" (archived to {archive})" if archive else "",
                expired,
            )
        return Turn(deleted=deleted, expired=expired, archive=archive)

    def _batch(self, kind: str, cutoff: datetime.datetime) -> dict[str, str | None]:
        """The next batch (id -> parent id) of finished workflows that ended before `cutoff`
        (for "expire", with their payload), those with an active family member left out."""
        batch = system_db.finished_before(
            (cutoff, ""),
            after=self._after[kind],
            status=None,
            limit=BATCH_SIZE,
            payload_kept=kind == "expire",
        )
        self._after[kind] = (batch[-1][2], batch[-1][0]) if len(batch) == BATCH_SIZE else None
        candidates = {workflow_id: parent_id for workflow_id, parent_id, _ in batch}
        kept = system_db.kept_with_family(candidates, scrubbing=kind == "expire")
        return {wid: parent for wid, parent in candidates.items() if wid not in kept}

    def _delete(self, cutoff: datetime.datetime, storage: str | None) -> tuple[int, str | None]:
        """Delete a batch of workflows that ended before `cutoff`, saved to the archive storage
        first when there is one: if the save fails, nothing is deleted (the next turn retries)."""
        doomed = self._batch("delete", cutoff)
        if not doomed:
            return 0, None
        archive = None
        if storage is not None:
            try:
                archive = save_archive(storage, list(doomed))
            except Exception:
                logger.exception(
                    "Could not save the archive of %d workflows to the storage %r: nothing was "
                    "deleted; the next turn tries again.",
                    len(doomed),
                    storage,
                )
                return 0, None
        return len(system_db.delete_batch(doomed, ended_before=cutoff)), archive

    def _expire(self, cutoff: datetime.datetime) -> int:
        candidates = self._batch("expire", cutoff)
        return system_db.expire_payloads(candidates, cutoff) if candidates else 0


def _ended_before(moment: datetime.datetime, days: float | None) -> datetime.datetime | None:
    """The end before which workflows are `days` old; None when none can be (days is None, or
    so many that the date would precede the year 1)."""
    if days is None:
        return None
    try:
        return moment - datetime.timedelta(days=days)
    except OverflowError:
        return None


def save_archive(storage: str, workflow_ids: Sequence[str]) -> str:
    """Save these workflows' export records, one JSON line each, gzip'd, as a new file of the
    storage named by the time and a random suffix; return the name the storage gave it."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as out:
        for record in system_db.export_workflows(workflow_ids=workflow_ids):
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            out.write(line.encode())
    moment = system_db.now().astimezone(datetime.UTC)
    name = f"{ARCHIVE_FOLDER}/{moment:%Y-%m-%dT%H-%M-%SZ}-{secrets.token_hex(4)}.jsonl.gz"
    return storages[storage].save(name, ContentFile(buffer.getvalue()))
