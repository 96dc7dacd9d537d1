"""Application versions as data, stranded work, the replay-checked upgrade and check-deploy, in
this process: the versions API, the CLI verbs, the admin's pages, the read-only check."""

from __future__ import annotations

import datetime
import io
import json
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError

from django_dbos import (
    DBOS,
    DBOSException,
    DBOSInvalidArgumentError,
    WorkflowStatusString,
    queries,
)
from django_dbos.engine import executor, registry, serialization, system_db, upgrade
from django_dbos.engine.recovery import Recovery
from django_dbos.engine.upgrade import AutoUpgrade
from django_dbos.models import Executor, WorkflowStatus
from testproject.shop.deploys import bundle, letter, pack, stamp

from .conftest import wait_until
from .workers import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

PACK, STAMP = pack.__dbos__.name, stamp.__dbos__.name
GONE = "gone-1"  # the version of workers that died


def dbos(*args: str) -> tuple[str, str]:
    """Run `manage.py dbos ARGS` here; return what it printed on stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("dbos", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def strand(
    workflow_id: str,
    path: Path,
    steps: list[str],
    status: str = "PENDING",
    queue_name: str | None = "deliveries",
) -> None:
    """Leave a `letter` that a dead worker of version GONE ran up to `steps`, waiting in recv."""
    system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id=workflow_id,
            name=letter.__dbos__.name,
            status=status,
            inputs=serialization.dumps_arguments((str(path),), {}),
            executor_id="dead-worker" if status == "PENDING" else None,
            application_version=GONE,
            queue_name=queue_name,
        )
    )
    for function_id, name in enumerate(steps, start=1):
        system_db.record_operation(
            workflow_id,
            "dead-worker",
            function_id,
            name,
            output=serialization.dumps(f"{workflow_id} {name}"),
            started_at=system_db.now(),
        )
    last_seen = system_db.now() - datetime.timedelta(hours=1)
    system_db.heartbeat(
        "dead-worker",
        hostname="elsewhere",
        pid=1,
        role="worker",
        application_version=GONE,
        started_at=last_seen,
    )
    Executor.objects.filter(executor_id="dead-worker").update(last_heartbeat=last_seen)


# Versions as data ----------------------------------------------------------------------------


def test_a_worker_records_its_version_and_the_latest_can_be_chosen():
    with pytest.raises(DBOSException, match="No application version is recorded yet"):
        DBOS.get_latest_application_version()
    system_db.record_version("older")
    with running_worker():
        pass
    running = registry.application_version()

    versions = DBOS.list_application_versions()
    assert [(v.version_name, v.is_latest) for v in versions] == [(running, True), ("older", False)]
    assert DBOS.get_latest_application_version().version_name == running

    DBOS.set_latest_application_version("older")
    assert [v.version_name for v in DBOS.list_application_versions()] == ["older", running]
    assert DBOS.get_latest_application_version().version_name == "older"
    # A worker's start does not take the latest back: its row is there already.
    with running_worker():
        pass
    assert DBOS.get_latest_application_version().version_name == "older"
    first = {v.version_name: v.created_at for v in versions}
    assert {v.version_name: v.created_at for v in DBOS.list_application_versions()} == first

    with pytest.raises(DBOSInvalidArgumentError, match="No application version 'nope' is"):
        DBOS.set_latest_application_version("nope")
    with pytest.raises(DBOSInvalidArgumentError, match="version_name must be a string"):
        DBOS.set_latest_application_version(3)  # type: ignore[arg-type]


# Stranded work and the upgrade ---------------------------------------------------------------


def test_stranded_work_is_counted_per_queue_and_version(tmp_path):
    strand("fits", tmp_path / "log", [PACK, STAMP])
    strand("waits", tmp_path / "log", [], status="ENQUEUED")

    with running_worker():
        (deliveries,) = wait_until(
            lambda: [q for q in DBOS.list_queues() if q.name == "deliveries" and q.served],
            what="a live worker to serve the queue",
        )
    assert deliveries.stranded == 2
    assert deliveries.warning.startswith("2 of its workflows belong to an application version")
    assert queries.stranded_counts() == {GONE: 2}
    listing, _ = dbos("queue", "list", "--json")
    assert {q["name"]: q["stranded"] for q in json.loads(listing)}["deliveries"] == 2


def test_upgrade_moves_what_replays_and_keeps_what_diverges(tmp_path):
    log = tmp_path / "log"
    strand("fits", log, [PACK, STAMP])  # as this code records it
    strand("swapped", log, [STAMP, PACK])  # another order: this code calls pack first
    strand("queued", log, [], status="ENQUEUED")
    running = registry.application_version()

    dry, note = dbos("workflow", "upgrade", "--dry-run", "--json")
    assert [(c["workflow_id"], c["moved"]) for c in json.loads(dry)] == [
        ("fits", False),
        ("queued", False),
        ("swapped", False),
    ]
    assert "Dry run: 2 workflows would move to version" in note
    assert set(WorkflowStatus.objects.values_list("application_version", flat=True)) == {GONE}
    assert not WorkflowStatus.objects.exclude(upgrade_checked_version=None).exists()

    printed, note = dbos("workflow", "upgrade", "--from-version", GONE)
    assert "2 workflows moved to version" in note and "1 cannot continue on it" in note
    assert (
        f"swapped: operation 1: recorded {STAMP}, the code of version {running} calls {PACK}."
        in printed
    )
    assert DBOS.get_workflow_status("fits").app_version == running
    assert DBOS.get_workflow_status("queued").app_version == running
    swapped = DBOS.get_workflow_status("swapped")
    assert swapped.app_version == GONE
    assert swapped.upgrade_blocked_at is not None
    assert (swapped.upgrade_blocked_at.function_id, swapped.upgrade_blocked_at.version) == (
        1,
        running,
    )
    assert (swapped.upgrade_blocked_at.expected, swapped.upgrade_blocked_at.found) == (STAMP, PACK)

    shown, _ = dbos("workflow", "get", "swapped")
    assert f"operation 1: recorded {STAMP}" in shown
    listed, _ = dbos("workflow", "list")
    assert f"swapped: operation 1: recorded {STAMP}" in listed
    as_json, _ = dbos("workflow", "list", "--json")
    blocked = {wf["workflow_id"]: wf["upgrade_blocked_at"] for wf in json.loads(as_json)}
    assert blocked["swapped"]["found"] == PACK and blocked["fits"] is None

    # A workflow found blocked on this code is not replayed again by the workers' turns.
    assert AutoUpgrade().turn().checked == []
    # Other --from-version: nothing.
    assert dbos("workflow", "upgrade", "--from-version", "other")[0].startswith("No stranded")

    # The moved one continues through the normal recovery (back on its queue, as it was queued),
    # from its last recorded operation.
    process = executor.current()
    process.ensure_started()
    DBOS.send("fits", "go", topic="go")
    DBOS.send("queued", "go", topic="go")
    Recovery(process).recover_dead()
    assert DBOS.get_workflow_status("fits").status == WorkflowStatusString.ENQUEUED
    with running_worker(queues=["deliveries"]):
        assert DBOS.retrieve_workflow("fits").get_result(10) == "posted"
        assert DBOS.retrieve_workflow("queued").get_result(10) == "posted"
    assert sorted(log.read_text().splitlines()) == [
        "fits ship",  # pack and stamp were recorded by the dead worker
        "queued pack",
        "queued ship",
        "queued stamp",
    ]


def test_a_moved_workflow_parked_in_recv_waits_again_on_this_version(tmp_path):
    log = tmp_path / "log"
    strand("started", log, [PACK, STAMP], queue_name=None)  # started here, not queued
    WorkflowStatus.objects.filter(workflow_id="started").update(
        waiting="waiting for a message on topic 'go'"
    )

    assert [c.moved for c in queries.upgrade_stranded().checked] == [True]
    process = executor.current()
    process.ensure_started()
    assert Recovery(process).recover_dead() == 1
    wait_until(
        lambda: (
            WorkflowStatus.objects.filter(workflow_id="started", executor_id=process.executor_id)
            .exclude(waiting="")
            .exists()
        ),
        what="the workflow to park in recv again, on this executor",
    )
    DBOS.send("started", "go", topic="go")

    assert DBOS.retrieve_workflow("started").get_result(10) == "posted"
    assert log.read_text().splitlines() == ["started ship"]


def test_a_parent_waiting_for_its_unfinished_child_replays_up_to_that_wait(tmp_path):
    log = tmp_path / "log"
    strand("parcels", log, [])
    strand("parcels-1", log, [PACK, STAMP])  # its child, waiting in recv
    WorkflowStatus.objects.filter(workflow_id="parcels").update(name=bundle.__dbos__.name)
    system_db.record_operation(
        "parcels",
        "dead-worker",
        1,
        letter.__dbos__.name,
        child_workflow_id="parcels-1",
        started_at=system_db.now(),
    )

    began = time.monotonic()
    done = queries.upgrade_stranded()

    assert [(c.workflow_id, c.moved) for c in done.checked] == [
        ("parcels", True),
        ("parcels-1", True),
    ]
    assert time.monotonic() - began < upgrade.REPLAY_TIMEOUT_SECONDS  # it did not wait


def test_an_unregistered_workflow_is_blocked_at_its_start(tmp_path):
    strand("ghost", tmp_path / "log", [PACK])
    WorkflowStatus.objects.filter(workflow_id="ghost").update(name="shop.removed")

    done = queries.upgrade_stranded()

    (check,) = done.checked
    assert check.blocked_at is not None and check.blocked_at.function_id is None
    assert check.blocked_at.reason == "No workflow is registered as 'shop.removed' in this code."


# check-deploy ----------------------------------------------------------------------------------


def test_check_deploy_lists_what_this_code_cannot_continue_and_exits_1(tmp_path):
    strand("fits", tmp_path / "log", [PACK, STAMP])
    strand("swapped", tmp_path / "log", [STAMP, PACK])

    with pytest.raises(CommandError, match="1 workflow in flight cannot continue") as failed:
        dbos("check-deploy", "--json")
    assert failed.value.returncode == 1
    (found,) = queries.check_deploy()
    assert (found.workflow_id, found.app_version, found.blocked_at.expected) == (
        "swapped",
        GONE,
        STAMP,
    )
    assert not WorkflowStatus.objects.exclude(upgrade_checked_version=None).exists()

    DBOS.cancel_workflow("swapped")
    printed, _ = dbos("check-deploy")
    assert printed.startswith("Every in-flight workflow replays on this code")


def test_check_deploy_cannot_write():
    with system_db.read_only(), pytest.raises(DatabaseError):
        system_db.record_version("written")
    system_db.record_version("after")  # writable again after the block
    assert [v.version_name for v in DBOS.list_application_versions()] == ["after"]


# The admin ---------------------------------------------------------------------------------------

VERSIONS = "/admin/django_dbos/workflowstatus/versions/"


def test_the_admin_shows_versions_stranded_work_and_divergences(admin_client, tmp_path):
    strand("swapped", tmp_path / "log", [STAMP, PACK])
    system_db.record_version(GONE)
    with running_worker():
        wait_until(lambda: len(DBOS.list_application_versions()) == 2, what="the worker's start")
        page = admin_client.get(VERSIONS).content.decode()
        dashboard = admin_client.get("/admin/django_dbos/workflowstatus/dashboard/")
        worker_id = executor.current().executor_id
    running = registry.application_version()

    assert f"<strong>{running}</strong> (latest)" in page
    row = page.split(f'id="version-{GONE}"')[1].split("</tr>")[0]
    assert "none" in row  # no live executor
    assert '<span style="color: #c62828; font-weight: 600">1</span>' in row
    assert "executor_id" not in row
    live = page.split(f'id="version-{running}"')[1].split("</tr>")[0]
    assert f"{worker_id} (worker)" in live
    text = dashboard.content.decode()
    assert (
        f"version {GONE}" in text and 'href="/admin/django_dbos/workflowstatus/versions/"' in text
    )

    queries.upgrade_stranded()
    detail = admin_client.get("/admin/django_dbos/workflowstatus/swapped/change/").content.decode()
    assert f"Cannot continue on version {running}: operation 1 is <code>{STAMP}</code>" in detail
    assert DBOS.get_workflow_status("swapped").status == WorkflowStatusString.PENDING


def test_the_versions_page_needs_the_view_permission(client):
    from django.contrib.auth.models import User

    User.objects.create_user("nobody", password="pw", is_staff=True)
    client.login(username="nobody", password="pw")
    assert client.get(VERSIONS).status_code == 403


def test_the_json_api_gives_stranded_counts_and_divergences(admin_client, tmp_path):
    strand("swapped", tmp_path / "log", [STAMP, PACK])
    queries.upgrade_stranded()

    queues = {q["name"]: q for q in admin_client.get("/dbos/queues/").json()["queues"]}
    workflow = admin_client.get("/dbos/workflows/swapped/").json()

    assert queues["deliveries"]["stranded"] == 1
    assert workflow["upgrade_blocked_at"] == {
        "version": registry.application_version(),
        "function_id": 1,
        "expected": STAMP,
        "found": PACK,
        "reason": f"operation 1 is {STAMP} in the record, but the code now calls {PACK} there.",
    }
