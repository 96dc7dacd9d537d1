"""Attributes and the list filters where people meet them: the JSON API, `manage.py dbos
workflow list` / `export`, and the admin."""

from __future__ import annotations

import datetime
import io
import json
import urllib.parse

import pytest
from django.core.management import CommandError, call_command

from django_dbos import (
    DBOS,
    Queue,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
)

pytestmark = pytest.mark.django_db(transaction=True)

API = "/dbos/workflows/"
CHANGELIST = "/admin/django_dbos/workflowstatus/"
waiting = Queue("tattrs-waiting")  # no worker serves it: its workflows stay ENQUEUED


@DBOS.workflow()
def item(value: int) -> int:
    return value


@DBOS.workflow()
def order_with_item() -> int:
    return DBOS.start_workflow(item, 1).get_result()


@pytest.fixture
def family() -> dict[str, object]:
    """A parent with attributes and its child, a plain workflow and its fork, a queued one."""
    with SetWorkflowAttributes({"tenant": "acme", "tier": "gold"}), SetWorkflowID("s-order"):
        order_with_item()
    with SetWorkflowID("s-plain"):
        item(2)
    fork = DBOS.fork_workflow("s-plain", 1)
    fork.get_result()
    with SetWorkflowID("s-queued"), SetEnqueueOptions(app_version="v-old"):
        waiting.enqueue(item, 3)
    order = DBOS.get_workflow_status("s-order")
    assert order is not None and order.completed_at is not None
    return {"fork": fork.workflow_id, "order": order}


def _query(**params: object) -> str:
    return urllib.parse.urlencode(params, doseq=True)


# The JSON API ---------------------------------------------------------------------------------


def test_the_api_lists_by_every_filter(admin_client, family):
    order = family["order"]

    def listed(**params: object) -> list[str]:
        response = admin_client.get(f"{API}?{_query(**params)}")
        assert response.status_code == 200, response.json()
        return [workflow["workflow_id"] for workflow in response.json()["workflows"]]

    assert listed(attributes='{"tenant": "acme"}') == ["s-order"]
    assert listed(attributes='{"tier": "silver"}') == []
    assert listed(workflow_id_prefix="s-order") == ["s-order", "s-order-1"]
    assert listed(parent_workflow_id="s-order") == ["s-order-1"]
    assert listed(has_parent="true") == ["s-order-1"]
    assert "s-order-1" not in listed(has_parent="false")
    assert listed(forked_from="s-plain") == [family["fork"]]
    assert listed(is_fork="1") == [family["fork"]]
    assert listed(app_version="v-old") == ["s-queued"]
    assert listed(workflow_id=["s-plain", "s-queued"]) == ["s-plain", "s-queued"]
    assert listed(executor_id=order.executor_id, workflow_id_prefix="s-o") == [  # type: ignore[attr-defined]
        "s-order",
        "s-order-1",
    ]
    created = order.created_at  # type: ignore[attr-defined]
    later = (created + datetime.timedelta(microseconds=1)).isoformat()
    assert listed(end_time=created.isoformat()) == ["s-order"]
    assert listed(start_time=created.isoformat())[:2] == ["s-order", "s-order-1"]
    assert "s-order" not in listed(start_time=later)
    assert "s-queued" not in listed(completed_after=created.isoformat())
    ended = order.completed_at.isoformat()  # type: ignore[attr-defined]
    assert listed(completed_before=ended) == ["s-order", "s-order-1"]

    shown = admin_client.get(f"{API}s-order/").json()
    assert shown["attributes"] == {"tenant": "acme", "tier": "gold"}
    assert shown["completed_at"] == shown["updated_at"]
    assert admin_client.get(f"{API}s-queued/").json()["completed_at"] is None


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("attributes", "tenant=acme"),
        ("attributes", "[1]"),
        ("attributes", "null"),
        ("attributes", '{"a": NaN}'),
        ("start_time", "yesterday"),
        ("completed_before", "2026-13-45T00:00:00"),
        ("end_time", "0001-01-01T00:00:00+01:00"),
        ("has_parent", "maybe"),
        ("is_fork", "2"),
    ],
)
def test_the_api_answers_a_bad_filter_with_400_naming_it(admin_client, parameter, value):
    response = admin_client.get(f"{API}?{_query(**{parameter: value})}")
    assert response.status_code == 400
    body = response.json()
    assert parameter in body["error"]
    assert body["detail"] == {"parameter": parameter}


# The command line -----------------------------------------------------------------------------


