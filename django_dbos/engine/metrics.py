"""This process's Prometheus series: workflows finished, step durations, dispatch latency,
recoveries and step retries (extra `django-dbos[metrics]`).

They live in a registry of their own, not prometheus_client's global one, so that nothing
collides with the project's metrics; `process_registry()` hands it to whatever exposes it (the
worker's `--metrics-port`, the metrics view). Without prometheus_client, or with
`DBOS["METRICS"] = False`, every hook returns at once.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from .. import conf
from ..errors import DBOSConfigurationError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

try:
    import prometheus_client
except ImportError:  # the extra is not installed
    prometheus_client = None  # type: ignore[assignment]

INSTALL_HINT = "pip install 'django-dbos[metrics]'"

# Steps are mostly database calls and short functions; workflows wait in queues for longer.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DISPATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)


class _Series:
    """The series, and the labelled children already made (a dict lookup, not `labels()`'s
    lock, on the hot path)."""

    def __init__(self) -> None:
        assert prometheus_client is not None
        client = prometheus_client
        self.registry = client.CollectorRegistry()
        self.finished = client.Counter(
            "dbos_workflows_finished",
            "Workflows that finished in this process, by workflow name and final status.",
            ["name", "status"],
            registry=self.registry,
        )
        self.step_duration = client.Histogram(
            "dbos_step_duration_seconds",
            "Time steps and transactions took in this process (retries included), by name.",
            ["name"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.dispatch_latency = client.Histogram(
            "dbos_dispatch_latency_seconds",
            "Time from when a queued workflow could run to when this worker claimed it.",
            buckets=DISPATCH_BUCKETS,
            registry=self.registry,
        )
        self.recoveries = client.Counter(
            "dbos_recoveries",
            "Workflows this process took over from dead executors.",
            registry=self.registry,
        )
        self.step_retries = client.Counter(
            "dbos_step_retries",
            "Step attempts that failed and were retried, by step name.",
            ["name"],
            registry=self.registry,
        )
        self.children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(*labels)
        return found


_series: _Series | None = None
_lock = threading.Lock()


def _on() -> _Series | None:
    """The series, or None when metrics are off (no prometheus_client, or METRICS False)."""
    global _series
    if prometheus_client is None or conf.get("METRICS") is False:
        return None
    if _series is None:
        with _lock:
            if _series is None:
                _series = _Series()
    return _series


def process_registry() -> CollectorRegistry | None:
    """This process's registry of django-dbos series; None when metrics are off."""
    series = _on()
    return None if series is None else series.registry


def workflow_finished(name: str, status: str) -> None:
    series = _on()
    if series is not None:
        series.child(series.finished, name, str(status)).inc()


class _StepTimer:
    """Observes the time its block took in a step's duration histogram."""

    __slots__ = ("began", "histogram")

    def __init__(self, histogram: Any) -> None:
        self.histogram = histogram
        self.began = 0.0

    def __enter__(self) -> None:
        self.began = time.perf_counter()

    def __exit__(self, *exc_info: object) -> None:
        self.histogram.observe(time.perf_counter() - self.began)


_OFF: AbstractContextManager[None] = nullcontext()


def step_timer(name: str) -> AbstractContextManager[None]:
    """Time a step's (or transaction's) function, retries included, when metrics are on."""
    series = _on()
    if series is None:
        return _OFF
    return _StepTimer(series.child(series.step_duration, name))


def step_retried(name: str) -> None:
    series = _on()
    if series is not None:
        series.child(series.step_retries, name).inc()


def dispatched(waited_seconds: float | None) -> None:
    series = _on()
    if series is not None and waited_seconds is not None:
        series.dispatch_latency.observe(waited_seconds)


def recovered(count: int) -> None:
    series = _on()
    if series is not None and count:
        series.recoveries.inc(count)


class MetricsServer:
    """The HTTP server of `rundbosworker --metrics-port`: serves this process's registry."""

    def __init__(self, port: int, address: str) -> None:
        if prometheus_client is None:
            raise DBOSConfigurationError(f"--metrics-port needs prometheus_client: {INSTALL_HINT}.")
        registry = process_registry()
        if registry is None:
            raise DBOSConfigurationError(
                '--metrics-port serves the worker\'s metrics, but DBOS["METRICS"] is False.'
            )
        try:
            self._server, self._thread = prometheus_client.start_http_server(
                port, address, registry=registry
            )
        except OSError as exc:
            raise DBOSConfigurationError(
                f"Cannot serve metrics on {address}:{port}: {exc}. Choose another --metrics-port."
            ) from exc
        self.port = self._server.server_port

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
