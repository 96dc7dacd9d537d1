"""The system tables in a database of their own (DBOS["DATABASE"] = "dbos_system", no router):
the admin, the JSON API, the CLI, the Tasks backend and a worker find the workflows there, and
the "default" database holds none of them."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.db import router

from django_dbos import DBOS, Queue, SetWorkflowID
from django_dbos.models import Schedule, WorkflowStatus
from testproject.shop.models import Order
from testproject.shop.tasks import confirm_order
from testproject.shop.workflows import fanout, fanout_job, scheduled_tick

from .conftest import ROOT, Processes, wait_until

try:  # Django 6
    from django.tasks import TaskResultStatus
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import TaskResultStatus

SYSTEM = "dbos_system"
CHANGELIST = "/admin/django_dbos/workflowstatus/"

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", SYSTEM])

parked = Queue("system-db-parked")  # no worker serves it


@DBOS.step()
def pack(item: str) -> str:
    return f"packed {item}"


@DBOS.workflow()
def ship(item: str) -> str:
    return pack(item)


@DBOS.workflow()
def order(items: list[str]) -> list[str]:
    DBOS.set_event("stage", "shipping")
    return [ship(item) for item in items]


@pytest.fixture(autouse=True)
def _system_tables_apart(settings):
    settings.DBOS = {**settings.DBOS, "DATABASE": SYSTEM}


@pytest.fixture
def ordered(dbos) -> str:
    """A finished workflow with two children, recorded on the system database only."""
    with SetWorkflowID("two-books"):
        order(["dune", "emma"])
    return "two-books"


def workflow_ids(database: str) -> list[str]:
    return sorted(WorkflowStatus.objects.using(database).values_list("workflow_id", flat=True))


def test_the_workflows_are_on_the_system_database_only(ordered):
    assert workflow_ids(SYSTEM) == ["two-books", "two-books-2", "two-books-3"]
    assert workflow_ids("default") == []


def test_the_admin_lists_and_shows_them_with_their_family(admin_client, ordered):
    listed = admin_client.get(CHANGELIST).content.decode()
    searched = admin_client.get(CHANGELIST + "?q=two-books-3").content.decode()
    parent = admin_client.get(CHANGELIST + "two-books/change/")
    child = admin_client.get(CHANGELIST + "two-books-2/change/").content.decode()
    dashboard = admin_client.get(CHANGELIST + "dashboard/").content.decode()

    assert all(f'href="{CHANGELIST}{wid}/change/"' in listed for wid in workflow_ids(SYSTEM))
    assert 'value="two-books-3"' in searched
    assert 'value="two-books-2"' not in searched
    assert parent.status_code == 200
    page = parent.content.decode()
    assert f'child: <a href="{CHANGELIST}two-books-2/change/">two-books-2</a>' in page
    assert f'child: <a href="{CHANGELIST}two-books-3/change/">two-books-3</a>' in page
    assert "<td>stage</td><td>&quot;shipping&quot;</td>" in page
    assert f'parent: <a href="{CHANGELIST}two-books/change/">two-books</a>' in child
    assert "&quot;packed dune&quot;" in child
    assert re.search(r'id="count-SUCCESS"[^>]*>\s*<div class="count">3</div>', dashboard)


def test_the_admin_actions_act_on_the_system_database(admin_client, ordered):
    waiting = parked.enqueue(ship, "atlas").workflow_id

    def act(action: str, workflow_id: str, **extra: str) -> str:
        data = {"action": action, "_selected_action": [workflow_id], **extra}
        return admin_client.post(CHANGELIST, data, follow=True).content.decode()

    cancelled = act("cancel_workflows", waiting)
    cancelled_status = DBOS.get_workflow_status(waiting).status
    resumed = act("resume_workflows", waiting)
    forked = act("fork_workflows", ordered, start_step="2")

    assert "Cancelled 1 workflow(s)." in cancelled
    assert cancelled_status == "CANCELLED"
    assert "Resumed 1 workflow(s)." in resumed
    assert DBOS.get_workflow_status(waiting).status == "ENQUEUED"
    assert "Forked 1 workflow(s)." in forked
    logged = [entry.change_message for entry in LogEntry.objects.order_by("id")]
    assert logged[:2] == [f"Cancelled workflow {waiting}", f"Resumed workflow {waiting}"]
    fork_id = re.fullmatch(r"Forked workflow two-books as (\S+) from step 2", logged[2]).group(1)
    assert fork_id in workflow_ids(SYSTEM)
    assert workflow_ids("default") == []


def test_the_admin_keeps_schedules_and_queues_on_the_system_database(admin_client, dbos):
    fields = {
        "workflow_name": scheduled_tick.__dbos__.name,
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "status": "ACTIVE",
        "context": "null",
    }
    added = admin_client.post("/admin/django_dbos/schedule/add/", {"name": "nightly", **fields})
    again = admin_client.post("/admin/django_dbos/schedule/add/", {"name": "nightly", **fields})
    schedules = admin_client.get("/admin/django_dbos/schedule/").content.decode()
    parked.enqueue(ship, "atlas")
    queues = admin_client.get("/admin/django_dbos/queue/").content.decode()

    assert added.status_code == 302
    assert "There is already a schedule named &#x27;nightly&#x27;." in again.content.decode()
    assert [s.name for s in Schedule.objects.using(SYSTEM)] == ["nightly"]
    assert not Schedule.objects.using("default").exists()
    assert "nightly" in schedules
    assert "system-db-parked" in queues


def test_the_json_api_reads_the_system_database(client, django_user_model, ordered):
    django_user_model.objects.create_superuser("root", password="pw")
    auth = {"authorization": "Basic " + base64.b64encode(b"root:pw").decode()}

    workflow = client.get(f"/dbos/workflows/{ordered}/", headers=auth)
    listed = client.get("/dbos/workflows/?sort_desc=false", headers=auth)
    steps = client.get(f"/dbos/workflows/{ordered}/steps/", headers=auth)

    assert workflow.status_code == 200
    assert workflow.json()["output"] == ["packed dune", "packed emma"]
    assert [w["workflow_id"] for w in listed.json()["workflows"]] == [
        "two-books",
        "two-books-2",
        "two-books-3",
    ]
    assert [step["child_workflow_id"] for step in steps.json()["steps"]] == [
        None,
        "two-books-2",
        "two-books-3",
    ]


@pytest.mark.django_db(transaction=True)  # "default" only
def test_the_dbos_fixture_says_to_allow_the_system_database(request):
    with pytest.raises(pytest.fail.Exception) as failure:
        request.getfixturevalue("dbos")

    assert str(failure.value) == (
        "The system tables are in the database 'dbos_system' (DBOS[\"DATABASE\"]), which this "
        "test may not use. Mark the test "
        '@pytest.mark.django_db(transaction=True, databases=["default", "dbos_system"]).'
    )


def test_the_cli_reads_the_system_database(ordered):
    out = io.StringIO()
    call_command("dbos", "workflow", "list", "--json", stdout=out)

    assert [w["workflow_id"] for w in json.loads(out.getvalue())] == [
        "two-books",
        "two-books-2",
        "two-books-3",
    ]


def test_a_worker_and_the_cli_on_the_system_database(dbos, processes: Processes):
    """A worker process and `manage.py dbos`, configured by settings as a project would be."""
    shop_order = Order.objects.create()
    task = confirm_order.enqueue(shop_order.pk)
    with SetWorkflowID("fanout-7"):
        job = fanout.enqueue(fanout_job, 7)

    processes.worker("--no-scheduler", DBOS_DATABASE=SYSTEM, DBOS_EXECUTOR_ID="system-worker")

    assert job.get_result(timeout=60) == 49
    assert DBOS.get_workflow_status("fanout-7").executor_id == "system-worker"
    wait_until(lambda: task.refresh() or task.status == TaskResultStatus.SUCCESSFUL, what="task")
    assert task.return_value == "confirmed"
    assert Order.objects.get(pk=shop_order.pk).status == "confirmed"
    listed = subprocess.run(
        [sys.executable, "manage.py", "dbos", "workflow", "list", "--json"],
        cwd=ROOT,
        env=processes.env(DBOS_DATABASE=SYSTEM),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert sorted(w["workflow_id"] for w in json.loads(listed.stdout)) == sorted(
        ["fanout-7", task.id]
    )
    assert workflow_ids("default") == []


# With the router --------------------------------------------------------------------------------


@pytest.fixture
def routed(settings):
    settings.DATABASE_ROUTERS = ["django_dbos.routers.DBOSRouter"]


def test_the_router_sends_only_the_dbos_models_to_the_system_database(routed):
    assert router.db_for_read(WorkflowStatus) == SYSTEM
    assert router.db_for_write(Schedule) == SYSTEM
    assert router.db_for_read(Order) == "default"
    assert router.allow_migrate_model(SYSTEM, WorkflowStatus)
    assert not router.allow_migrate_model("default", WorkflowStatus)
    assert router.allow_migrate_model("default", Order)


def test_with_the_router_the_orm_finds_the_workflows_without_using(routed, ordered):
    assert WorkflowStatus.objects.get(workflow_id=ordered).status == "SUCCESS"
    assert Schedule.objects.create(
        name="hourly", workflow_name=scheduled_tick.__dbos__.name, cron="0 * * * *"
    ) in Schedule.objects.using(SYSTEM)
