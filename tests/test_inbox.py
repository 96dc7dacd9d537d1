"""The inbox: workflows waiting in recv are listed (the admin, the JSON API) and answered by a
person, with the recv's Django form, once, and logged."""

from __future__ import annotations

import datetime
import threading
from decimal import Decimal

import pytest
from django import forms
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.db import connections
from django.test import Client

from django_dbos import DBOS, DBOSInvalidArgumentError, SetWorkflowID
from django_dbos.engine import system_db
from django_dbos.models import MessageWait, Notification, WorkflowStatus
from testproject.shop.workflows import REFUND_DECISION, refund_request

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

INBOX = "/admin/django_dbos/workflowstatus/inbox/"
WAITS = "/dbos/waits/"
GOOD_ANSWER = {"approved": "on", "amount": "12.50", "refund_on": "2026-12-24", "note": "ok"}


class NotAForm:
    pass


class ExtraPermissionForm(forms.Form):
    """A form that asks more of whoever answers with it than send_message."""

    answer_permission = "django_dbos.fork_workflowstatus"
    ok = forms.BooleanField()


@DBOS.workflow()
def wait_for_note(timeout: float = 30) -> object:
    return DBOS.recv("note", timeout_seconds=timeout)


@DBOS.workflow()
async def wait_for_note_async(timeout: float = 30) -> object:
    return await DBOS.recv_async("note", timeout_seconds=timeout, form=ExtraPermissionForm)


@DBOS.workflow()
def message_to_self() -> object:
    DBOS.send(DBOS.workflow_id, "already here", topic="note")
    return DBOS.recv("note", timeout_seconds=30)


@DBOS.workflow()
def recv_with_bad_form(kind: str) -> object:
    class LocalForm(forms.Form):
        pass

    form = {"instance": ExtraPermissionForm(), "class": NotAForm, "local": LocalForm}[kind]
    return DBOS.recv("note", timeout_seconds=1, form=form)


def listed(workflow_id: str) -> object:
    return wait_until(
        lambda: [w for w in DBOS_waits() if w.workflow_id == workflow_id],
        what=f"{workflow_id} to wait in recv",
    )[0]


def DBOS_waits() -> list:
    return system_db.waiting_workflows()


def start_refund(workflow_id: str = "refund-1") -> object:
    with SetWorkflowID(workflow_id):
        return DBOS.start_workflow(refund_request, 7, 600)


def user(name: str, *codenames: str) -> User:
    person = User.objects.create_user(name, password="pw", is_staff=True)
    for codename in ("view_workflowstatus", *codenames):
        person.user_permissions.add(Permission.objects.get(codename=codename))
    return person


# The waits ------------------------------------------------------------------------------------


def test_a_waiting_recv_is_listed_until_its_message_is_consumed():
    handle = start_refund()
    wait = listed("refund-1")
    assert (wait.name, wait.topic, wait.form) == (
        "testproject.shop.workflows.refund_request",
        REFUND_DECISION,
        "testproject.shop.forms:RefundDecisionForm",
    )
    assert wait.function_id == 2  # its deadline is operation 1
    assert abs((wait.deadline - wait.since).total_seconds() - 600) < 2

    DBOS.send("refund-1", {"approved": False}, topic=REFUND_DECISION)

    assert handle.get_result(timeout=10) == {"approved": False}
    assert not MessageWait.objects.exists()


def test_a_recv_that_times_out_is_taken_off_the_list():
    assert wait_for_note(0.2) is None
    assert not MessageWait.objects.exists()


def test_a_recv_that_finds_its_message_at_once_lists_nothing(monkeypatch):
    begun: list[tuple] = []
    real = system_db.begin_wait
    monkeypatch.setattr(system_db, "begin_wait", lambda *args: begun.append(args) or real(*args))

    assert message_to_self() == "already here"
    assert wait_for_note(0.1) is None  # the spy sees a wait that does begin
    assert len(begun) == 1 and begun[0][2] == "note"


def test_an_async_recv_is_listed_and_taken_off_too():
    with SetWorkflowID("async-note"):
        handle = DBOS.start_workflow(wait_for_note_async)
    wait = listed("async-note")
    assert wait.form == "tests.test_inbox:ExtraPermissionForm"
    DBOS.send("async-note", {"ok": True}, topic="note")
    assert handle.get_result(timeout=10) == {"ok": True}
    assert not MessageWait.objects.exists()


