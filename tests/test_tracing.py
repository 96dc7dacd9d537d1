"""OpenTelemetry: the spans of workflows, steps, transactions, enqueues and messages, and one trace
from a span in the enqueuing process to a worker process's workflow and steps, after a kill -9
and a recovery too."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from django_dbos import DBOS, DBOSClient, Queue
from django_dbos.engine import tracing
from django_dbos.models import WorkflowStatus
from testproject.shop.workflows import append_line, fleet, ten_step_journal, write_ledger_entry
from testproject.spans import as_dict

from .conftest import wait_until
from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

traced_queue = Queue("traced")


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider set for this test only, its spans kept in memory.

    OpenTelemetry lets a process set its provider once; the fixture puts the API's globals back
    afterwards (as OpenTelemetry's own tests do), so that other tests run without tracing.
    """
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    saved = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)
    DBOS.shutdown()  # the engine decides on first use whether to trace
    try:
        yield spans
    finally:
        DBOS.shutdown()
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


@DBOS.step()
def traced_step(number: int) -> int:
    return number + 1


@DBOS.step()
def failing_step() -> None:
    raise ValueError("no")


retried: list[int] = []


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0)
def fails_once() -> str:
    retried.append(1)
    if len(retried) == 1:
        raise ValueError("first attempt")
    return "second"


@DBOS.workflow()
def traced_retry() -> str:
    return fails_once()


@DBOS.transaction()
def traced_transaction(number: int) -> int:
    return number * 2


@DBOS.workflow()
def traced_child(number: int) -> int:
    return traced_step(number)


@DBOS.workflow()
def traced_parent(number: int) -> int:
    number = traced_transaction(traced_step(number))
    DBOS.send(DBOS.workflow_id, "hello", "greeting")  # type: ignore[arg-type]
    assert DBOS.recv("greeting", timeout_seconds=10) == "hello"
    child = DBOS.start_workflow(traced_child, number).get_result()
    traced_queue.enqueue(traced_child, 100)
    return child


@DBOS.workflow()
def traced_failure() -> None:
    failing_step()


def by_name(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [span for span in spans if span["name"] == name]


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = by_name(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s['name'] for s in spans]}"
    return found[0]


