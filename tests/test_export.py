"""Exporting workflows as JSON Lines and importing them back: the same workflow, byte for byte."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from django.test.utils import CaptureQueriesContext

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSWorkflowConflictIDError,
    Queue,
    SetWorkflowID,
    WorkflowStatusString,
)
from django_dbos.models import (
    Notification,
    OperationOutput,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
    WorkflowStatus,
)

from .dead_executors import mark_dead, recover
from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

later = Queue("export-later")
packed: Counter[str] = Counter()


class Damaged(Exception):
    pass


@DBOS.step()
def pack(item: str) -> str:
    packed[item] += 1
    return f"packed {item}"


@DBOS.workflow()
def label(item: str) -> str:
    return f"label for {item}"


@DBOS.workflow()
def ship(item: str) -> dict:
    note = pack(item)
    DBOS.set_event("stage", "packed")
    DBOS.write_stream("log", {"packed": item})
    greeting = DBOS.recv("hello", timeout_seconds=10)
    DBOS.set_event("stage", "labelled")
    tag = label(item)  # a child workflow
    DBOS.write_stream("log", tag)
    DBOS.close_stream("log")
    return {"note": note, "greeting": greeting, "label": tag}


@DBOS.workflow()
def ship_broken(item: str) -> None:
    pack(item)
    raise Damaged(f"{item} arrived in pieces")


def seen(workflow_id: str) -> dict[str, Any]:
    """What a user sees of a workflow through the public API."""
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    fields = dataclasses.asdict(status)
    fields["error"] = repr(status.error)
    steps = [dataclasses.asdict(step) for step in DBOS.list_workflow_steps(workflow_id)]
    for step in steps:
        step["error"] = repr(step["error"])
    return {
        "status": fields,
        "steps": steps,
        "stage": DBOS.get_event(workflow_id, "stage", timeout_seconds=0),
        "log": list(DBOS.read_stream(workflow_id, "log")),
    }


def forget_everything() -> None:
    """Delete every workflow and what belongs to it, as a prune would."""
    WorkflowStatus.objects.all().delete()
    for model in (OperationOutput, Notification, WorkflowEvent, WorkflowEventHistory, StreamEntry):
        assert not model.objects.exists()


def run_shipments() -> list[str]:
    """A finished workflow with a child, events, a stream and messages; and a failed one."""
    with SetWorkflowID("ship-1"):
        handle = DBOS.start_workflow(ship, "teapot")
    DBOS.send("ship-1", "hi there", topic="hello")
    assert handle.get_result(10)["greeting"] == "hi there"
    DBOS.send("ship-1", "too late", topic="hello", idempotency_key="late-1")  # never consumed
    WorkflowStatus.objects.filter(workflow_id="ship-1").update(
        attributes={"carrier": "post", "tags": ["fragile"], "weight": {"kg": 1.5}}
    )
    with SetWorkflowID("ship-2"), pytest.raises(Damaged):
        ship_broken("vase")
    return ["ship-1", "ship-1-7", "ship-2"]


def test_export_delete_import_gives_back_the_same_workflows():
    ids = run_shipments()
    before = {workflow_id: seen(workflow_id) for workflow_id in ids}
    records = list(DBOS.export_workflows())
    assert sorted(record["workflow"]["workflow_id"] for record in records) == sorted(ids)
    lines = [json.dumps(record) for record in records]

    forget_everything()
    assert DBOS.get_workflow_status("ship-1") is None
    handles = [DBOS.import_workflow(json.loads(line)) for line in lines]

    assert {workflow_id: seen(workflow_id) for workflow_id in ids} == before
    assert handles[0].get_result(1)["label"] == "label for teapot"
    with pytest.raises(Damaged, match="vase arrived in pieces"):
        DBOS.retrieve_workflow("ship-2").get_result(1)
    assert DBOS.get_workflow_status("ship-1-7").parent_workflow_id == "ship-1"
    # Every column comes back as stored: exporting again gives the same records.
    assert list(DBOS.export_workflows()) == records
    assert packed == {"teapot": 1, "vase": 1}  # nothing ran again


def test_a_record_holds_every_row_of_the_workflow_with_dates_in_iso_format():
    run_shipments()
    (record,) = DBOS.export_workflows(workflow_ids=["ship-1"])

    assert record["format"] == "django-dbos-workflow"
    assert record["version"] == 1
    stored = WorkflowStatus.objects.get(workflow_id="ship-1")
    assert record["workflow"]["inputs"] == stored.inputs  # the stored text, not re-serialized
    assert record["workflow"]["output"] == stored.output
    assert record["workflow"]["created_at"] == stored.created_at.isoformat()
    assert record["workflow"]["created_at"].endswith("+00:00")
    # Step 4 is recv's timer, recorded only when it had to wait for the message.
    assert {1, 2, 3, 5, 6, 7, 8, 9} <= {step["function_id"] for step in record["steps"]}
    assert record["steps"][-3]["child_workflow_id"] == "ship-1-7"
    assert [(event["key"]) for event in record["events"]] == ["stage"]
    assert [(row["key"], row["function_id"]) for row in record["event_history"]] == [
        ("stage", 2),
        ("stage", 6),
    ]
    assert [(entry["position"], entry["closed"]) for entry in record["streams"]] == [
        (0, False),
        (1, False),
        (2, True),
    ]
    messages = [(m["topic"], m["consumed_at"] is not None) for m in record["messages"]]
    assert messages == [("hello", True), ("hello", False)]


def test_filters_choose_the_workflows_exported():
    run_shipments()

    def exported(**filters: Any) -> list[str]:
        return [record["workflow"]["workflow_id"] for record in DBOS.export_workflows(**filters)]

    assert exported(status="ERROR") == ["ship-2"]
    assert exported(name=label.__dbos__.name) == ["ship-1-7"]
    assert exported(workflow_ids=["ship-2", "ship-1"]) == ["ship-1", "ship-2"]
    assert exported(status=["SUCCESS"], workflow_ids=["ship-2"]) == []


def test_importing_an_existing_id_fails_and_writes_nothing():
    run_shipments()
    (record,) = DBOS.export_workflows(workflow_ids=["ship-1"])
    record["messages"].append(record["messages"][0])
    messages = Notification.objects.count()

    with pytest.raises(DBOSWorkflowConflictIDError, match="'ship-1' already exists"):
        DBOS.import_workflow(record)

    assert Notification.objects.count() == messages


def test_a_record_that_is_not_valid_says_what_is_wrong_and_writes_nothing():
    run_shipments()
    (good,) = DBOS.export_workflows(workflow_ids=["ship-2"])
    forget_everything()

    def broken(change: Any) -> dict:
        record = json.loads(json.dumps(good))
        change(record)
        return record

    cases = [
        (broken(lambda r: r.update(format="csv")), "not a workflow record"),
        (broken(lambda r: r.update(version=2)), "version 2"),
        (broken(lambda r: r.pop("steps")), "lacks 'steps'"),
        (broken(lambda r: r["workflow"].pop("created_at")), r'"workflow" lacks \'created_at\''),
        (broken(lambda r: r["workflow"].update(colour="red")), "unknown keys 'colour'"),
        (broken(lambda r: r["workflow"].update(status="LOST")), r'"workflow.status" cannot be'),
        (broken(lambda r: r["workflow"].update(priority="high")), "must be of type int"),
        (
            broken(lambda r: r["workflow"].update(attributes=["a"])),
            r'"workflow.attributes" must be a dict',
        ),
        (
            broken(lambda r: r["steps"][0].update(started_at="2026-01-01T10:00:00")),
            r'"steps\[0\].started_at" must be an ISO 8601 date and time with its time zone',
        ),
        (broken(lambda r: r["steps"].append(r["steps"][0])), "cannot be stored"),
        ("not a dict", "must be a JSON object"),
    ]
    for record, message in cases:
        with pytest.raises(DBOSInvalidArgumentError, match=message):
            DBOS.import_workflow(record)  # type: ignore[arg-type]
        assert not WorkflowStatus.objects.exists()
        assert not OperationOutput.objects.exists()


def test_an_imported_enqueued_workflow_is_dispatched_by_a_worker():
    with SetWorkflowID("ship-queued"):
        later.enqueue(ship_broken, "jug")
    (record,) = DBOS.export_workflows(status="ENQUEUED")
    forget_everything()

    DBOS.import_workflow(record)

    assert DBOS.get_workflow_status("ship-queued").status == WorkflowStatusString.ENQUEUED
    refused = pytest.raises(Damaged, match="jug arrived in pieces")
    with running_worker(queues=[later.name], recovery=False, scheduler=False), refused:
        DBOS.retrieve_workflow("ship-queued").get_result(20)


def test_an_imported_pending_workflow_is_recovered_from_its_recorded_steps():
    with SetWorkflowID("ship-3"), pytest.raises(Damaged):
        ship_broken("bowl")
    (record,) = DBOS.export_workflows(workflow_ids=["ship-3"])
    forget_everything()
    # As exported while it ran: PENDING on a process of the old database, its step recorded.
    record["workflow"].update(status="PENDING", error=None, executor_id="old-database-worker")

    DBOS.import_workflow(record)
    mark_dead("old-database-worker")

    assert recover() == 1
    with pytest.raises(Damaged, match="bowl arrived in pieces"):
        DBOS.retrieve_workflow("ship-3").get_result(10)
    assert packed["bowl"] == 1  # the recorded step was not run again


def test_export_reads_in_batches_of_a_bounded_size():
    moment = "2026-01-01T00:00:00+00:00"
    WorkflowStatus.objects.bulk_create(
        WorkflowStatus(
            workflow_id=f"bulk-{i:04}",
            name="bulk",
            status="SUCCESS",
            created_at=moment,
            updated_at=moment,
        )
        for i in range(2000)
    )
    OperationOutput.objects.bulk_create(
        OperationOutput(
            workflow_id=f"bulk-{i:04}",
            function_id=1,
            function_name="step",
            output='"ok"',
            started_at=moment,
            completed_at=moment,
        )
        for i in range(2000)
    )
    connection = connections["default"]

    with CaptureQueriesContext(connection) as queries:
        records = DBOS.export_workflows()
        first = next(records)
        after_first = len(queries)
        rest = list(records)

    # One batch of 500 workflows is read for the first record: its rows, then each of the five
    # child tables once. The whole export is four such batches and an empty last read.
    assert after_first == 6
    assert len(queries) == 4 * 6 + 1
    ids = [record["workflow"]["workflow_id"] for record in [first, *rest]]
    assert ids == [f"bulk-{i:04}" for i in range(2000)]
    assert all(len(record["steps"]) == 1 for record in [first, *rest])


def test_a_client_exports_and_imports_on_its_database():
    run_shipments()
    client = DBOSClient("default")
    records = list(client.export_workflows(status="ERROR"))
    forget_everything()

    handle = client.import_workflow(records[0])

    assert handle.get_status().status == WorkflowStatusString.ERROR


# The command line -------------------------------------------------------------------------------


def dbos(*args: str) -> str:
    out = io.StringIO()
    call_command("dbos", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_cli_round_trip_through_a_gzip_file(tmp_path: Path):
    ids = run_shipments()
    before = {workflow_id: seen(workflow_id) for workflow_id in ids}
    archive = tmp_path / "workflows.jsonl.gz"

    dbos("workflow", "export", "--output", str(archive))
    with gzip.open(archive, "rt") as lines:
        assert len(lines.readlines()) == 3
    forget_everything()

    assert dbos("workflow", "import", str(archive)) == "Imported 3 workflows.\n"
    assert {workflow_id: seen(workflow_id) for workflow_id in ids} == before
    with pytest.raises(CommandError, match=r"Line 1 .* 'ship-1' already exists"):
        dbos("workflow", "import", str(archive))
    skipped = dbos("workflow", "import", "--skip-existing", str(archive))
    assert skipped == "Imported 0 workflows (3 already there, skipped).\n"


def test_cli_export_to_stdout_with_filters():
    run_shipments()

    out = dbos("workflow", "export", "--status", "error")

    (line,) = out.splitlines()
    assert json.loads(line)["workflow"]["workflow_id"] == "ship-2"


def test_cli_import_stops_at_the_first_bad_line_keeping_those_before(tmp_path: Path):
    run_shipments()
    lines = [json.dumps(record) for record in DBOS.export_workflows()]
    forget_everything()
    path = tmp_path / "workflows.jsonl"
    path.write_text(f"{lines[0]}\n\n{lines[1]}\n{{oops\n{lines[2]}\n")

    with pytest.raises(CommandError, match=r"Line 4 of .*: is not JSON .* The 2 workflows before"):
        dbos("workflow", "import", str(path))

    assert sorted(WorkflowStatus.objects.values_list("workflow_id", flat=True)) == [
        "ship-1",
        "ship-1-7",
    ]


def test_cli_import_of_a_missing_file_says_so(tmp_path: Path):
    with pytest.raises(CommandError, match=r"Cannot read .*nothing\.jsonl"):
        dbos("workflow", "import", str(tmp_path / "nothing.jsonl"))


def test_cli_import_reads_stdin_for_a_dash_gzip_or_not(monkeypatch: pytest.MonkeyPatch):
    run_shipments()
    lines = "".join(json.dumps(record) + "\n" for record in DBOS.export_workflows())
    for data in (lines.encode(), gzip.compress(lines.encode())):
        forget_everything()
        stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)))  # type: ignore[arg-type]
        monkeypatch.setattr("sys.stdin", stdin)

        assert dbos("workflow", "import", "-") == "Imported 3 workflows.\n"
