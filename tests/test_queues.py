"""Queues: dispatch by a worker, FIFO, concurrency, rate limits, priority, deduplication,
partitions, delays and transactional enqueue."""

from __future__ import annotations

import datetime
import threading

import pytest
from django.db import transaction

from django_dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSNotRegisteredError,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    WorkflowStatusString,
)
from django_dbos.models import WorkflowStatus

from .conftest import wait_until
from .workers import Gates, Intervals, running_worker

pytestmark = pytest.mark.django_db(transaction=True)

fifo_queue = Queue("tq-fifo", concurrency=1)
plain_queue = Queue("tq-plain")
per_worker_queue = Queue("tq-worker-concurrency", worker_concurrency=2)
global_queue = Queue("tq-global-concurrency", concurrency=2)
limited_queue = Queue("tq-limited", limiter={"limit": 5, "period": 1})
priority_queue = Queue("tq-priority", concurrency=1, priority_enabled=True)
dedup_queue = Queue("tq-dedup")
other_dedup_queue = Queue("tq-dedup-other")
partitioned_queue = Queue("tq-partitioned", concurrency=1, partition_queue=True)

gates = Gates()
intervals = Intervals()
_lock = threading.Lock()
started: list[str] = []


def note(label: str) -> None:
    with _lock:
        started.append(label)


def started_labels() -> list[str]:
    with _lock:
        return list(started)


@DBOS.workflow()
def record(label: str) -> str:
    note(label)
    return f"done {label}"


@DBOS.step()
def gate_step(label: str) -> None:
    gates.pass_through(label)


@DBOS.workflow()
def gated(label: str) -> str:
    note(label)
    gate_step(label)
    return f"done {label}"


@DBOS.step()
def busy(label: str, seconds: float) -> None:
    intervals.run(label, seconds)


@DBOS.workflow()
def timed(label: str, seconds: float = 0.2) -> str:
    busy(label, seconds)
    return label


@DBOS.workflow(max_recovery_attempts=1)
def fragile(label: str) -> str:
    note(label)
    return f"done {label}"


@DBOS.workflow()
def enqueues_a_deduplicated_child() -> str:
    try:
        with SetEnqueueOptions(deduplication_id="held"):
            dedup_queue.enqueue(record, "child")
        outcome = "enqueued"
    except DBOSQueueDeduplicatedError:
        outcome = "deduplicated"
    gate_step("after the enqueue")
    return outcome


def not_a_workflow(label: str) -> str:
    return label


@pytest.fixture(autouse=True)
def _reset():
    gates.reset()
    intervals.clear()
    with _lock:
        started.clear()
    yield
    gates.open_all()


@pytest.fixture
def worker():
    with running_worker(before_stop=gates.open_all) as running:
        yield running


def enqueued_ids() -> list[str]:
    return list(WorkflowStatus.objects.order_by("created_at").values_list("workflow_id", flat=True))


def test_an_enqueued_workflow_runs_on_a_worker_and_its_handle_gets_the_result(worker):
    handle = plain_queue.enqueue(record, "first")

    assert handle.get_result(timeout=10) == "done first"
    status = handle.get_status()
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.queue_name == "tq-plain"
    assert status.executor_id == worker.dispatcher.process.executor_id


def test_without_a_worker_an_enqueued_workflow_waits():
    handle = plain_queue.enqueue(record, "waiting")

    with pytest.raises(TimeoutError):
        handle.get_result(timeout=0.3)
    assert handle.get_status().status == WorkflowStatusString.ENQUEUED
    assert started_labels() == []


def test_a_queue_of_concurrency_one_runs_its_workflows_in_enqueue_order():
    labels = [f"w{i}" for i in range(6)]
    handles = [fifo_queue.enqueue(record, label) for label in labels]

    with running_worker():
        assert [h.get_result(timeout=10) for h in handles] == [f"done {x}" for x in labels]

    assert started_labels() == labels