def finished(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    spans: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    return [as_dict(span) for span in spans]


def test_workflow_steps_transaction_messages_child_and_enqueue_are_spans_of_one_trace(exporter):
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        assert traced_parent(1) == 5

    spans = finished(exporter)
    root = one(spans, "request")
    parent = one(spans, traced_parent.__dbos__.name)
    assert {span["trace_id"] for span in spans} == {root["trace_id"]}
    assert root["span_id"] == f"{request.get_span_context().span_id:016x}"
    assert parent["parent_span_id"] == root["span_id"]
    children = {span["name"]: span for span in spans if span["parent_span_id"] == parent["span_id"]}
    assert set(children) == {
        traced_step.__dbos__.name,
        traced_transaction.__dbos__.name,
        "send greeting",
        "recv greeting",
        traced_child.__dbos__.name,  # the child workflow ran on the pool: parent from its row
        "enqueue traced",
    }
    workflow_id = parent["attributes"]["dbos.workflow.id"]
    assert parent["attributes"]["code.function.name"] == traced_parent.__dbos__.name
    assert parent["attributes"]["dbos.workflow.execution"] == 0
    assert parent["attributes"]["dbos.application.version"]
    step = children[traced_step.__dbos__.name]["attributes"]
    assert step["dbos.function_id"] == 1
    assert "dbos.step.attempt" not in step  # set from a retry on
    transaction = children[traced_transaction.__dbos__.name]["attributes"]
    assert transaction["dbos.function_id"] == 2
    assert transaction["db.system.name"] in {"sqlite", "postgresql"}
    assert children["send greeting"]["attributes"]["messaging.operation.type"] == "send"
    assert children["recv greeting"]["attributes"]["messaging.destination.name"] == "greeting"
    enqueue = children["enqueue traced"]["attributes"]
    assert enqueue["messaging.destination.name"] == "traced"
    child = children[traced_child.__dbos__.name]
    child_steps = [
        span
        for span in by_name(spans, traced_step.__dbos__.name)
        if span["parent_span_id"] == child["span_id"]
    ]
    assert len(child_steps) == 1

    # The enqueued child carries the parent workflow's span context in its row ...
    queued_id = enqueue["messaging.message.id"]
    row = WorkflowStatus.objects.get(workflow_id=queued_id)
    assert row.parent_workflow_id == workflow_id
    stored = json.loads(row.trace_context)  # type: ignore[arg-type]
    assert stored["traceparent"].split("-")[1:3] == [root["trace_id"], parent["span_id"]]
    # ... and its span, when a worker runs it, is the parent workflow's child.
    exporter.clear()
    with running_worker(recovery=False, scheduler=False):
        assert DBOS.retrieve_workflow(queued_id).get_result(timeout=30) == 101
    queued = one(finished(exporter), traced_child.__dbos__.name)
    assert queued["trace_id"] == root["trace_id"]
    assert queued["parent_span_id"] == parent["span_id"]
    assert queued["attributes"]["messaging.operation.type"] == "process"
    assert queued["attributes"]["dbos.workflow.execution"] == 1


def test_an_exception_sets_the_error_status_of_its_step_and_workflow(exporter):
    with pytest.raises(ValueError):
        traced_failure()

    spans = finished(exporter)
    assert one(spans, failing_step.__dbos__.name)["status"] == "ERROR"
    assert one(spans, traced_failure.__dbos__.name)["status"] == "ERROR"


def test_a_retried_step_says_its_attempt_and_each_retry(exporter):
    retried.clear()
    assert traced_retry() == "second"

    step = exporter.get_finished_spans()[0]
    assert step.name == fails_once.__dbos__.name
    assert step.attributes["dbos.step.attempt"] == 2  # type: ignore[index]
    assert [event.name for event in step.events] == ["retry"]
    assert step.status.is_ok


def test_a_client_enqueue_stores_the_active_span_and_makes_its_own(exporter):
    with trace.get_tracer("test").start_as_current_span("request") as request:
        handle = DBOSClient().enqueue(
            {"queue_name": "traced", "workflow_name": traced_child.__dbos__.name}, 1
        )

    row = WorkflowStatus.objects.get(workflow_id=handle.workflow_id)
    traceparent = json.loads(row.trace_context)["traceparent"]  # type: ignore[arg-type]
    context = request.get_span_context()
    assert traceparent.split("-")[1:3] == [f"{context.trace_id:032x}", f"{context.span_id:016x}"]
    enqueue = one(finished(exporter), "enqueue traced")
    assert enqueue["parent_span_id"] == f"{context.span_id:016x}"


def test_without_a_tracer_provider_nothing_is_traced_or_stored():
    assert tracing.tracer() is None
    with trace.get_tracer("test").start_as_current_span("request"):
        handle = traced_queue.enqueue(traced_child, 1)
    assert WorkflowStatus.objects.get(workflow_id=handle.workflow_id).trace_context is None


# One trace across processes ------------------------------------------------------------------


def worker_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_continues(request: Any, spans: list[dict[str, Any]], execution: int) -> set[str]:
    """The worker's workflow span is a child of the request's span; its steps, of it. Returns
    the names of the spans under the workflow's."""
    trace_id = f"{request.get_span_context().trace_id:032x}"
    workflows = [
        span
        for span in by_name(spans, ten_step_journal.__dbos__.name)
        if span["attributes"]["dbos.workflow.execution"] == execution
    ]
    assert len(workflows) == 1
    workflow = workflows[0]
    assert workflow["trace_id"] == trace_id
    assert workflow["parent_span_id"] == f"{request.get_span_context().span_id:016x}"
    steps = [span for span in spans if span["parent_span_id"] == workflow["span_id"]]
    assert all(span["trace_id"] == trace_id for span in steps)
    return {span["name"] for span in steps}


def test_a_trace_continues_from_the_enqueuing_span_to_the_worker_that_runs_it(
    exporter, processes, tmp_path
):
    journal = tmp_path / "journal.txt"
    with trace.get_tracer("test").start_as_current_span("web request") as request:
        handle = fleet.enqueue(ten_step_journal, str(journal))
    spans_file = tmp_path / "worker-spans.jsonl"
    processes.worker("--no-scheduler", "--queue", "fleet", DBOS_TEST_SPANS_FILE=str(spans_file))

    assert handle.get_result(timeout=60) == 10

    spans = wait_until(
        lambda: (
            by_name(worker_spans(spans_file), ten_step_journal.__dbos__.name)
            and worker_spans(spans_file)
        ),
        what="the workflow's span",
    )
    under_workflow = assert_continues(request, spans, execution=1)  # type: ignore[arg-type]
    assert under_workflow == {append_line.__dbos__.name, write_ledger_entry.__dbos__.name}
    assert len(by_name(spans, append_line.__dbos__.name)) == 10  # type: ignore[arg-type]


def test_a_trace_continues_from_the_enqueuing_span_to_a_worker_and_after_its_recovery(
    exporter, processes, tmp_path
):
    journal = tmp_path / "journal.txt"
    with trace.get_tracer("test").start_as_current_span("web request") as request:
        handle = fleet.enqueue(ten_step_journal, str(journal), 0.2)

    first_spans = tmp_path / "first-worker-spans.jsonl"
    first = processes.worker(
        "--no-scheduler", "--queue", "fleet", DBOS_TEST_SPANS_FILE=str(first_spans)
    )
    wait_until(
        lambda: journal.exists() and "step 6" in journal.read_text(),
        timeout=60,
        what="the first worker half way through the workflow",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # What the first worker exported before it died: steps in the request's trace.
    died = worker_spans(first_spans)
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert by_name(died, append_line.__dbos__.name)
    assert {span["trace_id"] for span in died} == {trace_id}

    second_spans = tmp_path / "second-worker-spans.jsonl"
    processes.worker("--no-scheduler", "--queue", "fleet", DBOS_TEST_SPANS_FILE=str(second_spans))
    assert handle.get_result(timeout=90) == 10

    spans = wait_until(
        lambda: (
            by_name(worker_spans(second_spans), ten_step_journal.__dbos__.name)
            and worker_spans(second_spans)
        ),
        what="the recovered workflow's span",
    )
    under_workflow = assert_continues(request, spans, execution=2)  # type: ignore[arg-type]
    assert under_workflow == {append_line.__dbos__.name}  # the first six steps were replayed
    # The first execution's steps hang from a workflow span that never ended (kill -9), in the
    # same trace; the recovered one replays the recorded steps and runs the rest under its span.
    recovered = one(spans, ten_step_journal.__dbos__.name)  # type: ignore[arg-type]
    assert recovered["attributes"]["dbos.workflow.recovery_attempts"] == 1
