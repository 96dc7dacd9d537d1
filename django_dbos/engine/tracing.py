"""OpenTelemetry spans of workflow executions, steps, transactions, enqueues, sends and recvs
(extra `django-dbos[otel]`), and the trace context a workflow's row carries.

Spans are made only when the application has set a tracer provider of its own (the API's
default is a proxy that records nothing). That is decided once per engine, on first use, so that
a process without one pays an attribute read per operation. A workflow started or enqueued
inside a span stores that span's W3C context (JSON of the propagator's fields) in its row; every
execution of it, in whatever process, opens its span as a child of that context.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any

from . import registry, runtime

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

# Attribute names: OpenTelemetry's semantic conventions where one fits, dbos.* for the rest.
CODE_FUNCTION = "code.function.name"
DB_SYSTEM = "db.system.name"
DB_NAMESPACE = "db.namespace"
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
WORKFLOW_ID = "dbos.workflow.id"
WORKFLOW_NAME = "dbos.workflow.name"
EXECUTION = "dbos.workflow.execution"
RECOVERY_ATTEMPTS = "dbos.workflow.recovery_attempts"
APPLICATION_VERSION = "dbos.application.version"
EXECUTOR_ID = "dbos.executor.id"
FUNCTION_ID = "dbos.function_id"
STEP_ATTEMPT = "dbos.step.attempt"
DESTINATION_WORKFLOW = "dbos.destination.workflow_id"

_OFF: AbstractContextManager[Any] = nullcontext()


class Tracing:
    """The engine's tracer, or None when the application set no tracer provider."""

    def __init__(self) -> None:
        self.tracer: Any = None
        if trace is None:
            return
        provider = trace.get_tracer_provider()
        if not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            self.tracer = provider.get_tracer("django_dbos")


def tracer() -> Any:
    return runtime.part(Tracing).tracer


def carrier() -> str | None:
    """The active span's context, as the JSON a new workflow's row keeps; None without one."""
    if tracer() is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    fields: dict[str, str] = {}
    propagate.inject(fields)
    return json.dumps(fields, sort_keys=True) if fields else None


def _stored_context(stored: str | None) -> Any:
    """The context a row's trace_context names (None: the caller's current context)."""
    if not stored:
        return None
    try:
        fields = json.loads(stored)
    except ValueError:
        return None
    return propagate.extract(fields) if isinstance(fields, dict) else None


class _Span:
    """A span, current while the block runs, that records an Exception as its error; a
    BaseException (a park, a cancellation, a superseded execution) ends it without one.

    A class rather than `start_as_current_span`: two generator-based context managers fewer on
    every step.
    """

    __slots__ = ("span", "token")

    def __init__(
        self, tracer: Any, name: str, kind: Any, attributes: dict[str, Any], context: Any = None
    ) -> None:
        self.span = tracer.start_span(name, context=context, kind=kind, attributes=attributes)
        self.token: Any = None

    def __enter__(self) -> Any:
        self.token = otel_context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        otel_context.detach(self.token)
        if isinstance(exc, Exception):
            self.span.record_exception(exc)
            self.span.set_status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
        self.span.end()


def workflow_span(
    name: str,
    workflow_id: str,
    *,
    executor_id: str,
    execution: int,
    recovery_attempts: int,
    queue_name: str | None,
    trace_context: str | None,
) -> AbstractContextManager[Any]:
    """The span of one execution of a workflow, a child of the context its row stored."""
    active = tracer()
    if active is None:
        return _OFF
    attributes: dict[str, Any] = {
        CODE_FUNCTION: name,
        WORKFLOW_ID: workflow_id,
        WORKFLOW_NAME: name,
        EXECUTION: execution,
        RECOVERY_ATTEMPTS: recovery_attempts,
        APPLICATION_VERSION: registry.application_version(),
        EXECUTOR_ID: executor_id,
    }
    kind = SpanKind.INTERNAL
    if queue_name is not None:
        kind = SpanKind.CONSUMER
        attributes.update(
            {
                MESSAGING_SYSTEM: "dbos",
                MESSAGING_OPERATION_TYPE: "process",
                MESSAGING_DESTINATION: queue_name,
                MESSAGING_MESSAGE_ID: workflow_id,
            }
        )
    return _Span(active, name, kind, attributes, _stored_context(trace_context))


def _traced_inside() -> Any:
    """The tracer, for an operation inside a workflow whose span records; None otherwise: when
    a sampler dropped the workflow's trace, its steps make no span at all (not even one that
    records nothing), so that sampled-out workflows cost next to nothing."""
    active = tracer()
    if active is None or not trace.get_current_span().is_recording():
        return None
    return active


def step_span(name: str, function_id: int) -> AbstractContextManager[Any]:
    """A step's span, named after its function, with one attribute since each costs on every
    step: its workflow's id is on the parent span, and `dbos.step.attempt` is set from the first
    retry on."""
    active = _traced_inside()
    if active is None:
        return _OFF
    return _Span(active, name, SpanKind.INTERNAL, {FUNCTION_ID: function_id})


def step_retrying(attempt: int, error: Exception) -> None:
    """Note on the step's span that attempt `attempt` failed and the next one begins."""
    if tracer() is None:
        return
    span = trace.get_current_span()
    span.add_event("retry", {STEP_ATTEMPT: attempt, "exception.type": type(error).__name__})
    span.set_attribute(STEP_ATTEMPT, attempt + 1)


def transaction_span(
    name: str, function_id: int, database: str, vendor: str
) -> AbstractContextManager[Any]:
    active = _traced_inside()
    if active is None:
        return _OFF
    attributes = {
        CODE_FUNCTION: name,
        FUNCTION_ID: function_id,
        DB_SYSTEM: vendor,
        DB_NAMESPACE: database,
    }
    return _Span(active, name, SpanKind.CLIENT, attributes)


def enqueue_span(name: str, workflow_id: str, queue_name: str) -> AbstractContextManager[Any]:
    """The producer span of an enqueue (the workflow's own span is a sibling of it, a child of
    the span that enqueued it)."""
    active = tracer()
    if active is None:
        return _OFF
    attributes = {
        CODE_FUNCTION: name,
        WORKFLOW_ID: workflow_id,
        MESSAGING_SYSTEM: "dbos",
        MESSAGING_OPERATION_TYPE: "send",
        MESSAGING_OPERATION_NAME: "enqueue",
        MESSAGING_DESTINATION: queue_name,
        MESSAGING_MESSAGE_ID: workflow_id,
    }
    return _Span(active, f"enqueue {queue_name}", SpanKind.PRODUCER, attributes)


def message_span(
    operation: str, topic: str, workflow_id: str, function_id: int | None
) -> AbstractContextManager[Any]:
    """The span of a send (to `workflow_id`) or a recv (by `workflow_id`) on a topic."""
    active = tracer()
    if active is None:
        return _OFF
    sending = operation == "send"
    attributes: dict[str, Any] = {
        MESSAGING_SYSTEM: "dbos",
        MESSAGING_OPERATION_TYPE: "send" if sending else "receive",
        MESSAGING_OPERATION_NAME: operation,
        MESSAGING_DESTINATION: topic,
        DESTINATION_WORKFLOW if sending else WORKFLOW_ID: workflow_id,
    }
    if function_id is not None:
        attributes[FUNCTION_ID] = function_id
    kind = SpanKind.PRODUCER if sending else SpanKind.CONSUMER
    return _Span(active, f"{operation} {topic}" if topic else operation, kind, attributes)
