"""Per-process Prometheus series: what known work adds to them, in this process and in a real
worker's `--metrics-port`; the METRICS setting and its check."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_dbos import DBOS, DBOSConfigurationError, DBOSMaxStepRetriesExceeded, Queue
from django_dbos.engine import metrics
from django_dbos.engine.metrics import process_registry
from django_dbos.worker import Worker
from testproject.shop.workflows import fleet, fleet_job, fleet_work

from .conftest import ROOT, wait_until
from .inprocess_worker import running_worker
from .test_recovery import leave_behind, recover

pytestmark = pytest.mark.django_db(transaction=True)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

attempts: Counter[str] = Counter()
metered_queue = Queue("metered")


class Flaky(Exception):
    pass


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0)
def fails_once(key: str) -> str:
    attempts[key] += 1
    if attempts[key] == 1:
        raise Flaky(key)
    return key


@DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0)
def always_fails() -> None:
    raise Flaky("always")


@DBOS.transaction()
def metered_transaction() -> int:
    return 1


@DBOS.workflow()
def metered(key: str) -> str:
    metered_transaction()
    return fails_once(key)


@DBOS.workflow()
def metered_failure() -> None:
    always_fails()


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def samples() -> Samples:
    registry = process_registry()
    assert registry is not None
    return parse(generate_latest(registry).decode())


def value(found: Samples, metric: str, /, **labels: str) -> float:
    return found.get((metric, frozenset(labels.items())), 0.0)


def test_known_work_adds_what_it_must_to_the_process_series():
    name, failure = metered.__dbos__.name, metered_failure.__dbos__.name
    step, transaction = fails_once.__dbos__.name, metered_transaction.__dbos__.name
    before = samples()

    assert metered("a") == "a"
    assert metered("b") == "b"
    with pytest.raises(DBOSMaxStepRetriesExceeded):
        metered_failure()

    after = samples()

    def added(metric: str, /, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert added("dbos_workflows_finished_total", name=name, status="SUCCESS") == 2
    assert added("dbos_workflows_finished_total", name=failure, status="ERROR") == 1
    assert added("dbos_step_duration_seconds_count", name=step) == 2
    assert added("dbos_step_duration_seconds_count", name=transaction) == 2
    assert added("dbos_step_duration_seconds_count", name=always_fails.__dbos__.name) == 1
    assert added("dbos_step_retries_total", name=step) == 2  # one retry in each workflow
    assert added("dbos_step_retries_total", name=always_fails.__dbos__.name) == 1
    # Every step took some time, and less than the test did.
    assert 0 < added("dbos_step_duration_seconds_sum", name=step) < 10


def test_dispatch_latency_is_observed_once_per_dequeued_workflow():
    before = samples()
    handles = [metered_queue.enqueue(metered, f"queued-{n}") for n in range(3)]
    with running_worker(recovery=False, scheduler=False):
        assert [handle.get_result(timeout=30) for handle in handles] == [
            "queued-0",
            "queued-1",
            "queued-2",
        ]
    after = samples()

    count = "dbos_dispatch_latency_seconds_count"
    assert value(after, count) - value(before, count) == 3
    waited = value(after, "dbos_dispatch_latency_seconds_sum") - value(
        before, "dbos_dispatch_latency_seconds_sum"
    )
    assert 0 <= waited < 3 * 30


def test_recoveries_count_the_workflows_taken_over_and_those_set_back_on_their_queue():
    leave_behind("metered-dead-1", [])
    leave_behind("metered-dead-2", [])
    leave_behind("metered-dead-queued", [], queue_name=metered_queue.name)
    before = value(samples(), "dbos_recoveries_total")

    assert recover() == 2  # run here; the queued one waits for a worker of its queue
    DBOS.retrieve_workflow("metered-dead-1").get_result(10)
    DBOS.retrieve_workflow("metered-dead-2").get_result(10)

    assert value(samples(), "dbos_recoveries_total") - before == 3
    assert DBOS.get_workflow_status("metered-dead-queued").status == "ENQUEUED"


def test_the_surfaces_reach_the_process_registry_through_queries():
    from django_dbos.queries import process_metrics_registry

    assert process_metrics_registry() is process_registry()
    with override_settings(DBOS={"METRICS": False}):
        assert process_metrics_registry() is None


def test_metrics_false_keeps_no_series():
    step = fails_once.__dbos__.name
    before = samples()
    with override_settings(DBOS={"METRICS": False}):
        assert process_registry() is None
        assert metered("off") == "off"
    after = samples()  # back on: they never saw the workflow that ran while they were off

    for metric in ("dbos_step_duration_seconds_count", "dbos_step_retries_total"):
        assert value(after, metric, name=step) == value(before, metric, name=step)


@pytest.mark.parametrize("setting", ["yes", 1, None])
def test_metrics_that_is_not_a_bool_is_an_error(setting):
    with override_settings(DBOS={"METRICS": setting}):
        errors = [error for error in run_checks(databases=[]) if error.id == "django_dbos.E020"]
    assert len(errors) == 1
    assert "must be True or False" in errors[0].msg


def _served_port(log_path: str) -> int:
    """The port a worker's log says its metrics server listens on."""

    def port() -> int | None:
        found = re.search(r"metrics on http://[^:]+:(\d+)/metrics", Path(log_path).read_text())
        return int(found.group(1)) if found else None

    return int(wait_until(port, timeout=60, what="the worker's metrics server"))  # type: ignore[arg-type]


