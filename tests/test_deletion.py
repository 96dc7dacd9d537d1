"""Deleting finished workflows: by id, by age (garbage_collect, prune), from the admin and the
JSON API; nothing active is ever deleted, nothing is left behind, and a crash mid-prune leaves
every workflow whole or gone."""

from __future__ import annotations

import datetime
import signal

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSWorkflowActiveError,
    Queue,
    SetWorkflowID,
)
from django_dbos.models import (
    Notification,
    OperationOutput,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
    WorkflowStatus,
)

from .conftest import Processes, wait_until
from .families import child, everything

pytestmark = pytest.mark.django_db(transaction=True)

unserved = Queue("tdel-unserved")  # no worker serves it: what is enqueued there stays ENQUEUED

# Every table that holds rows of a workflow, by the column that names it.
OWNED = (
    (OperationOutput, "workflow_id"),
    (Notification, "destination_id"),
    (WorkflowEvent, "workflow_id"),
    (WorkflowEventHistory, "workflow_id"),
    (StreamEntry, "workflow_id"),
)


@DBOS.workflow()
def leaves_a_child_waiting() -> str:
    """Finishes at once, its child still ENQUEUED."""
    unserved.enqueue(child, "later")
    return "done"


@DBOS.workflow()
def waits_after_its_child() -> object:
    """Its child finishes; it stays PENDING, waiting for a message."""
    DBOS.start_workflow(child, "early").get_result()
    return DBOS.recv("go", timeout_seconds=30)


resumable = {"fails": True}


@DBOS.workflow()
def fails_after_its_child() -> str:
    """Its child finishes; it fails (until told not to), so that it can be resumed."""
    result = DBOS.start_workflow(child, "family").get_result()
    if resumable["fails"]:
        raise RuntimeError("not yet")
    return result


def rows_of(workflow_id: str) -> dict[str, int]:
    counts = {"status": WorkflowStatus.objects.filter(workflow_id=workflow_id).count()}
    for model, column in OWNED:
        counts[model.__name__] = model.objects.filter(**{column: workflow_id}).count()
    return counts


def gone(workflow_id: str) -> bool:
    return not any(rows_of(workflow_id).values())


def orphans() -> list[str]:
    """Rows of any table whose workflow is not in dbos_workflow_status."""
    existing = set(WorkflowStatus.objects.values_list("workflow_id", flat=True))
    found = []
    for model, column in OWNED:
        for workflow_id in model.objects.values_list(column, flat=True).distinct():
            if workflow_id not in existing:
                found.append(f"{model.__name__} of {workflow_id}")
    return found


def run_everything(workflow_id: str) -> str:
    """Run `everything` as `workflow_id`, send it a message; return its child's id."""
    with SetWorkflowID(workflow_id):
        everything(workflow_id)
    DBOS.send(workflow_id, "a late message")
    return next(
        step.child_workflow_id
        for step in DBOS.list_workflow_steps(workflow_id)
        if step.child_workflow_id
    )


def ended(workflow_id: str, days_ago: float) -> None:
    """Make a workflow look as if it finished `days_ago` days ago."""
    moment = timezone.now() - datetime.timedelta(days=days_ago)
    WorkflowStatus.objects.filter(workflow_id=workflow_id).update(updated_at=moment)


def finished(*workflow_ids: str) -> None:
    for workflow_id in workflow_ids:
        with SetWorkflowID(workflow_id):
            child(workflow_id)


# DBOS.delete_workflow(s) ----------------------------------------------------------------------


def test_a_deleted_workflow_leaves_nothing_behind_and_keeps_its_child():
    child_id = run_everything("whole")
    before = rows_of("whole")

    DBOS.delete_workflow("whole")

    assert all(before.values()), before  # it had rows in every table
    assert DBOS.get_workflow_status("whole") is None
    assert gone("whole")
    assert DBOS.get_workflow_status(child_id).status == "SUCCESS"
    assert DBOS.get_event(child_id, "child", timeout_seconds=0) == "whole"
    assert orphans() == []


def test_delete_children_takes_the_descendants_too():
    child_id = run_everything("parent")
    run_everything("other")

    DBOS.delete_workflows(["parent"], delete_children=True)

    assert gone("parent") and gone(child_id)
    assert DBOS.get_workflow_status("other").status == "SUCCESS"
    assert orphans() == []


@pytest.mark.parametrize("waiting", ["ENQUEUED", "PENDING"])
def test_an_active_workflow_is_refused_and_nothing_is_deleted(waiting):
    finished("done")
    if waiting == "ENQUEUED":
        handle = unserved.enqueue(child, "queued")
    else:
        handle = DBOS.start_workflow(waits_after_its_child)
        wait_until(lambda: DBOS.get_workflow_status(handle.workflow_id).status == "PENDING")

    with pytest.raises(DBOSWorkflowActiveError, match=f"is {waiting}. Nothing was deleted"):
        DBOS.delete_workflows(["done", handle.workflow_id])

    assert DBOS.get_workflow_status("done").status == "SUCCESS"
    assert DBOS.get_workflow_status(handle.workflow_id).status == waiting


