"""The admin: workflow list and page, actions behind their permissions, the dashboard."""

from __future__ import annotations

import re
import threading

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User

from django_dbos import DBOS, Queue, SetWorkflowID
from django_dbos.models import WorkflowStatus
from testproject.shop.workflows import journal_until_message, ten_step_journal

from .conftest import wait_until
from .workers import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/django_dbos/workflowstatus/"
release = threading.Event()
served = Queue("tadm-served")
unserved = Queue("tadm-unserved")  # no worker serves it in these tests


@DBOS.step()
def wait_for_release() -> str:
    release.wait(10)
    return "released"


@DBOS.workflow()
def held_workflow() -> str:
    return wait_for_release()


@DBOS.workflow()
def parent_with_events() -> str:
    DBOS.set_event("stage", "charged")
    DBOS.write_stream("progress", 50)
    DBOS.close_stream("progress")
    return held_child()


@DBOS.workflow()
def held_child() -> str:
    return "child done"


@pytest.fixture(autouse=True)
def _release():
    release.clear()
    yield
    release.set()


def staff(*codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    for codename in ("view_workflowstatus", *codenames):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_the_list_shows_coloured_statuses_and_filters(admin_client, tmp_path):
    with SetWorkflowID("journal-a"):
        ten_step_journal(str(tmp_path / "a.txt"))

    page = admin_client.get(CHANGELIST).content.decode()
    filtered = admin_client.get(CHANGELIST + "?status__exact=ERROR").content.decode()
    searched = admin_client.get(CHANGELIST + "?q=journal-a").content.decode()

    assert "journal-a" in page
    assert 'class="dbos-status"' in page and "#2e7d32" in page  # SUCCESS in green
    assert "ten_step_journal" in page  # the workflow-name filter offers it
    assert "journal-a" not in filtered
    assert "journal-a" in searched
    assert 'href="/admin/django_dbos/workflowstatus/dashboard/"' in page


def test_the_workflow_page_shows_steps_io_events_streams_and_family(admin_client, tmp_path):
    with SetWorkflowID("journal-b"):
        ten_step_journal(str(tmp_path / "b.txt"))
    with SetWorkflowID("family"):
        parent_with_events()

    journal = admin_client.get(CHANGELIST + "journal-b/change/").content.decode()
    family = admin_client.get(CHANGELIST + "family/change/").content.decode()

    assert journal.count('class="dbos-step"') == 11  # ten steps and the ledger transaction
    assert "write_ledger_entry" in journal
    assert "&quot;step 10&quot;" in journal
    assert "&quot;args&quot;" in journal  # the input, as formatted JSON
    assert "<td>stage</td><td>&quot;charged&quot;</td>" in family
    assert "<td>progress</td><td>0</td><td>50</td>" in family
    assert 'child: <a href="/admin/django_dbos/workflowstatus/family-4/change/">family-4</a>' in (
        family
    )


def test_cancel_and_resume_actions_act_and_are_logged(admin_client):
    handle = DBOS.start_workflow(held_workflow)

    response = admin_client.post(
        CHANGELIST,
        {"action": "cancel_workflows", "_selected_action": [handle.workflow_id]},
        follow=True,
    )

    assert "Cancelled 1 workflow(s)." in response.content.decode()
    assert DBOS.get_workflow_status(handle.workflow_id).status == "CANCELLED"
    release.set()
    admin_client.post(
        CHANGELIST, {"action": "resume_workflows", "_selected_action": [handle.workflow_id]}
    )
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result(timeout=10) == "released"
    logged = LogEntry.objects.filter(object_id=handle.workflow_id).order_by("id")
    assert [entry.change_message for entry in logged] == [
        f"Cancelled workflow {handle.workflow_id}",
        f"Resumed workflow {handle.workflow_id}",
    ]


def test_the_fork_action_forks_from_the_given_step(admin_client, tmp_path):
    with SetWorkflowID("to-fork"):
        ten_step_journal(str(tmp_path / "c.txt"))

    admin_client.post(
        CHANGELIST,
        {"action": "fork_workflows", "_selected_action": ["to-fork"], "start_step": "8"},
    )

    [fork] = DBOS.list_workflows(name=ten_step_journal.__dbos__.name, status=None)[1:]
    assert fork.forked_from == "to-fork"
    DBOS.retrieve_workflow(fork.workflow_id).get_result(timeout=10)
    assert (tmp_path / "c.txt").read_text().count("\n") == 10 + 4  # steps 7 to 10 ran again


def test_each_action_needs_its_own_permission(client):
    handle = DBOS.start_workflow(held_workflow)
    client.force_login(staff("resume_workflowstatus"))

    page = client.get(CHANGELIST).content.decode()
    response = client.post(
        CHANGELIST, {"action": "cancel_workflows", "_selected_action": [handle.workflow_id]}
    )

    assert 'value="resume_workflows"' in page
    assert 'value="cancel_workflows"' not in page
    assert 'value="fork_workflows"' not in page
    assert response.status_code in (200, 302)
    assert DBOS.get_workflow_status(handle.workflow_id).status == "PENDING"
    assert not LogEntry.objects.exists()


def test_workflows_cannot_be_added_changed_or_deleted(admin_client, tmp_path):
    with SetWorkflowID("journal-d"):
        ten_step_journal(str(tmp_path / "d.txt"))

    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    assert admin_client.post(CHANGELIST + "journal-d/delete/").status_code == 403
    assert 'name="_save"' not in admin_client.get(CHANGELIST + "journal-d/change/").content.decode()


def test_the_dashboard_counts_statuses_queues_throughput_and_executors(admin_client, tmp_path):
    for letter in "xyz":
        ten_step_journal(str(tmp_path / f"{letter}.txt"))
    held = DBOS.start_workflow(held_workflow)

    page = admin_client.get(CHANGELIST + "dashboard/").content.decode()

    assert 'id="count-SUCCESS"' in page
    success_card = page.split('id="count-SUCCESS"')[1]
    assert '<div class="count">3</div>' in success_card.split("</a>")[0]
    pending_card = page.split('id="count-PENDING"')[1]
    assert '<div class="count">1</div>' in pending_card.split("</a>")[0]
    assert "The last hour: 3 finished, 0 failed" in page
    assert page.count('class="dbos-bar"') == 60
    assert 'class="dbos-alive"' in page  # this test process heartbeats
    release.set()
    held.get_result(timeout=10)


def dashboard_row(page: str, queue_name: str) -> str:
    return page.split(f'id="queue-{queue_name}"')[1].split("</tr>")[0]


def cells(row: str) -> list[str]:
    """Enqueued, running, oldest waiting and live workers, as the dashboard's row shows them."""
    return [cell.split("<")[0].strip() for cell in row.split("<td>")[2:6]]


def test_the_dashboard_flags_waiting_work_that_no_live_worker_serves(admin_client):
    with running_worker(queues=["tadm-served"], before_stop=release.set):
        served.enqueue(held_workflow)
        unserved.enqueue(held_workflow)
        wait_until(lambda: DBOS.list_queued_workflows(queue_name="tadm-served", status="PENDING"))
        page = admin_client.get(CHANGELIST + "dashboard/").content.decode()
        release.set()

    warning = "No live worker serves this queue"
    flagged, fine = dashboard_row(page, "tadm-unserved"), dashboard_row(page, "tadm-served")
    assert warning in flagged
    enqueued, running, oldest, live_workers = cells(flagged)
    assert (enqueued, running, live_workers) == ("1", "0", "0")
    assert re.fullmatch(r"\d+ s", oldest)
    assert warning not in fine
    assert cells(fine) == ["0", "1", "-", "1"]


def test_the_dashboard_needs_the_view_permission(client):
    client.force_login(User.objects.create_user("nobody", password="pw", is_staff=True))
    assert client.get(CHANGELIST + "dashboard/").status_code == 403


def test_a_parked_workflow_shows_what_it_waits_for(admin_client, tmp_path):
    with SetWorkflowID("parked-journal"):
        handle = DBOS.start_workflow(journal_until_message, str(tmp_path / "p.txt"))
    wait_until(
        lambda: WorkflowStatus.objects.exclude(waiting="").filter(workflow_id="parked-journal"),
        what="the workflow to park",
    )

    listed = admin_client.get(CHANGELIST).content.decode()
    detail = admin_client.get(CHANGELIST + "parked-journal/change/").content.decode()

    assert "waiting for a message on topic &#x27;go&#x27;" in listed
    assert "waiting for a message on topic &#x27;go&#x27;" in detail
    DBOS.send("parked-journal", "done", topic="go")
    assert handle.get_result(timeout=10) == "done"
    assert "waiting for a message" not in admin_client.get(CHANGELIST).content.decode()
