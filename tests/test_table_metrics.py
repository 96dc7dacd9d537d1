"""`GET /dbos/metrics/`: the gauges computed from the tables, as Prometheus parses them, and who
may read them."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from django_dbos import DBOS, Queue, SetWorkflowID, WorkflowStatusString
from django_dbos.engine import registry, system_db
from django_dbos.models import WorkflowStatus

from .conftest import ROOT, Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/dbos/metrics/"
TOKEN = "s3cret-metrics-token"
waiting = Queue("tmetrics-waiting")  # a worker's row says it serves it; nothing dispatches it


class Declined(Exception):
    pass


@DBOS.workflow()
def tm_greet(name: str) -> str:
    return f"Hello, {name}"


@DBOS.workflow()
def tm_declined() -> None:
    raise Declined("card declined")


GREET = tm_greet.__dbos__.name
DECLINED = tm_declined.__dbos__.name


@pytest.fixture
def metrics_settings(settings):
    """A metrics token, and the finished workflows counted at every scrape."""
    settings.DBOS = {**settings.DBOS, "METRICS_TOKEN": TOKEN, "METRICS_FINISHED_COUNTS_SECONDS": 0}
    return settings


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Read the endpoint with the token; return {(sample name, sorted labels): value}."""
    response = client.get(URL, headers={"authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def workflows(status: str, name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("dbos_workflows", (("name", name), ("status", status)))


def make_known_work() -> None:
    """Two names in five statuses, a queue with waiting work, a live worker, a stranded fork."""
    for n in range(2):
        with SetWorkflowID(f"tm-ok-{n}"):
            tm_greet(f"guest {n}")
    with pytest.raises(Declined), SetWorkflowID("tm-declined"):
        tm_declined()
    for n in range(3):
        with SetWorkflowID(f"tm-waits-{n}"):
            waiting.enqueue(tm_greet, f"queued {n}")
    DBOS.cancel_workflow("tm-waits-2")
    # Waiting for two minutes (the oldest); this process's enqueue wrote the rows just now.
    two_minutes_ago = system_db.now() - datetime.timedelta(minutes=2)
    WorkflowStatus.objects.filter(workflow_id="tm-waits-0").update(created_at=two_minutes_ago)
    # A worker of this version serving the queue (its heartbeat is fresh), besides this process.
    system_db.heartbeat(
        "tm-worker",
        hostname="elsewhere",
        pid=1,
        role="worker",
        application_version=registry.application_version(),
        started_at=system_db.now(),
        queues=["tmetrics-waiting"],
    )
    # A fork for a version that no live worker runs: it waits, stranded.
    DBOS.fork_workflow("tm-ok-0", 1, application_version="v-retired")


def test_the_gauges_after_known_work(client, metrics_settings):
    make_known_work()

    metrics = scrape(client)

    assert metrics[workflows("SUCCESS", GREET)] == 2
    assert metrics[workflows("ENQUEUED", GREET)] == 3  # two on the queue, and the fork
    assert metrics[workflows("CANCELLED", GREET)] == 1
    assert metrics[workflows("ERROR", DECLINED)] == 1
    # Every status of every name is there, zeros included.
    for status in WorkflowStatusString:
        expected = {("ERROR", DECLINED): 1}.get((status, DECLINED), 0)
        assert metrics[workflows(status, DECLINED)] == expected
    assert metrics[workflows("PENDING", GREET)] == 0
    assert metrics[("dbos_workflows_finished_counts_age_seconds", ())] < 5
    depth = {
        status: metrics[("dbos_queue_depth", (("queue", "tmetrics-waiting"), ("status", status)))]
        for status in ("ENQUEUED", "PENDING")
    }
    assert depth == {"ENQUEUED": 2, "PENDING": 0}
    oldest = metrics[("dbos_queue_oldest_enqueued_seconds", (("queue", "tmetrics-waiting"),))]
    assert 120 <= oldest < 180
    assert metrics[("dbos_executors_alive", ())] == 2  # the worker's row, and this process
    stranded = {
        dict(labels)["version"]: value
        for (name, labels), value in metrics.items()
        if name == "dbos_workflows_stranded"
    }
    assert stranded == {"v-retired": 1}


def test_an_empty_queue_has_zero_depth_and_age(client, metrics_settings):
    with SetWorkflowID("tm-only"):
        waiting.enqueue(tm_greet, "once")
    DBOS.cancel_workflow("tm-only")

    metrics = scrape(client)

    assert (
        metrics[("dbos_queue_depth", (("queue", "tmetrics-waiting"), ("status", "ENQUEUED")))] == 0
    )
    assert metrics[("dbos_queue_oldest_enqueued_seconds", (("queue", "tmetrics-waiting"),))] == 0
    assert metrics[workflows("CANCELLED", GREET)] == 1


def test_finished_counts_are_counted_and_recounted_in_the_background(client, settings):
    settings.DBOS = {**settings.DBOS, "METRICS_TOKEN": TOKEN, "METRICS_FINISHED_COUNTS_SECONDS": 3}
    with SetWorkflowID("tm-first"):
        tm_greet("first")
    age = ("dbos_workflows_finished_counts_age_seconds", ())

    # The process's first scrape starts the count and answers without waiting for it.
    first = scrape(client)
    assert workflows("SUCCESS", GREET) not in first and age not in first
    assert first[workflows("PENDING", GREET)] == 0
    counted = wait_until(
        lambda: workflows("SUCCESS", GREET) in (m := scrape(client)) and m,
        what="the first count",
    )
    with SetWorkflowID("tm-second"):
        tm_greet("second")
    with SetWorkflowID("tm-queued"):
        waiting.enqueue(tm_greet, "queued")

    kept = scrape(client)

    assert counted[workflows("SUCCESS", GREET)] == 1
    assert kept[workflows("SUCCESS", GREET)] == 1  # as of the first count
    assert kept[workflows("ENQUEUED", GREET)] == 1  # waiting and running work: at every scrape
    recounted = wait_until(
        lambda: (m := scrape(client))[workflows("SUCCESS", GREET)] == 2 and m,
        what="the background recount",
    )
    assert recounted[age] < 30


# Who may read them ------------------------------------------------------------------------------


@pytest.fixture
def viewer(django_user_model):
    """A user with the view permission on workflows."""
    user = django_user_model.objects.create_user("viewer")
    user.user_permissions.add(
        Permission.objects.get(
            codename="view_workflowstatus",
            content_type=ContentType.objects.get_for_model(WorkflowStatus),
        )
    )
    return user


def test_a_user_with_the_view_permission_reads_them(client, viewer, metrics_settings):
    client.force_login(viewer)

    response = client.get(URL)

    assert response.status_code == 200
    assert "dbos_executors_alive" in response.content.decode()


def test_a_user_without_the_permission_is_refused(client, django_user_model, metrics_settings):
    client.force_login(django_user_model.objects.create_user("nobody"))

    response = client.get(URL)

    assert response.status_code == 403
    assert response.json()["error"] == (
        "You do not have the django_dbos.view_workflowstatus permission."
    )


def test_anonymous_is_refused(client, metrics_settings):
    response = client.get(URL)

    assert response.status_code == 401
    assert "Authentication required" in response.json()["error"]


def test_a_wrong_bearer_token_is_refused(client, metrics_settings):
    response = client.get(URL, headers={"authorization": "Bearer not-the-token"})

    assert response.status_code == 401
    assert response.json()["error"] == "Invalid bearer token."


def test_a_bearer_token_is_refused_when_none_is_configured(client, settings):
    assert settings.DBOS.get("METRICS_TOKEN") is None

    response = client.get(URL, headers={"authorization": "Bearer anything"})

    assert response.status_code == 401
    assert "METRICS_TOKEN" in response.json()["error"]


def test_the_right_bearer_token_needs_no_user(client, metrics_settings):
    response = client.get(URL, headers={"authorization": f"bearer {TOKEN}"})

    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST


def test_an_unreachable_database_is_503(client, metrics_settings, unreachable_system_database):
    response = client.get(URL, headers={"authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 503
    assert response.json()["error"] == "The system database is unreachable."


def test_only_get_is_allowed(client, metrics_settings):
    response = client.post(URL, headers={"authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 405


# Without prometheus_client ----------------------------------------------------------------------

WITHOUT_PROMETHEUS = """
import sys
sys.modules["prometheus_client"] = None  # import prometheus_client raises ImportError
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings, setup_test_environment

setup_test_environment()
call_command("check")  # the rest of the package loads and checks
with override_settings(DBOS={**settings.DBOS, "METRICS_TOKEN": "t"}):
    response = Client().get("/dbos/metrics/", headers={"authorization": "Bearer t"})
print(response.status_code)
print(response.json()["error"])
"""


def test_without_prometheus_client_the_endpoint_says_how_to_install_it(processes: Processes):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PROMETHEUS],
        cwd=ROOT,
        env=processes.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    status, error = done.stdout.strip().splitlines()[-2:]
    assert status == "501"
    assert error == (
        "The metrics endpoint needs prometheus_client: pip install 'django-dbos[metrics]'"
    )


# The docs ---------------------------------------------------------------------------------------

# What the workers export on rundbosworker --metrics-port (API.md, "Observability").
WORKER_SERIES = {
    "dbos_workflows_finished_total",
    "dbos_step_duration_seconds_bucket",
    "dbos_dispatch_latency_seconds_bucket",
}


def exported_series(client: Client) -> set[str]:
    return {name for name, _ in scrape(client)}


def test_the_grafana_dashboard_queries_only_exported_series(client, metrics_settings):
    make_known_work()  # every series has a sample, the stranded one too
    exported = exported_series(client) | WORKER_SERIES
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())

    queried = set()
    for panel in dashboard["panels"]:
        names = {
            name
            for target in panel["targets"]
            for name in re.findall(r"\bdbos_\w+", target["expr"])
        }
        assert names, f"panel {panel['title']!r} queries no dbos series"
        assert names <= exported, f"panel {panel['title']!r}: {names - exported}"
        queried |= names

    assert {"dbos_queue_depth", "dbos_workflows", "dbos_executors_alive"} <= queried


def test_the_monitoring_page_documents_every_series(client, metrics_settings):
    make_known_work()
    page = (ROOT / "docs" / "monitoring.md").read_text()

    def documented(sample: str) -> bool:
        # A histogram's samples and the creation times prometheus_client adds are documented
        # with their series (a counter's under its _total name).
        series = re.sub(r"_(bucket|count|sum|created)$", "", sample)
        return any(f"`{name}`" in page for name in (sample, series, f"{series}_total"))

    undocumented = {name for name in exported_series(client) if not documented(name)}

    assert not undocumented