def test_a_running_child_keeps_its_parent_when_children_go_too():
    with SetWorkflowID("left"):
        leaves_a_child_waiting()
    (child_id,) = WorkflowStatus.objects.filter(parent_workflow_id="left").values_list(
        "workflow_id", flat=True
    )

    with pytest.raises(DBOSWorkflowActiveError, match=f"'{child_id}' is ENQUEUED"):
        DBOS.delete_workflow("left", delete_children=True)
    assert DBOS.get_workflow_status("left").status == "SUCCESS"

    DBOS.delete_workflow("left")  # without its children: the parent alone goes
    assert gone("left")
    assert DBOS.get_workflow_status(child_id).status == "ENQUEUED"


def test_an_unknown_id_is_no_error_and_deletes_nothing():
    finished("kept")

    DBOS.delete_workflow("no-such-workflow")
    DBOS.delete_workflows([])

    assert DBOS.get_workflow_status("kept").status == "SUCCESS"


def test_the_arguments_are_checked():
    with pytest.raises(DBOSInvalidArgumentError, match="a list of workflow ids"):
        DBOS.delete_workflows("one-id")
    with pytest.raises(DBOSInvalidArgumentError, match="timezone-aware"):
        DBOS.garbage_collect(cutoff=datetime.datetime(2020, 1, 1))
    with pytest.raises(DBOSInvalidArgumentError, match="rows_threshold"):
        DBOS.garbage_collect(rows_threshold=0)


def test_the_client_deletes_too():
    finished("by-client", "old-by-client")
    ended("old-by-client", days_ago=3)
    client = DBOSClient()

    client.delete_workflow("by-client")
    deleted = client.garbage_collect(cutoff=timezone.now() - datetime.timedelta(days=1))

    assert gone("by-client") and gone("old-by-client")
    assert deleted == 1


# DBOS.garbage_collect -------------------------------------------------------------------------


def test_garbage_collect_deletes_what_ended_before_the_cutoff():
    run_everything("old")
    finished("recent")
    ended("old", days_ago=40)
    queued = unserved.enqueue(child, "old but queued")
    ended(queued.workflow_id, days_ago=40)

    deleted = DBOS.garbage_collect(cutoff=timezone.now() - datetime.timedelta(days=30))

    assert deleted == 1
    assert gone("old")
    assert DBOS.get_workflow_status("recent").status == "SUCCESS"
    assert DBOS.get_workflow_status(queued.workflow_id).status == "ENQUEUED"
    assert orphans() == []
    assert DBOS.garbage_collect() == 0  # neither a cutoff nor a threshold: nothing goes


def test_garbage_collect_keeps_the_newest_rows_threshold():
    names = [f"n{i}" for i in range(5)]
    finished(*names)
    for age, name in enumerate(reversed(names)):
        ended(name, days_ago=age)  # n4 is the newest, n0 the oldest
    queued = unserved.enqueue(child, "never counted, never deleted")
    ended(queued.workflow_id, days_ago=10)

    deleted = DBOS.garbage_collect(rows_threshold=2)

    assert deleted == 3
    assert sorted(WorkflowStatus.objects.values_list("workflow_id", flat=True)) == sorted(
        ["n3", "n4", queued.workflow_id]
    )
    # With a cutoff too, the one that deletes more wins.
    assert DBOS.garbage_collect(cutoff=timezone.now(), rows_threshold=1) == 2


def test_families_with_an_active_member_are_kept():
    with SetWorkflowID("finished-parent"):
        leaves_a_child_waiting()  # its child is still ENQUEUED
    with SetWorkflowID("running-parent"):
        handle = DBOS.start_workflow(waits_after_its_child)
    wait_until(
        lambda: WorkflowStatus.objects.filter(
            parent_workflow_id="running-parent", status="SUCCESS"
        ).exists()
    )
    done_child = WorkflowStatus.objects.get(parent_workflow_id="running-parent").workflow_id
    run_everything("lonely")
    for workflow_id in ("finished-parent", done_child, "lonely"):
        ended(workflow_id, days_ago=5)

    deleted = DBOS.garbage_collect(cutoff=timezone.now() - datetime.timedelta(days=1))

    assert deleted == 1
    assert gone("lonely")
    assert DBOS.get_workflow_status("finished-parent").status == "SUCCESS"
    assert DBOS.get_workflow_status(done_child).status == "SUCCESS"
    DBOS.send(handle.workflow_id, "go", topic="go")
    assert handle.get_result(timeout=10) == "go"