def test_a_parked_recv_keeps_its_wait_and_drops_it_when_it_resumes(settings):
    settings.DBOS = {**settings.DBOS, "PARK_WAITS_OVER_SECONDS": 0.2}
    with SetWorkflowID("parked-note"):
        handle = DBOS.start_workflow(wait_for_note, 3600)
    wait_until(
        lambda: WorkflowStatus.objects.filter(workflow_id="parked-note").exclude(waiting=""),
        what="the workflow to park",
    )
    assert listed("parked-note").topic == "note"

    DBOS.send("parked-note", "go on", topic="note")

    assert handle.get_result(timeout=10) == "go on"
    assert not MessageWait.objects.exists()


def test_a_cancelled_wait_is_not_listed_and_goes_with_its_workflow():
    handle = start_refund("refund-cancelled")
    since = listed("refund-cancelled").since
    DBOS.cancel_workflow("refund-cancelled")
    assert DBOS_waits() == []

    DBOS.resume_workflow("refund-cancelled")
    assert listed("refund-cancelled").since == since  # the re-run found its row
    DBOS.cancel_workflow("refund-cancelled")
    wait_until(lambda: handle.get_status().status == "CANCELLED", what="the cancellation")
    DBOS.delete_workflow("refund-cancelled")
    assert not MessageWait.objects.exists()


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("instance", "pass the class itself"),
        ("class", "must be a Django form class"),
        ("local", "define it at the top level of a module"),
    ],
)
def test_recv_refuses_a_form_that_is_not_an_importable_form_class(kind, says):
    with pytest.raises(DBOSInvalidArgumentError, match=says):
        recv_with_bad_form(kind)


# The admin ------------------------------------------------------------------------------------


def test_the_inbox_lists_waits_and_who_may_answer(client):
    start_refund()
    listed("refund-1")
    reviewers = Group.objects.create(name="reviewers")
    reviewers.permissions.add(Permission.objects.get(codename="send_message"))
    user("bob", "send_message")
    user("carol").groups.add(reviewers)
    client.force_login(user("dave"))  # may look, not answer

    page = client.get(INBOX).content.decode()

    assert 'href="/admin/django_dbos/workflowstatus/refund-1/change/"' in page
    assert "<code>refund_decision</code>" in page
    assert "refund_request" in page
    assert "<td>bob, carol</td>" in page
    assert "dbos-answer" not in page  # no Answer link without send_message
    assert "refund-1" not in client.get(INBOX, {"topic": "other"}).content.decode()
    client.force_login(user("erin", "send_message"))
    assert f'href="{INBOX}refund-1/2/"' in client.get(INBOX).content.decode()
    DBOS.send("refund-1", None, topic=REFUND_DECISION)


def test_a_bad_answer_shows_the_forms_errors_and_sends_nothing(admin_client):
    start_refund()
    listed("refund-1")

    page = admin_client.get(INBOX + "refund-1/2/").content.decode()
    response = admin_client.post(INBOX + "refund-1/2/", {**GOOD_ANSWER, "amount": "-3"})

    assert 'name="refund_on"' in page and "Approve the refund" in page
    assert "&quot;args&quot;: [\n    7,\n    600\n  ]" in page  # the workflow's input
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0.01." in response.content.decode()
    assert not Notification.objects.exists()
    DBOS.send("refund-1", None, topic=REFUND_DECISION)


def test_a_good_answer_reaches_the_workflow_as_cleaned_data_once_and_is_logged(admin_client):
    handle = start_refund()
    listed("refund-1")

    first = admin_client.post(INBOX + "refund-1/2/", GOOD_ANSWER, follow=True)
    second = admin_client.post(INBOX + "refund-1/2/", GOOD_ANSWER, follow=True)

    assert handle.get_result(timeout=10) == {
        "approved": True,
        "amount": Decimal("12.50"),
        "refund_on": datetime.date(2026, 12, 24),
        "note": "ok",
    }
    assert first.redirect_chain == [(INBOX, 302)]
    assert (
        "Answered workflow refund-1 on topic &#x27;refund_decision&#x27;." in first.content.decode()
    )
    assert "already answered" in second.content.decode()
    assert Notification.objects.filter(destination_id="refund-1").count() == 1
    entry = LogEntry.objects.get()
    assert (entry.object_id, entry.action_flag) == ("refund-1", CHANGE)
    assert entry.get_change_message() == "Answered recv on topic 'refund_decision'"


