"""The retention policy (DBOS["RETENTION"]): the workers delete old finished workflows (archived
first), scrub the payloads of older ones, one worker at a time; what is kept stays whole."""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage
from django.test import override_settings
from django.utils import timezone

from django_dbos import (
    DBOS,
    DBOSPayloadExpiredError,
    Queue,
    SetWorkflowID,
)
from django_dbos.engine import retention, system_db
from django_dbos.models import Notification, WorkflowEvent, WorkflowStatus

from .conftest import Processes, wait_until
from .families import child, everything
from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

unserved = Queue("tret-unserved")  # the tests' workers serve another queue: this one waits
INTERVAL = 0.2


@DBOS.step()
def fails(value: str) -> str:
    raise ValueError(f"card {value} declined")


@DBOS.workflow()
def charge(value: str) -> str:
    return fails(value)


@DBOS.workflow()
def leaves_a_child_waiting() -> str:
    """Finishes at once, its child still ENQUEUED."""
    unserved.enqueue(child, "later")
    return "done"


def ended(*workflow_ids: str, days_ago: float = 10) -> None:
    """Make workflows look as if they finished `days_ago` days ago."""
    moment = timezone.now() - datetime.timedelta(days=days_ago)
    WorkflowStatus.objects.filter(workflow_id__in=workflow_ids).update(updated_at=moment)


def run(workflow: Any, workflow_id: str, *args: Any) -> None:
    # charge fails on purpose: its ERROR is what the tests look at.
    with SetWorkflowID(workflow_id), contextlib.suppress(ValueError):
        workflow(*args)


def run_everything(workflow_id: str) -> str:
    """Run `everything` as `workflow_id`, send it a message; return its child's id."""
    run(everything, workflow_id, workflow_id)
    DBOS.send(workflow_id, "a late message")
    return next(
        step.child_workflow_id
        for step in DBOS.list_workflow_steps(workflow_id)
        if step.child_workflow_id
    )


@contextmanager
def policy(**keys: Any) -> Iterator[None]:
    """Run the block under DBOS["RETENTION"] with these keys (and a short interval)."""
    with override_settings(DBOS={**_dbos(), "RETENTION": {"INTERVAL_SECONDS": INTERVAL, **keys}}):
        yield


def _dbos() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.DBOS)


@contextmanager
def archive_storage(backend: str, location: Path | None = None) -> Iterator[None]:
    """STORAGES with an "archive" storage of this backend."""
    from django.conf import settings

    options = {"location": str(location)} if location is not None else {}
    storages = {**settings.STORAGES, "archive": {"BACKEND": backend, "OPTIONS": options}}
    with override_settings(STORAGES=storages):
        yield


def a_worker() -> Any:
    """The real Worker on a thread: it serves a queue of its own (the tests' ENQUEUED workflows
    stay so), without recovery or schedules, which are not these tests'."""
    return running_worker(queues=["tret-worker"], recovery=False, scheduler=False)


def exists(workflow_id: str) -> bool:
    return WorkflowStatus.objects.filter(workflow_id=workflow_id).exists()