def test_a_child_goes_with_its_parent_or_after_it_never_before():
    """A finished parent may be resumed and replay its child's outcome: its child stays."""
    resumable["fails"] = True
    with SetWorkflowID("resumable-parent"), pytest.raises(RuntimeError):
        fails_after_its_child()
    child_id = WorkflowStatus.objects.get(parent_workflow_id="resumable-parent").workflow_id
    ended(child_id, days_ago=5)
    ended("resumable-parent", days_ago=1)
    cutoff = timezone.now() - datetime.timedelta(days=3)

    assert DBOS.garbage_collect(cutoff=cutoff) == 0  # the child is old enough, its parent not
    resumable["fails"] = False
    assert DBOS.resume_workflow("resumable-parent").get_result(timeout=10) == "family"

    ended("resumable-parent", days_ago=4)
    assert DBOS.garbage_collect(cutoff=cutoff) == 2  # the parent, then in a second pass its child
    assert gone("resumable-parent")
    assert gone(child_id)
    assert orphans() == []


def test_a_child_of_a_running_workflow_cannot_be_deleted():
    with SetWorkflowID("still-running"):
        handle = DBOS.start_workflow(waits_after_its_child)
    wait_until(
        lambda: WorkflowStatus.objects.filter(
            parent_workflow_id="still-running", status="SUCCESS"
        ).exists()
    )
    done_child = WorkflowStatus.objects.get(parent_workflow_id="still-running").workflow_id

    with pytest.raises(DBOSWorkflowActiveError, match="'still-running' is PENDING"):
        DBOS.delete_workflow(done_child)
    assert not gone(done_child)
    DBOS.send(handle.workflow_id, "go", topic="go")
    assert handle.get_result(timeout=10) == "go"


# The CLI --------------------------------------------------------------------------------------


