"""Spans of the tests' worker processes, as JSON lines in a file.

With DBOS_TEST_SPANS_FILE set, the process sets an OpenTelemetry SDK tracer provider (in the shop
app's `ready()`, as a project would) whose exporter appends each finished span to that file; the
tests of tests/test_tracing.py read them back. Without it, nothing is configured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """Appends each span (names, ids in hex, attributes) to a file, one JSON object a line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(as_dict(span)) + "\n" for span in spans]
        with self._lock, open(self.path, "a") as file:
            file.writelines(lines)
        return SpanExportResult.SUCCESS


def as_dict(span: ReadableSpan) -> dict[str, object]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


def export_spans_to(path: str) -> None:
    """Set this process's tracer provider: every finished span goes to `path`."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
    trace.set_tracer_provider(provider)