def test_enqueueing_something_that_is_not_a_workflow_raises_and_writes_nothing():
    with pytest.raises(DBOSNotRegisteredError):
        plain_queue.enqueue(not_a_workflow, "x")
    with pytest.raises(DBOSNotRegisteredError):
        plain_queue.enqueue(gate_step, "x")  # a step is not a workflow either
    assert enqueued_ids() == []


def test_worker_concurrency_bounds_what_runs_at_once_in_the_process(worker):
    handles = [per_worker_queue.enqueue(timed, f"w{i}") for i in range(6)]

    assert sorted(h.get_result(timeout=10) for h in handles) == [f"w{i}" for i in range(6)]
    assert intervals.max_overlap() == 2


def test_global_concurrency_bounds_what_runs_at_once(worker):
    handles = [global_queue.enqueue(timed, f"g{i}") for i in range(6)]

    assert sorted(h.get_result(timeout=10) for h in handles) == [f"g{i}" for i in range(6)]
    assert intervals.max_overlap() == 2


def test_the_rate_limiter_bounds_the_starts_in_any_period(worker):
    handles = [limited_queue.enqueue(record, f"r{i}") for i in range(12)]

    assert len([h.get_result(timeout=15) for h in handles]) == 12
    starts = sorted(
        WorkflowStatus.objects.filter(queue_name="tq-limited").values_list("started_at", flat=True)
    )
    assert len(starts) == 12
    period = datetime.timedelta(seconds=1)
    busiest = max(sum(1 for s in starts if first <= s < first + period) for first in starts)
    assert busiest == 5
    assert starts[-1] - starts[0] >= 2 * period  # 12 starts need three periods


def test_workflows_without_priority_go_first_then_the_highest_priority(worker):
    blocker = priority_queue.enqueue(gated, "blocker")
    assert gates.wait_reached("blocker")
    handles = []
    for label, priority in (("p5", 5), ("p3", 3), ("none", None), ("p1", 1)):
        with SetEnqueueOptions(priority=priority):
            handles.append(priority_queue.enqueue(record, label))
    gates.open("blocker")

    assert blocker.get_result(timeout=10) == "done blocker"
    results = [h.get_result(timeout=10) for h in handles]
    assert results == ["done p5", "done p3", "done none", "done p1"]
    assert started_labels() == ["blocker", "none", "p1", "p3", "p5"]
    assert [h.get_status().priority for h in handles] == [5, 3, 0, 1]


def test_a_priority_needs_a_queue_with_priorities_enabled_and_must_be_positive():
    with SetEnqueueOptions(priority=1), pytest.raises(DBOSException, match="priorit"):
        plain_queue.enqueue(record, "x")
    for priority in (0, -3):
        with SetEnqueueOptions(priority=priority), pytest.raises(ValueError):
            priority_queue.enqueue(record, "x")
    assert enqueued_ids() == []


def test_a_deduplication_id_is_held_while_its_workflow_is_enqueued_or_running():
    with SetEnqueueOptions(deduplication_id="user-7"):
        first = dedup_queue.enqueue(gated, "first")
        with pytest.raises(DBOSQueueDeduplicatedError):  # ENQUEUED
            dedup_queue.enqueue(gated, "second")
        other_queue = other_dedup_queue.enqueue(record, "other queue")  # another queue: fine
    assert enqueued_ids() == [first.workflow_id, other_queue.workflow_id]

    with running_worker(before_stop=gates.open_all):
        assert gates.wait_reached("first")
        assert first.get_status().status == WorkflowStatusString.PENDING
        with (
            SetEnqueueOptions(deduplication_id="user-7"),
            pytest.raises(DBOSQueueDeduplicatedError),
        ):
            dedup_queue.enqueue(gated, "second")
        gates.open("first")
        assert first.get_result(timeout=10) == "done first"

        with SetEnqueueOptions(deduplication_id="user-7"):
            again = dedup_queue.enqueue(record, "again")
        assert again.get_result(timeout=10) == "done again"

    assert started_labels().count("second") == 0
    assert len(enqueued_ids()) == 3


