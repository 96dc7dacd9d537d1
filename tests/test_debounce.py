"""Debouncing: one workflow per burst of calls with a key, the last arguments, in any process."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
from pathlib import Path

import pytest
from django.db import connections, transaction
from django.utils import timezone

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSNotRegisteredError,
    DBOSQueueDeduplicatedError,
    Debouncer,
    DebouncerClient,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
)
from django_dbos.engine import system_db
from django_dbos.models import WorkflowStatus

from .conftest import Processes, wait_until
from .workers import Gates, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

debounce_queue = Queue("tdb-debounce")
gates = Gates()


@pytest.fixture(autouse=True)
def _gates_reset():
    gates.reset()
    yield
    gates.open_all()


@DBOS.workflow(name="tests.debounce.reindex")
def reindex(document: str, version: int) -> str:
    return f"{document} v{version}"


@DBOS.step()
def hold(label: str) -> None:
    gates.pass_through(label)


@DBOS.workflow(name="tests.debounce.held")
def held(label: str) -> str:
    hold(label)
    return label


@DBOS.workflow(name="tests.debounce.areindex")
async def areindex(document: str, version: int) -> str:
    return f"{document} v{version} (async)"


def rows(name: str) -> list[WorkflowStatus]:
    return list(WorkflowStatus.objects.filter(name=name).order_by("created_at"))


def test_calls_within_the_period_start_one_workflow_with_the_last_arguments():
    debouncer = Debouncer.create(reindex, queue=debounce_queue)
    with running_worker():
        handles = []
        for version in range(4):
            handles.append(debouncer.debounce("doc-1", 0.5, "doc-1", version))
            time.sleep(0.1)
        last_call = timezone.now() - datetime.timedelta(seconds=0.1)

        assert {handle.workflow_id for handle in handles} == {handles[0].workflow_id}
        assert handles[0].get_result(timeout=10) == "doc-1 v3"
        assert handles[1].get_result(timeout=1) == "doc-1 v3"
    (row,) = rows("tests.debounce.reindex")
    assert row.queue_name == "tdb-debounce"
    assert row.debounced
    assert row.deduplication_id is None  # released: the next call starts a new burst
    waited = (row.started_at - last_call).total_seconds()
    assert 0.45 <= waited < 3, f"started {waited:.2f} s after the last call, its period is 0.5 s"


def test_keys_debounce_apart_and_a_call_after_the_start_begins_a_new_burst():
    debouncer = Debouncer.create(held)
    with running_worker():
        first = debouncer.debounce("a", 0.2, "a-1")
        other_key = debouncer.debounce("b", 0.2, "b-1")
        assert other_key.workflow_id != first.workflow_id
        assert gates.wait_reached("a-1"), "the first burst's workflow did not start"

        later = debouncer.debounce("a", 0.2, "a-2")  # the first one runs: a new burst

        assert later.workflow_id != first.workflow_id
        gates.open_all()
        assert first.get_result(timeout=10) == "a-1"
        assert later.get_result(timeout=10) == "a-2"
        assert other_key.get_result(timeout=10) == "b-1"
    assert len(rows("tests.debounce.held")) == 3


def test_the_timeout_caps_a_burst_that_never_ends():
    debouncer = Debouncer.create(reindex, debounce_timeout_sec=0.8, queue="tdb-debounce")
    last_args: dict[str, int] = {}
    with running_worker():
        began = timezone.now()
        for version in range(16):  # a call every 0.15 s for 2.4 s, each within the period
            last_args[debouncer.debounce("doc-2", 0.5, "doc-2", version).workflow_id] = version
            time.sleep(0.15)
        for workflow_id, version in last_args.items():
            assert DBOS.retrieve_workflow(workflow_id).get_result(10) == f"doc-2 v{version}"
    workflows = rows("tests.debounce.reindex")
    assert len(workflows) >= 2, "the burst was never cut by its timeout"
    first_wait = (workflows[0].started_at - began).total_seconds()
    assert 0.75 <= first_wait < 4, f"the first workflow started after {first_wait:.2f} s"


@pytest.mark.parametrize(
    "option",
    [
        {"deduplication_id": "mine"},
        {"delay_seconds": 5},
        {"priority": 1},
        {"queue_partition_key": "p"},
    ],
)
def test_options_the_debouncer_owns_are_refused_with_nothing_written(option):
    debouncer = Debouncer.create(reindex)

    with (
        pytest.raises(DBOSInvalidArgumentError, match=next(iter(option))),
        SetEnqueueOptions(**option),
    ):
        debouncer.debounce("doc-3", 1, "doc-3", 1)
    assert not WorkflowStatus.objects.exists()


def test_bad_arguments_are_refused():
    with pytest.raises(DBOSNotRegisteredError):
        Debouncer.create(lambda: None)
    with pytest.raises(DBOSInvalidArgumentError, match="debounce_timeout_sec"):
        Debouncer.create(reindex, debounce_timeout_sec=-1)
    debouncer = Debouncer.create(reindex)
    with pytest.raises(DBOSInvalidArgumentError, match="debounce_period_sec"):
        debouncer.debounce("doc", -0.5, "doc", 1)
    with pytest.raises(DBOSInvalidArgumentError, match="debounce key"):
        debouncer.debounce("", 1, "doc", 1)
    with pytest.raises(DBOSNotRegisteredError):
        Debouncer.create(reindex, queue="tdb-not-declared").debounce("doc", 1, "doc", 1)
    assert not WorkflowStatus.objects.exists()


def test_a_deduplication_id_held_by_a_plain_enqueue_is_a_conflict():
    with SetEnqueueOptions(deduplication_id="tests.debounce.reindex-doc-4"):
        plain = debounce_queue.enqueue(reindex, "doc-4", 0)

    with pytest.raises(DBOSQueueDeduplicatedError, match=plain.workflow_id):
        Debouncer.create(reindex, queue=debounce_queue).debounce("doc-4", 1, "doc-4", 1)
    assert [row.workflow_id for row in rows("tests.debounce.reindex")] == [plain.workflow_id]


def test_set_workflow_id_names_the_workflow_a_burst_enqueues():
    debouncer = Debouncer.create(reindex)
    with SetWorkflowID("reindex-doc-5"):
        first = debouncer.debounce("doc-5", 30, "doc-5", 1)
    with SetWorkflowID("ignored: the burst has its workflow"):
        second = debouncer.debounce("doc-5", 30, "doc-5", 2)
    plain = DBOS.start_workflow(reindex, "doc-6", 1)  # the ids applied to those calls only

    assert first.workflow_id == second.workflow_id == "reindex-doc-5"
    assert plain.workflow_id != "ignored: the burst has its workflow"
    assert DBOS.get_workflow_status("reindex-doc-5").input == {"args": ["doc-5", 2], "kwargs": {}}
    assert plain.get_result(timeout=10) == "doc-6 v1"


def test_a_call_waiting_on_a_claim_in_progress_starts_a_new_burst():
    """The bounce and the claim of one row: the bounce waits for the claim's lock (PostgreSQL)
    or write lock (SQLite), then finds the workflow taken and its deduplication id free."""
    debouncer = Debouncer.create(reindex, queue=debounce_queue)
    first = debouncer.debounce("doc-12", 0, "doc-12", 1)  # due at once
    version = DBOS.get_workflow_status(first.workflow_id).app_version
    second: list[str] = []

    def call() -> None:
        try:
            second.append(debouncer.debounce("doc-12", 30, "doc-12", 2).workflow_id)
        finally:
            connections.close_all()

    caller = threading.Thread(target=call)
    with transaction.atomic():
        (claimed,) = system_db.claim_queued(debounce_queue.spec, "claimer", version, 10)
        caller.start()
        caller.join(0.5)
        assert caller.is_alive(), "the call did not wait for the claim"
    caller.join(10)

    assert claimed.workflow_id == first.workflow_id
    assert second and second[0] != first.workflow_id
    taken = DBOS.get_workflow_status(first.workflow_id)
    assert (taken.status, taken.input["args"]) == ("PENDING", ["doc-12", 1])
    assert DBOS.get_workflow_status(second[0]).input["args"] == ["doc-12", 2]


def test_the_admin_shows_until_when_a_workflow_is_debounced(admin_client):
    handle = Debouncer.create(reindex).debounce("doc-11", 30, "doc-11", 1)

    page = admin_client.get(f"/admin/django_dbos/workflowstatus/{handle.workflow_id}/change/")

    assert "debounced until" in page.content.decode()


later_debouncer = Debouncer.create(reindex, queue=debounce_queue)


@DBOS.workflow(name="tests.debounce.editor")
def editor(document: str) -> str:
    handle = later_debouncer.debounce(document, 60, document, 1)
    return handle.workflow_id


def test_a_debounce_inside_a_workflow_is_one_operation_that_replays_to_the_same_handle():
    with running_worker():
        parent = DBOS.start_workflow(editor, "doc-7")
        debounced_id = parent.get_result(timeout=10)
        (row,) = rows("tests.debounce.reindex")
        assert row.workflow_id == debounced_id
        assert row.parent_workflow_id is None  # the burst's workflow is every caller's
        steps = DBOS.list_workflow_steps(parent.workflow_id)
        assert [(step.function_id, step.function_name) for step in steps] == [(1, "DBOS.debounce")]

        replayed = DBOS.fork_workflow(parent.workflow_id, 2)  # step 1 comes from the record

        assert replayed.get_result(timeout=10) == debounced_id
    (after,) = rows("tests.debounce.reindex")
    assert after.dispatch_after == row.dispatch_after, "the replay bounced the workflow"


def test_async_debouncing():
    debouncer = Debouncer.create_async(areindex)

    async def burst() -> list[str]:
        handles = [await debouncer.debounce_async("doc-8", 0.3, "doc-8", n) for n in range(3)]
        return [handle.workflow_id for handle in handles] + [await handles[0].get_result_async(10)]

    with running_worker():
        *ids, result = asyncio.run(burst())
    assert len(set(ids)) == 1
    assert result == "doc-8 v2 (async)"


def test_a_debouncer_client_debounces_by_name():
    client = DBOSClient()
    debouncer = DebouncerClient(client, "tests.debounce.reindex", queue="tdb-debounce")
    by_options = DebouncerClient(
        client, {"workflow_name": "tests.debounce.reindex", "queue_name": "tdb-debounce"}
    )
    with running_worker():
        first = debouncer.debounce("doc-9", 0.3, "doc-9", 1)
        second = by_options.debounce("doc-9", 0.3, "doc-9", 2)

        assert first.workflow_id == second.workflow_id
        assert first.get_result(timeout=10) == "doc-9 v2"
    with pytest.raises(DBOSInvalidArgumentError, match="deduplication_id"):
        DebouncerClient(client, {"workflow_name": "x", "deduplication_id": "y"})


BURST = """
import json, os, sys, time
from pathlib import Path
from django_dbos import DBOS, Debouncer, Queue

