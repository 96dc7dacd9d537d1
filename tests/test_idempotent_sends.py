"""Idempotent sends: `DBOS.send(..., idempotency_key=...)` delivers once per key and workflow,
from the API, the client, the JSON API (body or Idempotency-Key header) and other workflows."""

from __future__ import annotations

import asyncio
import base64
import json
import threading

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
)
from django_dbos.models import Notification

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "secret-horse"


@DBOS.workflow()
def collect(count: int, topic: str | None = None) -> list:
    """Receive `count` messages, each waited for briefly: None stands for one that never came."""
    return [DBOS.recv(topic, timeout_seconds=0.5) for _ in range(count)]


@DBOS.workflow()
def send_keyed(destination_id: str, message: str, key: str) -> None:
    DBOS.send(destination_id, message, idempotency_key=key)


def waiting_collector(count: int, topic: str | None = None) -> str:
    """Start a collector that waits long enough for the test's sends."""
    handle = DBOS.start_workflow(collect_slowly, count, topic)
    return handle.workflow_id


@DBOS.workflow()
def collect_slowly(count: int, topic: str | None = None) -> list:
    return [DBOS.recv(topic, timeout_seconds=10 if i == 0 else 0.5) for i in range(count)]


def messages_to(workflow_id: str) -> list[str]:
    return list(
        Notification.objects.filter(destination_id=workflow_id)
        .order_by("id")
        .values_list("message", flat=True)
    )


def test_a_second_send_with_the_same_key_delivers_nothing():
    workflow_id = waiting_collector(3)

    DBOS.send(workflow_id, "charge.succeeded", idempotency_key="evt_1")
    DBOS.send(workflow_id, "charge.succeeded", idempotency_key="evt_1")
    DBOS.send(workflow_id, "refund", idempotency_key="evt_2")

    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=20) == [
        "charge.succeeded",
        "refund",
        None,
    ]


def test_the_key_is_remembered_after_the_message_was_consumed():
    workflow_id = waiting_collector(2)
    DBOS.send(workflow_id, "first", idempotency_key="once")
    wait_until(lambda: Notification.objects.filter(consumed_at__isnull=False).exists())

    DBOS.send(workflow_id, "retried", idempotency_key="once")

    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=20) == ["first", None]


def test_a_key_counts_per_destination_whatever_the_topic():
    with SetWorkflowID("left"):
        DBOS.start_workflow(collect, 1)
    with SetWorkflowID("right"):
        DBOS.start_workflow(collect, 1)

    DBOS.send("left", "to left", idempotency_key="k")
    DBOS.send("right", "to right", idempotency_key="k")
    DBOS.send("left", "on a topic", topic="other", idempotency_key="k")

    assert len(messages_to("left")) == 1
    assert len(messages_to("right")) == 1


def test_sends_without_a_key_are_all_delivered():
    workflow_id = waiting_collector(3)
    DBOS.send(workflow_id, "a")
    DBOS.send(workflow_id, "a")

    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=20) == ["a", "a", None]


def test_concurrent_sends_with_one_key_deliver_one_message():
    workflow_id = waiting_collector(1)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            start.wait()
            DBOS.send(workflow_id, "webhook", idempotency_key="delivery-7")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(messages_to(workflow_id)) == 1


def test_an_unknown_destination_raises_with_a_key_too_and_writes_nothing():
    with pytest.raises(DBOSNonExistentWorkflowError, match="no workflow with that id"):
        DBOS.send("nobody", "hello", idempotency_key="k")
    assert not Notification.objects.exists()


@pytest.mark.parametrize("key", ["", 42, "x" * 300])
def test_a_bad_key_is_refused_before_anything_is_written(key):
    workflow_id = waiting_collector(1)
    with pytest.raises(DBOSInvalidArgumentError, match="idempotency_key"):
        DBOS.send(workflow_id, "hello", idempotency_key=key)
    assert messages_to(workflow_id) == []


def test_two_workflows_sending_with_one_key_deliver_once():
    workflow_id = waiting_collector(2)

    send_keyed(workflow_id, "from the first", "shared")
    send_keyed(workflow_id, "from the second", "shared")

    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=20) == ["from the first", None]


def test_the_client_sends_with_a_key():
    workflow_id = waiting_collector(2)
    client = DBOSClient()

    client.send(workflow_id, "via client", idempotency_key="c1")
    client.send(workflow_id, "via client", idempotency_key="c1")

    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=20) == ["via client", None]


def test_send_async_takes_a_key():
    async def main() -> object:
        handle = await DBOS.start_workflow_async(collect_slowly, 2)
        await DBOS.send_async(handle.workflow_id, "async", idempotency_key="a1")
        await DBOS.send_async(handle.workflow_id, "async", idempotency_key="a1")
        return await handle.get_result_async(timeout=20)

    assert asyncio.run(main()) == ["async", None]


# The JSON API ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user_with(django_user_model):
    """A user holding the given permissions of django_dbos; returns its Basic auth header."""

    def make(*codenames: str) -> dict[str, str]:
        username = f"user-{django_user_model.objects.count()}"
        user = django_user_model.objects.create_user(username, password=PASSWORD)
        for codename in codenames:
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label="django_dbos", codename=codename)
            )
        token = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
        return {"authorization": f"Basic {token}"}

    return make


def post_send(client: Client, workflow_id: str, body: dict, **headers: str):
    return client.post(
        f"/dbos/workflows/{workflow_id}/send/",
        json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def test_a_retried_webhook_delivers_once_through_the_json_api(client, user_with):
    workflow_id = waiting_collector(3)
    auth = user_with("send_message")

    for _ in range(2):
        sent = post_send(
            client, workflow_id, {"message": "paid", "idempotency_key": "evt_9"}, **auth
        )
        assert sent.status_code == 202
    for _ in range(2):
        sent = post_send(
            client, workflow_id, {"message": "shipped"}, idempotency_key="evt_10", **auth
        )
        assert sent.status_code == 202

    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=20) == ["paid", "shipped", None]


def test_the_json_api_refuses_a_header_and_a_body_key_that_differ(client, user_with):
    workflow_id = waiting_collector(1)

    sent = post_send(
        client,
        workflow_id,
        {"message": "x", "idempotency_key": "a"},
        idempotency_key="b",
        **user_with("send_message"),
    )

    assert sent.status_code == 400
    assert "differ" in sent.json()["error"]
    assert messages_to(workflow_id) == []


def test_sending_over_the_json_api_needs_send_message_or_change(client, user_with):
    workflow_id = waiting_collector(3)

    refused = post_send(client, workflow_id, {"message": 1}, **user_with("view_workflowstatus"))
    assert refused.status_code == 403
    assert "send_message" in refused.json()["error"]
    allowed = post_send(client, workflow_id, {"message": 2}, **user_with("change_workflowstatus"))
    assert allowed.status_code == 202

    assert messages_to(workflow_id) == ["2"]