def dbos(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("dbos", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_delete_verb_deletes_all_or_nothing():
    child_id = run_everything("cli-a")
    finished("cli-b")
    queued = unserved.enqueue(child, "queued")

    with pytest.raises(CommandError, match="There is no workflow with id 'nope'"):
        dbos("workflow", "delete", "cli-b", "nope")
    with pytest.raises(CommandError, match="is ENQUEUED"):
        dbos("workflow", "delete", "cli-b", queued.workflow_id)
    assert DBOS.get_workflow_status("cli-b") is not None

    out = dbos("workflow", "delete", "cli-a", "cli-b", "--children")

    assert out == "Deleted 2 workflows and their descendants: cli-a, cli-b.\n"
    assert gone("cli-a") and gone("cli-b") and gone(child_id)


def test_the_prune_verb_counts_with_dry_run_then_deletes():
    finished("p-ok", "p-recent")
    with SetWorkflowID("p-cancelled"):
        handle = unserved.enqueue(child, "x")
    DBOS.cancel_workflow(handle.workflow_id)
    for workflow_id in ("p-ok", "p-cancelled"):
        ended(workflow_id, days_ago=2)

    dry = dbos("workflow", "prune", "--older-than", "36h", "--dry-run")
    cancelled = dbos("workflow", "prune", "--older-than", "1d", "--status", "cancelled")
    rest = dbos("workflow", "prune", "--older-than", "1440m")

    assert dry.startswith("Would delete 2 finished workflows that ended before ")
    assert cancelled.startswith("Deleted 1 CANCELLED workflow that ended before ")
    assert rest.startswith("Deleted 1 finished workflow that ended before ")
    assert list(WorkflowStatus.objects.values_list("workflow_id", flat=True)) == ["p-recent"]
    with pytest.raises(CommandError, match="not an age"):
        dbos("workflow", "prune", "--older-than", "30 days")


# The admin and the JSON API -------------------------------------------------------------------

CHANGELIST = "/admin/django_dbos/workflowstatus/"


def staff(*codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    for codename in ("view_workflowstatus", *codenames):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_the_admin_action_needs_the_delete_permission_and_logs(client):
    finished("adm-a", "adm-b")
    queued = unserved.enqueue(child, "queued")
    selected = {"action": "delete_workflows", "_selected_action": ["adm-a", queued.workflow_id]}
    client.force_login(staff())

    page = client.get(CHANGELIST).content.decode()
    client.post(CHANGELIST, selected)

    assert 'value="delete_workflows"' not in page
    assert DBOS.get_workflow_status("adm-a") is not None
    client.force_login(staff_with_delete := User.objects.create_user("deleter", is_staff=True))
    for codename in ("view_workflowstatus", "delete_workflowstatus"):
        staff_with_delete.user_permissions.add(Permission.objects.get(codename=codename))

    response = client.post(CHANGELIST, selected, follow=True).content.decode()

    assert "Deleted 1 workflow(s)." in response
    assert "is ENQUEUED" in response
    assert gone("adm-a")
    assert DBOS.get_workflow_status("adm-b") is not None
    logged = LogEntry.objects.get()
    assert (logged.object_id, logged.action_flag, logged.user.username) == (
        "adm-a",
        DELETION,
        "deleter",
    )


def test_the_api_deletes_with_204_and_refuses_an_active_workflow_with_409(client):
    finished("api-a")
    queued = unserved.enqueue(child, "queued")
    client.force_login(User.objects.create_user("viewer"))
    forbidden = client.delete("/dbos/workflows/api-a/")
    user = User.objects.create_user("api")
    user.user_permissions.add(Permission.objects.get(codename="delete_workflowstatus"))
    client.force_login(user)

    deleted = client.delete("/dbos/workflows/api-a/")
    again = client.delete("/dbos/workflows/api-a/")
    active = client.delete(f"/dbos/workflows/{queued.workflow_id}/?delete_children=true")
    wrong = client.put("/dbos/workflows/api-a/")

    assert forbidden.status_code == 403
    assert deleted.status_code == 204 and gone("api-a")
    assert again.status_code == 404
    assert active.status_code == 409
    assert "is ENQUEUED" in active.json()["error"]
    assert active.json()["detail"] == {"type": "DBOSWorkflowActiveError"}
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "GET, DELETE")


# A crash in the middle of a large prune -------------------------------------------------------

CRASH_WORKFLOWS = 3000

PRUNE = """
from django.utils import timezone
from django_dbos import DBOS
from django_dbos.engine import deletion
deletion.BATCH_SIZE = 20  # many small transactions, so that the kill lands in the middle
print(DBOS.garbage_collect(cutoff=timezone.now()), flush=True)
"""


def make_finished_workflows(count: int) -> None:
    """Finished workflows with two steps, an event (and its history) and a stream entry each,
    written straight to the tables: running 3,000 workflows would take too long here."""
    moment = timezone.now() - datetime.timedelta(days=1)
    ids = [f"bulk-{i:05d}" for i in range(count)]
    WorkflowStatus.objects.bulk_create(
        [
            WorkflowStatus(
                workflow_id=wid,
                name="bulk",
                status="SUCCESS",
                output='"ok"',
                created_at=moment,
                updated_at=moment + datetime.timedelta(milliseconds=i),
            )
            for i, wid in enumerate(ids)
        ],
        batch_size=500,
    )
    OperationOutput.objects.bulk_create(
        [
            OperationOutput(
                workflow_id=wid,
                function_id=function_id,
                function_name="step",
                output='"x"',
                started_at=moment,
                completed_at=moment,
            )
            for wid in ids
            for function_id in (1, 2)
        ],
        batch_size=500,
    )
    WorkflowEvent.objects.bulk_create(
        [WorkflowEvent(workflow_id=wid, key="k", value='"v"', updated_at=moment) for wid in ids],
        batch_size=500,
    )
    WorkflowEventHistory.objects.bulk_create(
        [WorkflowEventHistory(workflow_id=wid, function_id=3, key="k", value='"v"') for wid in ids],
        batch_size=500,
    )
    StreamEntry.objects.bulk_create(
        [
            StreamEntry(
                workflow_id=wid, key="s", position=0, value='"v"', function_id=4, created_at=moment
            )
            for wid in ids
        ],
        batch_size=500,
    )


def test_a_prune_killed_midway_leaves_each_workflow_whole_or_gone(processes: Processes):
    make_finished_workflows(CRASH_WORKFLOWS)
    whole = {"status": 1, "OperationOutput": 2, "Notification": 0, "WorkflowEvent": 1}
    whole |= {"WorkflowEventHistory": 1, "StreamEntry": 1}

    pruning = processes.python(PRUNE)
    wait_until(
        lambda: WorkflowStatus.objects.count() < CRASH_WORKFLOWS * 0.8,
        what="the prune to have deleted a fifth",
    )
    pruning.send_signal(signal.SIGKILL)
    pruning.wait(10)

    left = set(WorkflowStatus.objects.values_list("workflow_id", flat=True))
    assert 0 < len(left) < CRASH_WORKFLOWS, "the kill must land in the middle of the prune"
    counts = {model.__name__: {} for model, _ in OWNED}
    for model, column in OWNED:
        for workflow_id in model.objects.values_list(column, flat=True):
            counts[model.__name__][workflow_id] = counts[model.__name__].get(workflow_id, 0) + 1
    for workflow_id in left:
        assert {"status": 1} | {
            name: rows.get(workflow_id, 0) for name, rows in counts.items()
        } == whole
    assert orphans() == []

    assert DBOS.garbage_collect(cutoff=timezone.now()) == len(left)
    assert WorkflowStatus.objects.count() == 0
    assert sum(model.objects.count() for model, _ in OWNED) == 0