@DBOS.workflow(name="tests.debounce.reindex")
def reindex(document, version):
    return f"{document} v{version}"

folder = Path(os.environ["BURST_DIR"])
label = os.environ["BURST_LABEL"]
debouncer = Debouncer.create(reindex, queue=Queue("tdb-debounce"))
debouncer.debounce("warm-up", 30, "warm-up", 0)  # connected, before the race
(folder / f"ready-{label}").touch()
while not (folder / "go").exists():
    time.sleep(0.005)
ids = [debouncer.debounce("doc-10", 2, label, n).workflow_id for n in range(20)]
(folder / f"ids-{label}.tmp").write_text(json.dumps(ids))
(folder / f"ids-{label}.tmp").rename(folder / f"ids-{label}")
"""


def test_three_processes_debouncing_at_once_make_one_workflow_with_the_last_arguments(
    processes: Processes, tmp_path: Path
):
    labels = ["p1", "p2", "p3"]
    started = [
        processes.python(BURST, BURST_DIR=str(tmp_path), BURST_LABEL=label) for label in labels
    ]

    def all_wrote(prefix: str) -> bool:
        failed = [process.log_path for process in started if process.poll()]
        assert not failed, f"a process failed: see {failed}"
        return all((tmp_path / f"{prefix}-{label}").exists() for label in labels)

    wait_until(lambda: all_wrote("ready"), 60, "the three processes to start")
    with running_worker(queues=["tdb-debounce"]):
        (tmp_path / "go").touch()
        wait_until(lambda: all_wrote("ids"), 30, "the three processes to make their calls")
        # Each process calls in order: the last call to commit was some process's last one.
        (burst_id,) = {json.loads((tmp_path / f"ids-{label}").read_text())[0] for label in labels}
        waiting = DBOS.get_workflow_status(burst_id)
        assert waiting is not None and waiting.input["args"][1] == 19
        # The last call of the burst, after every other one, within its period.
        last = Debouncer.create(reindex, queue=debounce_queue).debounce("doc-10", 2, "last", 0)

        ids = {
            workflow_id
            for label in labels
            for workflow_id in json.loads((tmp_path / f"ids-{label}").read_text())
        }
        assert ids == {last.workflow_id}, "the burst made more than one workflow"
        assert last.get_result(timeout=15) == "last v0"
        burst = [
            status
            for status in DBOS.list_workflows(name="tests.debounce.reindex")
            if status.input["args"][0] != "warm-up"
        ]
        assert [status.workflow_id for status in burst] == [last.workflow_id]

        again = Debouncer.create(reindex, queue=debounce_queue).debounce("doc-10", 0.2, "again", 1)

        assert again.workflow_id != last.workflow_id
        assert again.get_result(timeout=10) == "again v1"
