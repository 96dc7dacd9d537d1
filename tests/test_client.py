"""DBOSClient: enqueue by name and manage workflows with only the database of the system tables."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from django_dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSQueueDeduplicatedError,
    Queue,
    QueueStatus,
    WorkflowStatusString,
)
from django_dbos.engine import registry
from django_dbos.models import WorkflowStatus

from .conftest import Processes, wait_until
from .workers import Gates, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

client_queue = Queue("tcl-client")
client_priority_queue = Queue("tcl-priority", concurrency=1, priority_enabled=True)

gates = Gates()


@DBOS.step()
def waiting_step(name: str) -> str:
    gates.pass_through(name)
    return name


@DBOS.workflow(name="client.greet")
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@DBOS.workflow(name="client.gated")
def gated(name: str) -> str:
    return waiting_step(name)


@DBOS.workflow(name="client.conversation")
def conversation() -> str:
    DBOS.set_event("ready", True)
    message = DBOS.recv("greeting", timeout_seconds=10)
    DBOS.set_event("heard", message)
    return f"heard {message}"


@DBOS.workflow(name="client.two_steps")
def two_steps(name: str) -> list[str]:
    return [waiting_step(f"{name} 1"), waiting_step(f"{name} 2")]


@DBOS.workflow(name="client.one_gated_step")
def one_gated_step(name: str) -> str:
    return waiting_step(name)


@pytest.fixture(autouse=True)
def _reset():
    gates.reset()
    yield
    gates.open_all()


@pytest.fixture
def worker():
    with running_worker(before_stop=gates.open_all) as running:
        yield running


@pytest.fixture
def client() -> DBOSClient:
    return DBOSClient()


def options(workflow_name: str, queue_name: str = "tcl-client", **more) -> dict:
    return {"queue_name": queue_name, "workflow_name": workflow_name, **more}


def test_the_client_enqueues_by_name_and_its_handle_gets_the_result(worker, client):
    handle = client.enqueue(options("client.greet"), "Ada", punctuation="?")

    assert handle.get_result(timeout=10) == "hello Ada?"
    status = handle.get_status()
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.name == "client.greet"
    assert status.queue_name == "tcl-client"
    assert status.input == {"args": ["Ada"], "kwargs": {"punctuation": "?"}}
    assert status.app_version == registry.application_version()  # the worker's, at dequeue


def test_a_client_enqueue_with_a_workflow_id_is_idempotent(worker, client):
    first = client.enqueue(options("client.greet", workflow_id="greet-once"), "Ada")
    second = client.enqueue(options("client.greet", workflow_id="greet-once"), "Bob")

    assert first.workflow_id == second.workflow_id == "greet-once"
    assert second.get_result(timeout=10) == "hello Ada!"
    assert WorkflowStatus.objects.count() == 1


def test_the_client_refuses_missing_and_malformed_options(client):
    with pytest.raises(ValueError):
        client.enqueue({"queue_name": "tcl-client"}, "Ada")
    with pytest.raises(ValueError):
        client.enqueue({"workflow_name": "client.greet"}, "Ada")
    with pytest.raises(ValueError, match="queue_name"):
        client.enqueue(options("client.greet", queue_name=""), "Ada")
    assert WorkflowStatus.objects.count() == 0


def test_on_a_queue_nothing_declared_the_client_still_checks_what_it_can(client):
    undeclared = "tcl-not-declared-here"
    with pytest.raises(ValueError, match="priority"):
        client.enqueue(options("client.greet", undeclared, priority=0), "Ada")
    with pytest.raises(ValueError, match="queue_partition_key"):
        client.enqueue(options("client.greet", undeclared, queue_partition_key=""), "Ada")
    with pytest.raises(ValueError, match="delay_seconds"):
        client.enqueue(options("client.greet", undeclared, delay_seconds=-1), "Ada")
    with pytest.raises(ValueError, match="workflow_timeout"):
        client.enqueue(options("client.greet", undeclared, workflow_timeout="soon"), "Ada")
    assert WorkflowStatus.objects.count() == 0


# Only the worker started by the next test declares these queues and this workflow: this
# process, like a web tier deployed before its workers, has never heard of them.
LATE_WORKER = """
from django.core.management import call_command
from django_dbos import DBOS, Queue

Queue("tcl-late")
Queue("tcl-late-partitioned", partition_queue=True)


@DBOS.workflow(name="client.late")
def late(name):
    return f"late {name}"