def test_a_workflow_stopped_after_too_many_recoveries_releases_its_deduplication_id(worker):
    # What claim_pending leaves after its worker died twice while running it; in the enqueue's
    # transaction, so that the worker cannot claim it before.
    with transaction.atomic(), SetEnqueueOptions(deduplication_id="user-9"):
        doomed = dedup_queue.enqueue(fragile, "doomed")
        WorkflowStatus.objects.filter(workflow_id=doomed.workflow_id).update(recovery_attempts=2)
    with pytest.raises(DBOSMaxRecoveryAttemptsExceededError):
        doomed.get_result(timeout=10)

    with SetEnqueueOptions(deduplication_id="user-9"):
        again = dedup_queue.enqueue(fragile, "again")

    assert again.get_result(timeout=10) == "done again"


def test_a_deduplicated_enqueue_inside_a_workflow_replays_as_deduplicated():
    with SetEnqueueOptions(deduplication_id="held"):
        dedup_queue.enqueue(record, "holder")
    handle = DBOS.start_workflow(enqueues_a_deduplicated_child)
    assert gates.wait_reached("after the enqueue")
    DBOS.cancel_workflow(handle.workflow_id)
    gates.open("after the enqueue")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)

    assert DBOS.resume_workflow(handle.workflow_id).get_result(timeout=10) == "deduplicated"
    children = [s.child_workflow_id for s in DBOS.list_workflow_steps(handle.workflow_id)]
    assert all(DBOS.get_workflow_status(c) is not None for c in children if c)


def test_a_partitioned_queue_runs_one_at_a_time_per_partition_and_partitions_in_parallel():
    handles = []
    for label in ("a1", "b1", "a2", "b2"):
        with SetEnqueueOptions(queue_partition_key=label[0]):
            handles.append(partitioned_queue.enqueue(timed, label, 0.3))

    with running_worker():
        assert [h.get_result(timeout=10) for h in handles] == ["a1", "b1", "a2", "b2"]

    assert intervals.max_overlap(lambda label: label.startswith("a")) == 1
    assert intervals.max_overlap(lambda label: label.startswith("b")) == 1
    assert intervals.max_overlap() == 2
    assert intervals.labels().index("a1") < intervals.labels().index("a2")


def test_a_partition_key_is_required_on_a_partitioned_queue_and_refused_elsewhere():
    with pytest.raises(DBOSException, match="partition"):
        partitioned_queue.enqueue(record, "x")
    with SetEnqueueOptions(queue_partition_key="a"), pytest.raises(DBOSException, match="partit"):
        plain_queue.enqueue(record, "x")
    assert enqueued_ids() == []


def test_a_delayed_workflow_is_not_dispatched_before_its_delay(worker):
    with SetEnqueueOptions(delay_seconds=0.6):
        delayed = plain_queue.enqueue(record, "delayed")
    prompt = plain_queue.enqueue(record, "prompt")

    assert prompt.get_result(timeout=10) == "done prompt"
    assert delayed.get_result(timeout=10) == "done delayed"
    assert started_labels() == ["prompt", "delayed"]
    row = WorkflowStatus.objects.get(workflow_id=delayed.workflow_id)
    assert row.started_at - row.created_at >= datetime.timedelta(seconds=0.6)


def test_an_enqueue_inside_a_rolled_back_transaction_leaves_nothing(worker):
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = plain_queue.enqueue(record, "rolled back")
        raise RuntimeError("the view failed after enqueueing")
    with transaction.atomic():
        committed = plain_queue.enqueue(record, "committed")

    assert committed.get_result(timeout=10) == "done committed"
    assert DBOS.get_workflow_status(rolled_back.workflow_id) is None
    assert enqueued_ids() == [committed.workflow_id]
    wait_until(lambda: worker.dispatcher.finished == 1, 5, "the worker to finish its workflow")
    assert started_labels() == ["committed"]