def archived(folder: Path) -> list[dict[str, Any]]:
    """Every record in the archive files under `folder`, in file order."""
    records = []
    for path in sorted((folder / retention.ARCHIVE_FOLDER).glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            records.extend(json.loads(line) for line in lines)
    return records


# FINISHED_DAYS --------------------------------------------------------------------------------


def test_a_worker_deletes_old_finished_workflows_and_keeps_the_rest():
    old_child = run_everything("old")
    run(child, "recent", "recent")
    run(leaves_a_child_waiting, "family")  # its child waits on a queue nobody serves
    waiting = unserved.enqueue(child, "waiting")
    ended("old", old_child, "family", waiting.workflow_id, days_ago=10)

    with policy(FINISHED_DAYS=1), a_worker():
        wait_until(lambda: not exists("old") and not exists(old_child), what="old deleted")

    assert not Notification.objects.filter(destination_id="old").exists()
    assert DBOS.get_workflow_status("recent").status == "SUCCESS"  # finished a moment ago
    assert DBOS.get_workflow_status(waiting.workflow_id).status == "ENQUEUED"  # active
    assert DBOS.get_workflow_status("family").status == "SUCCESS"  # its child is active


def test_the_policy_keeps_everything_by_default():
    run(child, "kept", "kept")
    ended("kept", days_ago=10_000)

    with policy():
        assert not retention.Policy.current().applies
        assert retention.Retention("test").apply() == retention.Turn(
            deleted=0, expired=0, archive=None
        )

    assert exists("kept")


# ARCHIVE_STORAGE ------------------------------------------------------------------------------


def test_the_archive_holds_every_deleted_workflow_and_they_import_back_equal(tmp_path, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)  # several batches, so several files
    old = ["a", "b", "c", "d", "e"]
    for workflow_id in old:
        run(charge if workflow_id == "c" else child, workflow_id, workflow_id)
    run(child, "recent", "recent")
    ended(*old, days_ago=3)
    before = list(DBOS.export_workflows(workflow_ids=old))

    turn = retention.Retention("test")
    with (
        policy(FINISHED_DAYS=1, ARCHIVE_STORAGE="archive"),
        archive_storage("django.core.files.storage.FileSystemStorage", tmp_path),
    ):
        turns = [turn.apply() for _ in range(4)]

    assert [t.deleted for t in turns if t] == [2, 2, 1, 0]
    files = sorted((tmp_path / retention.ARCHIVE_FOLDER).iterdir())
    assert len(files) == 3  # one per batch that deleted
    assert all(name.endswith(".jsonl.gz") for name in (f.name for f in files))
    assert not any(exists(workflow_id) for workflow_id in old)
    assert exists("recent")
    records = archived(tmp_path)
    assert sorted(r["workflow"]["workflow_id"] for r in records) == old
    for record in records:
        DBOS.import_workflow(record)
    assert list(DBOS.export_workflows(workflow_ids=old)) == before
    with pytest.raises(ValueError, match="card c declined"):
        DBOS.retrieve_workflow("c").get_result()


class BrokenStorage(FileSystemStorage):
    """A storage whose every save fails, as a full disk or an unreachable bucket would."""

    def _save(self, name: str, content: Any) -> str:
        raise OSError("the bucket is unreachable")


def test_a_failing_archive_storage_deletes_nothing_and_the_next_turn_retries(tmp_path, caplog):
    run(child, "old", "old")
    ended("old", days_ago=3)

    with policy(FINISHED_DAYS=1, ARCHIVE_STORAGE="archive"):
        with (
            archive_storage("tests.test_retention.BrokenStorage", tmp_path),
            caplog.at_level(logging.ERROR, logger="django_dbos.worker"),
        ):
            failed = retention.Retention("test").apply()
        assert exists("old")
        assert failed == retention.Turn(deleted=0, expired=0, archive=None)
        assert "Could not save the archive of 1 workflows" in caplog.text
        assert "the bucket is unreachable" in caplog.text

        with archive_storage("django.core.files.storage.FileSystemStorage", tmp_path):
            retried = retention.Retention("test").apply()

    assert retried is not None and retried.deleted == 1
    assert not exists("old")
    assert [r["workflow"]["workflow_id"] for r in archived(tmp_path)] == ["old"]


# PAYLOAD_DAYS ---------------------------------------------------------------------------------


def test_a_worker_expires_old_payloads_keeping_status_and_step_timeline(admin_client):
    old_child = run_everything("old")
    run(charge, "failed", "card-4242")
    run_everything("recent")
    ended("old", old_child, "failed", days_ago=10)
    steps_before = [(s.function_id, s.function_name) for s in DBOS.list_workflow_steps("old")]

    with policy(PAYLOAD_DAYS=1), a_worker():
        wait_until(
            lambda: all(DBOS.get_workflow_status(wid).payload_expired for wid in ("old", "failed")),
            what="payloads expired",
        )

    old = DBOS.get_workflow_status("old")
    assert (old.status, old.name, old.input, old.output, old.error) == (
        "SUCCESS",
        everything.__dbos__.name,
        None,
        None,
        None,
    )
    steps = DBOS.list_workflow_steps("old")
    assert [(s.function_id, s.function_name) for s in steps] == steps_before
    assert [s.output for s in steps] == [None] * len(steps)
    assert [s.child_workflow_id for s in steps if s.child_workflow_id] == [old_child]
    assert DBOS.get_event("old", "stage", timeout_seconds=0) is None
    assert list(DBOS.read_stream("old", "progress")) == [None]
    assert list(Notification.objects.filter(destination_id="old").values_list("message")) == [("",)]
    with pytest.raises(DBOSPayloadExpiredError, match="'old' succeeded, but its output"):
        DBOS.retrieve_workflow("old").get_result()

    failed = DBOS.get_workflow_status("failed")
    assert failed.status == "ERROR" and isinstance(failed.error, ValueError)
    assert str(failed.error) == ""  # the class stays, the message (with the card) goes
    (step,) = DBOS.list_workflow_steps("failed")
    assert isinstance(step.error, ValueError) and str(step.error) == ""
    assert "card-4242" not in json.dumps(list(DBOS.export_workflows(workflow_ids=["failed"])))
    with pytest.raises(DBOSPayloadExpiredError, match="failed with ValueError"):
        DBOS.retrieve_workflow("failed").get_result()
    with pytest.raises(DBOSPayloadExpiredError, match="cannot be resumed"):
        DBOS.resume_workflow("failed")

    recent = DBOS.get_workflow_status("recent")
    assert not recent.payload_expired and recent.output == "recent"
    assert DBOS.get_event("recent", "stage", timeout_seconds=0) == "recent"

    page = admin_client.get("/admin/django_dbos/workflowstatus/failed/change/").content.decode()
    listing = admin_client.get("/admin/django_dbos/workflowstatus/").content.decode()
    assert "payload expired" in page and "ValueError" in page and "card-4242" not in page
    assert "payload expired" in listing


def test_a_payload_is_scrubbed_once_and_an_active_family_keeps_it():
    run(child, "old", "old")
    run(leaves_a_child_waiting, "family")
    ended("old", "family", days_ago=10)

    with policy(PAYLOAD_DAYS=1):
        first = retention.Retention("test").apply()
        expired_at = WorkflowStatus.objects.get(workflow_id="old").payload_expired_at
        again = retention.Retention("test").apply()

    assert first is not None and first.expired == 1
    assert again is not None and again.expired == 0
    assert WorkflowStatus.objects.get(workflow_id="old").payload_expired_at == expired_at
    assert not DBOS.get_workflow_status("family").payload_expired
    assert WorkflowEvent.objects.filter(workflow_id="old", value="").count() == 1


# One worker at a time -------------------------------------------------------------------------


def test_a_worker_takes_no_turn_while_another_holds_it(processes: Processes):
    """The test holds the turn (the lease) while a
    real worker process, whose policy would delete the old workflows, runs for many intervals:
    nothing is deleted until the test lets the turn go."""
    for workflow_id in ("old-1", "old-2"):
        run(child, workflow_id, workflow_id)
    ended("old-1", "old-2", days_ago=10)

    with system_db.retention_turn("the-test") as mine:
        assert mine
        worker = processes.worker(
            "--queue",
            "tret-worker",
            DBOS_RETENTION_FINISHED_DAYS="1",
            DBOS_RETENTION_INTERVAL_SECONDS=str(INTERVAL),
        )
        log = Path(worker.log_path)  # type: ignore[attr-defined]
        wait_until(lambda: "started:" in log.read_text(), what="the worker's start")
        time.sleep(10 * INTERVAL)  # ten of the worker's intervals, each finding the turn taken
        held = [exists("old-1"), exists("old-2")]

    assert held == [True, True]
    wait_until(lambda: not exists("old-1") and not exists("old-2"), what="the worker's turn")
    assert "Retention: 2 finished workflows deleted" in log.read_text()


def test_a_fork_that_races_a_scrub_is_refused_and_copies_nothing(monkeypatch):
    """A retention turn scrubs the original between the fork's read of it and its copy: the
    fork must not start from step outputs that are gone."""
    run(charge, "failed", "card-4242")
    fork_workflow = system_db.fork_workflow

    def scrubbed_meanwhile(original_id: str, *args: Any) -> str:
        assert system_db.expire_payloads({original_id: None}, timezone.now()) == 1
        return fork_workflow(original_id, *args)

    monkeypatch.setattr(system_db, "fork_workflow", scrubbed_meanwhile)
    with pytest.raises(DBOSPayloadExpiredError, match="'failed' cannot be forked"):
        DBOS.fork_workflow("failed", 1)
    assert not WorkflowStatus.objects.filter(forked_from="failed").exists()