def dbos(*args: str) -> str:
    out = io.StringIO()
    call_command("dbos", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def listed_by_cli(*args: str) -> list[str]:
    return [row["workflow_id"] for row in json.loads(dbos("workflow", "list", "--json", *args))]


def test_the_cli_lists_by_every_filter(family):
    order = family["order"]
    assert listed_by_cli("--attributes", '{"tier": "gold"}') == ["s-order"]
    assert listed_by_cli("--id-prefix", "s-order") == ["s-order", "s-order-1"]
    assert listed_by_cli("--parent", "s-order") == ["s-order-1"]
    assert listed_by_cli("--has-parent") == ["s-order-1"]
    assert "s-order-1" not in listed_by_cli("--no-has-parent")
    assert listed_by_cli("--forked-from", "s-plain") == [family["fork"]]
    assert listed_by_cli("--is-fork") == [family["fork"]]
    assert family["fork"] not in listed_by_cli("--no-is-fork")
    assert listed_by_cli("--app-version", "v-old") == ["s-queued"]
    assert listed_by_cli("--id", "s-plain", "s-queued") == ["s-plain", "s-queued"]
    assert listed_by_cli("--executor", "nobody") == []
    created = order.created_at  # type: ignore[attr-defined]
    later = (created + datetime.timedelta(microseconds=1)).isoformat()
    assert listed_by_cli("--end-time", created.isoformat()) == ["s-order"]
    assert "s-order" not in listed_by_cli("--start-time", later)
    ended = order.completed_at.isoformat()  # type: ignore[attr-defined]
    assert listed_by_cli("--completed-before", ended) == ["s-order", "s-order-1"]
    assert "s-queued" not in listed_by_cli("--completed-after", created.isoformat())

    row = json.loads(dbos("workflow", "list", "--json", "--id", "s-order"))[0]
    assert row["attributes"] == {"tenant": "acme", "tier": "gold"}
    assert row["completed_at"] == row["updated_at"]
    assert '{"tenant": "acme", "tier": "gold"}' in dbos("workflow", "get", "s-order")

    exported = io.StringIO()
    call_command(
        "dbos", "workflow", "export", "--attributes", '{"tenant": "acme"}', stdout=exported
    )
    records = [json.loads(line) for line in exported.getvalue().splitlines()]
    assert [record["workflow"]["workflow_id"] for record in records] == ["s-order"]
    assert records[0]["workflow"]["attributes"] == {"tenant": "acme", "tier": "gold"}


def test_the_cli_refuses_a_bad_filter_saying_what_to_pass():
    with pytest.raises(CommandError, match="JSON object"):
        dbos("workflow", "list", "--attributes", "tenant=acme")
    with pytest.raises(CommandError, match="ISO 8601"):
        dbos("workflow", "list", "--completed-after", "yesterday")
    with pytest.raises(CommandError, match="attributes"):
        dbos("workflow", "list", "--attributes", '{"a": {"b": "\\u0000"}}')


# The admin ------------------------------------------------------------------------------------


def test_the_admin_shows_attributes_and_finds_workflows_by_them(admin_client, family):
    page = admin_client.get(CHANGELIST + "s-order/change/").content.decode()
    assert "&quot;tenant&quot;: &quot;acme&quot;" in page  # formatted JSON on the page
    listing = admin_client.get(CHANGELIST).content.decode()
    assert "{&quot;tenant&quot;: &quot;acme&quot;, &quot;tier&quot;: &quot;gold&quot;}" in listing

    def shown(query: str) -> set[str]:
        response = admin_client.get(f"{CHANGELIST}?{query}")
        assert response.status_code == 200
        ids = response.context["cl"].result_list.values_list("workflow_id", flat=True)
        return set(ids)

    assert shown(_query(q="tenant=acme")) == {"s-order"}
    assert shown(_query(q='{"tier": "gold", "tenant": "acme"}')) == {"s-order"}
    assert shown(_query(q="tier=silver")) == set()
    assert shown(_query(q='{"bad": NaN}')) == set()
    assert shown("has_parent=yes") == {"s-order-1"}
    assert shown("is_fork=yes") == {family["fork"]}
    assert "s-order-1" not in shown("has_parent=no")
    executor = family["order"].executor_id  # type: ignore[attr-defined]
    assert {"s-order", "s-order-1"} <= shown(_query(executor=executor))
    assert "s-queued" not in shown(_query(executor=executor))


def test_dates_in_the_far_past_are_accepted(family):
    past = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    assert len(DBOS.list_workflows(completed_after=past)) == 4
