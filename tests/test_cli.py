"""`manage.py dbos`: the DBOS CLI's verbs over workflows and queues, as tables and as JSON."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from django_dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    Queue,
    SetWorkflowID,
    WorkflowStatusString,
)

from .conftest import ROOT, Processes, wait_until
from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

orders = Queue(
    "cli-orders",
    concurrency=1,
    limiter={"limit": 10, "period": 60},
    worker_concurrency=1,
    priority_enabled=True,
)
parked = Queue("cli-parked")  # no worker serves it in these tests
Queue("cli-partitioned", partition_queue=True)

release = threading.Event()
flaky = {"fails": True}
reserved: Counter[str] = Counter()


class OutOfStock(Exception):
    pass


@DBOS.step()
def reserve(item: str) -> str:
    reserved[item] += 1
    return f"reserved {item}"


@DBOS.step()
def charge(item: str) -> str:
    if flaky["fails"]:
        raise OutOfStock(f"no {item} left")
    return f"charged {item}"


@DBOS.step()
def wait_for_release() -> None:
    release.wait(10)


@DBOS.workflow()
def order(item: str) -> dict:
    return {"note": reserve(item)}


@DBOS.workflow()
def paid_order(item: str) -> list[str]:
    return [reserve(item), charge(item)]


@DBOS.workflow()
def basket(items: list[str]) -> list[dict]:
    return [order(item) for item in items]


@DBOS.workflow()
def held_order(item: str) -> str:
    wait_for_release()
    return item


@pytest.fixture(autouse=True)
def _reset():
    release.clear()
    flaky["fails"] = True
    yield
    release.set()


def dbos(*args: str) -> str:
    """Run `manage.py dbos ARGS` in this process and return what it printed."""
    out = io.StringIO()
    call_command("dbos", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def table(output: str) -> list[list[str]]:
    """The cells of a printed table, header first (cells hold no double spaces)."""
    return [[cell.strip() for cell in line.split("  ") if cell] for line in output.splitlines()]


def run_three() -> None:
    """cli-1 succeeds, cli-2 fails, cli-3 waits on a queue."""
    with SetWorkflowID("cli-1"):
        order("book")
    with SetWorkflowID("cli-2"), pytest.raises(OutOfStock):
        paid_order("pen")
    with SetWorkflowID("cli-3"):
        parked.enqueue(order, "lamp")


def test_workflow_list_prints_a_table_of_workflows():
    run_three()

    rows = table(dbos("workflow", "list"))

    assert rows[0] == ["ID", "NAME", "STATUS", "QUEUE", "CREATED", "UPDATED"]
    assert [row[:4] for row in rows[1:]] == [
        ["cli-1", "tests.test_cli.order", "SUCCESS", "-"],
        ["cli-2", "tests.test_cli.paid_order", "ERROR", "-"],
        ["cli-3", "tests.test_cli.order", "ENQUEUED", "cli-parked"],
    ]


def test_workflow_list_filters_pages_and_sorts():
    run_three()

    def ids(*options: str) -> list[str]:
        return [row[0] for row in table(dbos("workflow", "list", *options))[1:]]

    assert ids("--status", "error", "enqueued") == ["cli-2", "cli-3"]
    assert ids("--status", "SUCCESS", "--status", "ERROR") == ["cli-1", "cli-2"]
    assert ids("--name", "tests.test_cli.order") == ["cli-1", "cli-3"]
    assert ids("--queue", "cli-parked") == ["cli-3"]
    assert ids("--limit", "1", "--offset", "1") == ["cli-2"]
    assert ids("--sort-desc") == ["cli-3", "cli-2", "cli-1"]
    assert dbos("workflow", "list", "--status", "CANCELLED") == "No workflows match.\n"


def test_workflow_list_json_is_an_array_of_workflows():
    run_three()

    found = json.loads(dbos("workflow", "list", "--json"))

    assert [(wf["workflow_id"], wf["status"], wf["queue_name"]) for wf in found] == [
        ("cli-1", "SUCCESS", None),
        ("cli-2", "ERROR", None),
        ("cli-3", "ENQUEUED", "cli-parked"),
    ]
    assert found[0]["name"] == "tests.test_cli.order"
    assert found[0]["created_at"].startswith(str(DBOS.get_workflow_status("cli-1").created_at)[:10])
    assert json.loads(dbos("workflow", "list", "--json", "--status", "CANCELLED")) == []


def test_long_values_are_cut_in_tables_but_whole_in_json():
    with SetWorkflowID("cli-" + "x" * 60):
        order("book")

    row = table(dbos("workflow", "list"))[1]
    assert row[0] == "cli-" + "x" * 35 + "…"
    assert json.loads(dbos("workflow", "list", "--json"))[0]["workflow_id"] == "cli-" + "x" * 60


def test_workflow_get_shows_input_output_and_error():
    run_three()

    succeeded = dict(line.split(None, 1) for line in dbos("workflow", "get", "cli-1").splitlines())
    failed = dict(line.split(None, 1) for line in dbos("workflow", "get", "cli-2").splitlines())

    assert succeeded["workflow_id"] == "cli-1"
    assert succeeded["status"] == "SUCCESS"
    assert json.loads(succeeded["input"]) == {"args": ["book"], "kwargs": {}}
    assert json.loads(succeeded["output"]) == {"note": "reserved book"}
    assert succeeded["error"] == "-"
    assert failed["status"] == "ERROR"
    assert failed["error"] == "OutOfStock: no pen left"


def test_workflow_get_json_has_every_field():
    run_three()

    got = json.loads(dbos("workflow", "get", "cli-2", "--json"))

    assert got["workflow_id"] == "cli-2"
    assert got["status"] == "ERROR"
    assert got["input"] == {"args": ["pen"], "kwargs": {}}
    assert got["output"] is None
    assert got["error"] == "OutOfStock: no pen left"
    assert set(got) >= {"created_at", "updated_at", "app_version", "forked_from", "priority"}


def test_workflow_steps_show_outputs_errors_and_children():
    with SetWorkflowID("cli-basket"):
        basket(["book", "pen"])
    with SetWorkflowID("cli-paid"), pytest.raises(OutOfStock):
        paid_order("lamp")

    children = table(dbos("workflow", "steps", "cli-basket"))
    failed = table(dbos("workflow", "steps", "cli-paid"))

    assert children[0] == ["STEP", "NAME", "OUTPUT / ERROR", "CHILD", "STARTED", "DURATION"]
    child_ids = [step.child_workflow_id for step in DBOS.list_workflow_steps("cli-basket")]
    assert [row[0] for row in children[1:]] == ["1", "2"]
    assert [row[3] for row in children[1:]] == child_ids
    assert all(child_id for child_id in child_ids)
    assert [row[:3] for row in failed[1:]] == [
        ["1", "tests.test_cli.reserve", '"reserved lamp"'],
        ["2", "tests.test_cli.charge", "raised OutOfStock: no lamp left"],
    ]
    assert re.fullmatch(r"[\d.]+ m?s", failed[1][5])


def test_workflow_steps_json():
    with SetWorkflowID("cli-paid"), pytest.raises(OutOfStock):
        paid_order("lamp")

    steps = json.loads(dbos("workflow", "steps", "cli-paid", "--json"))

    assert [(s["function_id"], s["function_name"], s["output"], s["error"]) for s in steps] == [
        (1, "tests.test_cli.reserve", "reserved lamp", None),
        (2, "tests.test_cli.charge", None, "OutOfStock: no lamp left"),
    ]
    assert steps[0]["duration_ms"] >= 0
    assert steps[0]["child_workflow_id"] is None


def test_cancel_then_resume_a_queued_workflow():
    with SetWorkflowID("cli-queued"):
        parked.enqueue(order, "lamp")

    assert dbos("workflow", "cancel", "cli-queued") == "Cancelled workflow cli-queued.\n"
    assert DBOS.get_workflow_status("cli-queued").status == WorkflowStatusString.CANCELLED

    resumed = dbos("workflow", "resume", "cli-queued")
    assert resumed == "Resumed workflow cli-queued: back on queue cli-parked.\n"
    assert DBOS.get_workflow_status("cli-queued").status == WorkflowStatusString.ENQUEUED


def test_cancel_a_running_workflow():
    handle = DBOS.start_workflow(held_order, "lamp")

    assert dbos("workflow", "cancel", handle.workflow_id).startswith("Cancelled workflow")
    release.set()

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert handle.get_status().status == WorkflowStatusString.CANCELLED
    assert DBOS.list_workflow_steps(handle.workflow_id) == []


def test_resume_runs_a_failed_workflow_here_to_its_end():
    with SetWorkflowID("cli-retry"), pytest.raises(OutOfStock):
        paid_order("pen")
    flaky["fails"] = False

    assert dbos("workflow", "resume", "cli-retry") == "Resumed workflow cli-retry: SUCCESS.\n"

    status = DBOS.get_workflow_status("cli-retry")
    assert status.output == ["reserved pen", "charged pen"]


def test_cancel_and_resume_of_a_finished_workflow_change_nothing():
    with SetWorkflowID("cli-done"):
        order("book")

    assert "is SUCCESS: there is nothing to cancel" in dbos("workflow", "cancel", "cli-done")
    assert "is SUCCESS: there is nothing to resume" in dbos("workflow", "resume", "cli-done")
    assert DBOS.get_workflow_status("cli-done").status == WorkflowStatusString.SUCCESS


def test_fork_prints_the_new_workflow_id():
    with SetWorkflowID("cli-paid"), pytest.raises(OutOfStock):
        paid_order("pen")
    flaky["fails"] = False

    new_id = dbos("workflow", "fork", "cli-paid", "--step", "2").strip()

    fork = DBOS.get_workflow_status(new_id)
    assert fork.forked_from == "cli-paid"
    assert fork.status == WorkflowStatusString.SUCCESS
    assert fork.output == ["reserved pen", "charged pen"]


def test_fork_without_a_step_runs_the_whole_workflow_again():
    reserved.clear()
    with SetWorkflowID("cli-from-start"):
        order("book")

    new_id = dbos("workflow", "fork", "cli-from-start").strip()

    steps = DBOS.list_workflow_steps(new_id)
    assert DBOS.get_workflow_status(new_id).forked_from == "cli-from-start"
    assert [step.function_id for step in steps] == [
        step.function_id for step in DBOS.list_workflow_steps("cli-from-start")
    ]
    assert reserved["book"] == 2  # step 1 ran again: nothing was copied


def test_fork_json_for_another_version_is_left_enqueued():
    with SetWorkflowID("cli-1"):
        order("book")

    fork = json.loads(dbos("workflow", "fork", "cli-1", "--application-version", "v9", "--json"))

    assert fork["forked_from"] == "cli-1"
    assert fork["status"] == "ENQUEUED"
    assert fork["app_version"] == "v9"
    assert DBOS.get_workflow_status(fork["workflow_id"]).status == WorkflowStatusString.ENQUEUED


@pytest.mark.parametrize(
    "verb",
    [
        ["get", "nope"],
        ["steps", "nope"],
        ["cancel", "nope"],
        ["resume", "nope"],
        ["fork", "nope", "--step", "1"],
    ],
)
def test_an_unknown_workflow_id_is_a_command_error(verb):
    with pytest.raises(CommandError, match="There is no workflow with id 'nope'"):
        dbos("workflow", *verb)


def test_bad_arguments_are_command_errors():
    with SetWorkflowID("cli-1"):
        order("book")

    with pytest.raises(CommandError, match="start_step must be a step number from 1"):
        dbos("workflow", "fork", "cli-1", "--step", "0")
    with pytest.raises(CommandError, match="invalid choice: 'DONE'"):
        dbos("workflow", "list", "--status", "done")
    with pytest.raises(CommandError, match="--limit must be at least 1"):
        dbos("workflow", "list", "--limit", "0")


def test_queue_list_shows_limits_load_and_the_queues_no_live_worker_serves():
    with running_worker(queues=["cli-orders"], recovery=False, scheduler=False):
        for item in ("a", "b", "c"):
            orders.enqueue(held_order, item)
        parked.enqueue(order, "lamp")
        wait_until(lambda: DBOS.list_queued_workflows(queue_name="cli-orders", status="PENDING"))

        output = dbos("queue", "list")
        found = {queue["name"]: queue for queue in json.loads(dbos("queue", "list", "--json"))}
        release.set()

    listing, warnings = output.split("\n\n")
    rows = {row[0]: row for row in table(listing)}
    assert rows["NAME"] == [
        "NAME", "CONCURRENCY", "PER WORKER", "RATE LIMIT", "PRIORITY", "PARTITIONS",
        "ENQUEUED", "PENDING", "OLDEST WAITING", "LIVE WORKERS", "STRANDED",
    ]  # fmt: skip
    assert rows["cli-orders"][:8] == ["cli-orders", "1", "1", "10 / 60 s", "yes", "no", "2", "1"]
    assert re.fullmatch(r"\d+ s", rows["cli-orders"][8])
    assert rows["cli-orders"][9] == "1"
    assert rows["cli-partitioned"] == [
        "cli-partitioned", "-", "-", "-", "no", "yes", "0", "0", "-", "0", "0",
    ]  # fmt: skip
    assert [rows["cli-parked"][i] for i in (6, 7, 9)] == ["1", "0", "0"]
    # Only the queue with waiting work and no live worker is flagged, after the table.
    assert warnings.splitlines() == [
        "cli-parked: No live worker serves this queue: its workflows wait until a worker "
        "that serves it starts (manage.py rundbosworker)."
    ]
    assert found["cli-orders"] == {
        "name": "cli-orders",
        "declared": True,
        "concurrency": 1,
        "worker_concurrency": 1,
        "limiter": {"limit": 10, "period": 60.0},
        "priority_enabled": True,
        "partition_queue": False,
        "enqueued": 2,
        "pending": 1,
        "oldest_enqueued_age_seconds": found["cli-orders"]["oldest_enqueued_age_seconds"],
        "live_workers": 1,
        "served": True,
        "stranded": 0,
        "warning": None,
    }
    assert found["cli-orders"]["oldest_enqueued_age_seconds"] >= 0
    assert found["cli-parked"]["warning"].startswith("No live worker serves this queue")


def test_manage_py_dbos_as_a_process(processes: Processes):
    run_three()

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "manage.py", "dbos", *args]
        return subprocess.run(
            command, cwd=ROOT, env=processes.env(), capture_output=True, text=True, timeout=60
        )

    listed = manage("workflow", "list", "--json")
    missing = manage("workflow", "get", "nope")
    wrong = manage("workflow", "list", "--status", "done")

    assert listed.returncode == 0, listed.stderr
    assert [wf["workflow_id"] for wf in json.loads(listed.stdout)] == ["cli-1", "cli-2", "cli-3"]
    assert missing.returncode == 1
    assert missing.stderr.strip() == "CommandError: There is no workflow with id 'nope'."
    assert "Traceback" not in missing.stderr
    assert wrong.returncode == 2
    assert "invalid choice: 'DONE'" in wrong.stderr