def test_two_people_answering_at_once_deliver_one_message(client):
    start_refund()
    listed("refund-1")
    people = [user(name, "send_message") for name in ("ann", "ben")]
    barrier = threading.Barrier(2)

    def answer(person: User) -> None:
        browser = Client()
        browser.force_login(person)
        barrier.wait()
        try:
            browser.post(INBOX + "refund-1/2/", GOOD_ANSWER)
        finally:
            connections.close_all()  # this thread's own connections

    threads = [threading.Thread(target=answer, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert Notification.objects.filter(destination_id="refund-1").count() == 1


def test_a_recv_without_a_form_is_answered_with_json(admin_client):
    with SetWorkflowID("json-note"):
        handle = DBOS.start_workflow(wait_for_note)
    listed("json-note")

    bad = admin_client.post(INBOX + "json-note/2/", {"message": "{not json"})
    admin_client.post(INBOX + "json-note/2/", {"message": '{"ship": [1, 2]}'})

    assert "Enter a valid JSON." in bad.content.decode()
    assert handle.get_result(timeout=10) == {"ship": [1, 2]}


def test_answering_needs_send_message_and_the_forms_own_permission(client):
    start_refund()
    with SetWorkflowID("async-note"):
        DBOS.start_workflow(wait_for_note_async)
    listed("refund-1")
    listed("async-note")

    client.force_login(user("viewer"))
    assert client.get(INBOX).status_code == 200
    assert client.get(INBOX + "refund-1/2/").status_code == 403
    assert client.post(INBOX + "refund-1/2/", GOOD_ANSWER).status_code == 403
    client.force_login(user("sender", "send_message"))
    assert client.get(INBOX + "refund-1/2/").status_code == 200
    assert client.post(INBOX + "async-note/2/", {"ok": "on"}).status_code == 403
    client.force_login(user("forker", "send_message", "fork_workflowstatus"))
    assert client.post(INBOX + "async-note/2/", {"ok": "on"}).status_code == 302

    assert not Notification.objects.filter(destination_id="refund-1").exists()
    client.logout()
    assert client.get(INBOX).status_code == 302  # to the login page
    DBOS.send("refund-1", None, topic=REFUND_DECISION)


# The JSON API ---------------------------------------------------------------------------------


def test_the_json_api_lists_the_waits_with_filters(client):
    start_refund()
    listed("refund-1")
    with SetWorkflowID("json-note"):
        DBOS.start_workflow(wait_for_note)
    listed("json-note")
    client.force_login(user("reader"))

    everything = client.get(WAITS).json()
    refunds = client.get(WAITS, {"topic": REFUND_DECISION}).json()["waits"]
    by_name = client.get(WAITS, {"name": "tests.test_inbox.wait_for_note"}).json()["waits"]
    first = client.get(WAITS, {"limit": 1}).json()["waits"]

    assert [w["workflow_id"] for w in everything["waits"]] == ["refund-1", "json-note"]
    assert refunds == [
        {
            "workflow_id": "refund-1",
            "function_id": 2,
            "name": "testproject.shop.workflows.refund_request",
            "topic": REFUND_DECISION,
            "form": "testproject.shop.forms:RefundDecisionForm",
            "since": refunds[0]["since"],
            "deadline": refunds[0]["deadline"],
            "idempotency_key": "inbox:2",
            "answer_url": INBOX + "refund-1/2/",
        }
    ]
    assert [w["workflow_id"] for w in by_name] == ["json-note"]
    assert [w["workflow_id"] for w in first] == ["refund-1"]
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert client.get(WAITS).status_code == 403
    for workflow_id, topic in (("refund-1", REFUND_DECISION), ("json-note", "note")):
        DBOS.send(workflow_id, None, topic=topic)