def _scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def _scrape(port: int) -> Samples:
    return parse(_scrape_text(port))


def test_a_workers_metrics_port_serves_its_counters_and_is_freed_on_exit(processes):
    worker = processes.worker(
        "--no-scheduler",
        "--queue",
        "fleet",
        "--metrics-port",
        "0",
        "--metrics-address",
        "127.0.0.1",
    )
    port = _served_port(worker.log_path)
    handles = [fleet.enqueue(fleet_job, 0.01) for _ in range(3)]
    for handle in handles:
        handle.get_result(timeout=60)

    served = _scrape(port)

    name = fleet_job.__dbos__.name
    assert value(served, "dbos_workflows_finished_total", name=name, status="SUCCESS") == 3
    assert value(served, "dbos_step_duration_seconds_count", name=fleet_work.__dbos__.name) == 3
    assert value(served, "dbos_dispatch_latency_seconds_count") == 3
    assert value(served, "dbos_recoveries_total") == 0

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0


def test_a_stopped_worker_gives_its_metrics_port_back():
    with running_worker(
        recovery=False, scheduler=False, metrics_port=0, metrics_address="127.0.0.1"
    ) as worker:
        server = wait_until(lambda: worker.metrics_server, what="the metrics server")
        port = server.port  # type: ignore[attr-defined]
        assert "dbos_workflows_finished_total" in str(_scrape_text(port))
    with socket.socket() as free:
        # SO_REUSEADDR: a closed connection's TIME_WAIT does not count, a listener still would.
        free.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        free.bind(("127.0.0.1", port))


def test_a_metrics_port_in_use_stops_the_worker_with_a_clear_error(processes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = processes.worker(
            "--no-scheduler", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"
        )
        assert worker.wait(60) != 0
    assert "Choose another --metrics-port" in Path(worker.log_path).read_text()


def test_without_prometheus_client_a_metrics_port_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(metrics, "prometheus_client", None)

    with pytest.raises(DBOSConfigurationError, match=r"pip install 'django-dbos\[metrics\]'"):
        Worker(metrics_port=0).run()


def test_the_package_runs_without_prometheus_client_and_opentelemetry(processes):
    """A process where neither extra can be imported runs workflows, and counts nothing."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["prometheus_client"] = None  # import fails, as when it is not installed
        sys.modules["opentelemetry"] = None
        import django
        django.setup()
        from django_dbos import DBOS
        from django_dbos.engine import metrics, tracing

        @DBOS.step()
        def one() -> int:
            return 1

        @DBOS.workflow()
        def plain() -> int:
            return one() + one()

        assert plain() == 2
        assert metrics.process_registry() is None and tracing.tracer() is None
        DBOS.shutdown()
        print("ran without the extras")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=processes.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ran without the extras" in done.stdout