call_command("rundbosworker", "--no-scheduler")
"""


def queue_named(name: str) -> QueueStatus:
    [found] = [queue for queue in DBOS.list_queues() if queue.name == name]
    return found


def test_a_client_enqueue_before_any_worker_waits_until_a_worker_declares_the_queue(
    client, processes, admin_client
):
    assert "tcl-late" not in [queue.name for queue in registry.queues()]
    plain = client.enqueue(options("client.late", "tcl-late"), "Ada")
    keyed = client.enqueue(
        options("client.late", "tcl-late-partitioned", queue_partition_key="k"), "Bob"
    )
    # What only the queue's declaration can tell is checked when a worker picks them up.
    prioritized = client.enqueue(options("client.late", "tcl-late", priority=3), "Cy")
    unkeyed = client.enqueue(options("client.late", "tcl-late-partitioned"), "Di")

    assert plain.get_status().status == WorkflowStatusString.ENQUEUED
    late = queue_named("tcl-late")
    assert (late.declared, late.enqueued, late.pending) == (False, 2, 0)
    assert (late.live_workers, late.served) == (0, False)
    assert late.priority_enabled is late.partition_queue is late.concurrency is None
    assert late.oldest_enqueued_age_seconds >= 0
    assert late.warning.startswith("No live worker serves this queue")
    listing = dbos_queue_list()
    assert f"tcl-late: {late.warning}" in listing
    assert table_row(listing, "tcl-late")[:8] == ["tcl-late", "-", "-", "-", "-", "-", "2", "0"]
    dashboard = admin_client.get("/admin/django_dbos/workflowstatus/dashboard/").content.decode()
    assert late.warning in dashboard.split('id="queue-tcl-late"')[1].split("</tr>")[0]

    processes.python(LATE_WORKER)

    assert plain.get_result(timeout=60) == "late Ada"
    assert keyed.get_result(timeout=60) == "late Bob"
    with pytest.raises(DBOSException, match="'tcl-late' does not use priorities"):
        prioritized.get_result(timeout=60)
    with pytest.raises(DBOSException, match="'tcl-late-partitioned' is partitioned"):
        unkeyed.get_result(timeout=60)
    late = queue_named("tcl-late")
    assert (late.declared, late.enqueued, late.pending, late.warning) == (True, 0, 0, None)
    assert (late.live_workers, late.served) == (1, True)
    assert late.priority_enabled is False


def test_a_misspelt_queue_shows_unserved_while_the_worker_serves_the_real_one(worker, client):
    lost = client.enqueue(options("client.greet", "tcl-clinet"), "Ada")
    served = client.enqueue(options("client.greet"), "Bob")
    assert served.get_result(timeout=10) == "hello Bob!"

    queues = {queue.name: queue for queue in client.list_queues()}
    assert (queues["tcl-client"].live_workers, queues["tcl-client"].warning) == (1, None)
    misspelt = queues["tcl-clinet"]
    assert (misspelt.declared, misspelt.enqueued, misspelt.served) == (False, 1, False)
    assert misspelt.warning == (
        "No live worker serves this queue, and no code declares it: check the queue name, or "
        "start a worker whose code declares it."
    )
    assert lost.get_status().status == WorkflowStatusString.ENQUEUED


def test_list_queues_counts_waiting_and_running_workflows_and_their_workers(client):
    with running_worker(before_stop=gates.open_all, queues=["tcl-priority"]):
        blocker = client.enqueue(options("client.gated", "tcl-priority"), "blocker")
        assert gates.wait_reached("blocker")
        for name in ("a", "b"):
            client.enqueue(options("client.greet", "tcl-priority", priority=5), name)
        client.enqueue(options("client.greet"), "elsewhere")  # this worker serves tcl-priority only
        queues = {queue.name: queue for queue in DBOS.list_queues()}
        gates.open("blocker")
        assert blocker.get_result(timeout=10) == "blocker"

    limited = queues["tcl-priority"]
    assert (limited.enqueued, limited.pending) == (2, 1)
    assert (limited.live_workers, limited.served, limited.warning) == (1, True, None)
    assert (limited.declared, limited.concurrency, limited.priority_enabled) == (True, 1, True)
    assert limited.limiter is None
    assert 0 <= limited.oldest_enqueued_age_seconds < 10
    plain = queues["tcl-client"]
    assert (plain.declared, plain.enqueued, plain.pending, plain.served) == (True, 1, 0, False)
    assert plain.warning.startswith("No live worker serves this queue: its workflows wait")


def dbos_queue_list() -> str:
    out = io.StringIO()
    call_command("dbos", "queue", "list", stdout=out)
    return out.getvalue()


def table_row(listing: str, name: str) -> list[str]:
    [row] = [line.split() for line in listing.splitlines() if line.startswith(f"{name} ")]
    return row


def test_the_client_checks_enqueue_options_against_the_queue(client):
    with pytest.raises(DBOSException, match="priorit"):
        client.enqueue(options("client.greet", priority=3), "Ada")
    with pytest.raises(ValueError):
        client.enqueue(options("client.greet", "tcl-priority", priority=0), "Ada")
    client.enqueue(options("client.greet", deduplication_id="d-1"), "Ada")
    with pytest.raises(DBOSQueueDeduplicatedError):
        client.enqueue(options("client.greet", deduplication_id="d-1"), "Bob")
    assert WorkflowStatus.objects.count() == 1


def test_client_priorities_order_the_queue(worker, client):
    blocker = client.enqueue(options("client.gated", "tcl-priority"), "blocker")
    assert gates.wait_reached("blocker")
    low = client.enqueue(options("client.greet", "tcl-priority", priority=9), "low")
    high = client.enqueue(options("client.greet", "tcl-priority", priority=1), "high")
    gates.open("blocker")

    assert [h.get_result(timeout=10) for h in (blocker, low, high)] == [
        "blocker",
        "hello low!",
        "hello high!",
    ]
    started = {
        h.workflow_id: WorkflowStatus.objects.get(workflow_id=h.workflow_id).started_at
        for h in (low, high)
    }
    assert started[high.workflow_id] < started[low.workflow_id]


def test_a_client_enqueue_for_another_application_version_is_left_to_its_workers(worker, client):
    other = client.enqueue(options("client.greet", app_version="some-other-version"), "later")
    mine = client.enqueue(options("client.greet"), "now")

    assert mine.get_result(timeout=10) == "hello now!"
    with pytest.raises(TimeoutError):
        other.get_result(timeout=0.3)
    status = other.get_status()
    assert status.status == WorkflowStatusString.ENQUEUED
    assert status.app_version == "some-other-version"


def test_a_workflow_the_worker_does_not_have_ends_in_error(worker, client):
    handle = client.enqueue(options("client.nobody_registered_this"), 1)

    with pytest.raises(DBOSNotRegisteredError):
        handle.get_result(timeout=10)
    assert handle.get_status().status == WorkflowStatusString.ERROR


def test_a_client_workflow_timeout_cancels_a_workflow_that_runs_too_long(worker, client):
    handle = client.enqueue(options("client.gated", workflow_timeout=0.3), "too long")
    assert gates.wait_reached("too long")

    wait_until(lambda: handle.get_status().status == WorkflowStatusString.CANCELLED, 5)
    gates.open("too long")  # the step ends; its late outcome is refused
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert client.list_workflow_steps(handle.workflow_id) == []


def test_the_client_sends_messages_and_reads_events(worker, client):
    handle = client.enqueue(options("client.conversation"))
    assert client.get_event(handle.workflow_id, "ready", timeout_seconds=10) is True

    client.send(handle.workflow_id, "hi there", topic="greeting")

    assert client.get_event(handle.workflow_id, "heard", timeout_seconds=10) == "hi there"
    assert client.retrieve_workflow(handle.workflow_id).get_result(timeout=10) == "heard hi there"
    assert client.get_event(handle.workflow_id, "missing", timeout_seconds=0) is None


def test_the_client_cancels_resumes_forks_and_lists(worker, client):
    handle = client.enqueue(options("client.two_steps"), "job")
    assert gates.wait_reached("job 1")
    assert [s.workflow_id for s in client.list_queued_workflows(queue_name="tcl-client")] == [
        handle.workflow_id
    ]

    client.cancel_workflow(handle.workflow_id)
    assert handle.get_status().status == WorkflowStatusString.CANCELLED
    gates.open("job 1")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert client.list_workflow_steps(handle.workflow_id) == []  # step 1 ended after the cancel

    gates.open("job 2")
    resumed = client.resume_workflow(handle.workflow_id)
    assert resumed.get_result(timeout=10) == ["job 1", "job 2"]
    steps = client.list_workflow_steps(handle.workflow_id)
    assert [(s.function_id, s.output) for s in steps] == [(1, "job 1"), (2, "job 2")]

    fork = client.fork_workflow(handle.workflow_id, 2)
    assert fork.get_result(timeout=10) == ["job 1", "job 2"]
    assert fork.get_status().forked_from == handle.workflow_id

    listed = client.list_workflows(name="client.two_steps")
    assert [s.workflow_id for s in listed] == [handle.workflow_id, fork.workflow_id]
    assert [s.workflow_id for s in client.list_workflows(status="CANCELLED")] == []
    assert client.list_queued_workflows() == []


def test_the_client_reports_unknown_workflows(client):
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.retrieve_workflow("no-such-workflow")
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.cancel_workflow("no-such-workflow")
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.resume_workflow("no-such-workflow")


def cancelled_workflow() -> str:
    """A workflow of this test module (code a client process does not have), cancelled."""
    handle = DBOS.start_workflow(one_gated_step, "elsewhere")
    assert gates.wait_reached("elsewhere")
    DBOS.cancel_workflow(handle.workflow_id)
    gates.open("elsewhere")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    return handle.workflow_id


def run_client(processes: Processes, call: str) -> str:
    """Run `client.<call>` in another process, which lacks the workflow code; return its output."""
    process = processes.python(
        f"from django_dbos import DBOSClient\nprint(DBOSClient().{call}.workflow_id, flush=True)\n"
    )
    assert process.wait(30) == 0
    with open(process.log_path) as log:  # type: ignore[attr-defined]
        return log.read().strip().splitlines()[-1]


def test_a_workflow_resumed_by_a_client_without_the_code_is_run_by_a_worker(processes):
    workflow_id = cancelled_workflow()

    run_client(processes, f"resume_workflow({workflow_id!r})")

    with running_worker():
        assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=2) == "elsewhere"


def test_a_workflow_forked_by_a_client_without_the_code_is_run_by_a_worker(processes):
    workflow_id = cancelled_workflow()

    fork_id = run_client(processes, f"fork_workflow({workflow_id!r}, 1)")

    with running_worker():
        assert DBOS.retrieve_workflow(fork_id).get_result(timeout=2) == "elsewhere"
