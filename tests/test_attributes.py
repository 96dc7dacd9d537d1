"""Workflow attributes (SetWorkflowAttributes, update_workflow_attributes, containment) and the
list filters beyond DBOS Python's first ones, on both databases."""

from __future__ import annotations

import asyncio
import datetime

import pytest
from django.db import connections

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    Queue,
    SetWorkflowAttributes,
    SetWorkflowID,
)
from django_dbos.models import WorkflowStatus

pytestmark = pytest.mark.django_db(transaction=True)

waiting = Queue("tattr-waiting")  # no worker serves it: enqueued workflows stay ENQUEUED


@DBOS.workflow()
def leaf(value: int) -> int:
    return value


@DBOS.workflow()
def parent_of_one() -> str:
    return DBOS.start_workflow(leaf, 1).workflow_id


@DBOS.workflow()
def parent_labelling_its_child() -> str:
    with SetWorkflowAttributes({"role": "child"}):
        return DBOS.start_workflow(leaf, 2).workflow_id


@DBOS.workflow()
async def async_leaf() -> str:
    return "async"


@DBOS.workflow()
def fails() -> None:
    raise ValueError("no")


def attributes_of(workflow_id: str) -> dict | None:
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return status.attributes


def listed(**filters: object) -> list[str]:
    return [status.workflow_id for status in DBOS.list_workflows(**filters)]


# Recording ------------------------------------------------------------------------------------


def test_every_way_of_starting_records_the_blocks_attributes():
    with SetWorkflowAttributes({"tenant": "acme", "order": 42}):
        with SetWorkflowID("attr-started"):
            DBOS.start_workflow(leaf, 1).get_result()
        with SetWorkflowID("attr-inline"):
            assert leaf(2) == 2
        with SetWorkflowID("attr-enqueued"):
            waiting.enqueue(leaf, 3)
        with SetWorkflowID("attr-async"):
            assert asyncio.run(async_leaf()) == "async"
        DBOS.start_workflow(leaf, 4).get_result()  # every start of the block, not the first only
    with SetWorkflowID("attr-after"):
        leaf(5)
    client = DBOSClient()
    client.enqueue(
        {
            "queue_name": "tattr-waiting",
            "workflow_name": leaf.__dbos__.name,  # type: ignore[attr-defined]
            "workflow_id": "attr-client",
            "attributes": {"from": "client"},
        },
        6,
    )

    expected = {"tenant": "acme", "order": 42}
    for workflow_id in ("attr-started", "attr-inline", "attr-enqueued", "attr-async"):
        assert attributes_of(workflow_id) == expected, workflow_id
    assert len(listed(attributes=expected)) == 5
    assert attributes_of("attr-after") is None
    assert attributes_of("attr-client") == {"from": "client"}


def test_children_do_not_inherit_attributes_but_may_be_given_their_own():
    with SetWorkflowAttributes({"tenant": "acme"}):
        child = DBOS.start_workflow(parent_of_one).get_result()
        labelled = DBOS.start_workflow(parent_labelling_its_child).get_result()
    assert attributes_of(child) is None
    assert attributes_of(labelled) == {"role": "child"}


def test_a_fork_keeps_its_originals_attributes():
    with SetWorkflowAttributes({"tenant": "acme"}), SetWorkflowID("attr-original"):
        leaf(1)
    fork = DBOS.fork_workflow("attr-original", 1)
    fork.get_result()
    assert attributes_of(fork.workflow_id) == {"tenant": "acme"}


def test_an_inner_block_replaces_the_attributes_and_none_clears_them():
    with SetWorkflowAttributes({"a": 1}):
        with SetWorkflowAttributes({"b": 2}), SetWorkflowID("attr-inner"):
            leaf(1)
        with SetWorkflowAttributes(None), SetWorkflowID("attr-none"):
            leaf(1)
        with SetWorkflowID("attr-outer"):
            leaf(1)
    assert attributes_of("attr-inner") == {"b": 2}
    assert attributes_of("attr-none") is None
    assert attributes_of("attr-outer") == {"a": 1}


@pytest.mark.parametrize(
    "bad",
    [
        ["not", "a", "dict"],
        {1: "int key"},
        {"when": datetime.date(2026, 1, 1)},
        {"nan": float("nan")},
        {"tuple": (1, 2)},
        {"nul": "a\x00b"},
    ],
)
def test_bad_attributes_are_refused_at_the_block_and_nothing_is_written(bad):
    with pytest.raises(DBOSInvalidArgumentError, match="attributes"):
        SetWorkflowAttributes(bad)
    with pytest.raises(DBOSInvalidArgumentError):
        DBOSClient().enqueue(
            {"queue_name": "tattr-waiting", "workflow_name": "x", "attributes": bad}
        )
    assert not WorkflowStatus.objects.exists()


def test_the_block_keeps_a_copy_of_the_attributes():
    given = {"tags": ["a"]}
    block = SetWorkflowAttributes(given)
    given["tags"].append("b")
    with block, SetWorkflowID("attr-copy"):
        leaf(1)
    assert attributes_of("attr-copy") == {"tags": ["a"]}


# Updating -------------------------------------------------------------------------------------


def test_update_replaces_merges_and_clears_without_moving_the_end_time():
    with SetWorkflowAttributes({"tenant": "acme", "stage": "new"}), SetWorkflowID("attr-upd"):
        leaf(1)
    ended = DBOS.get_workflow_status("attr-upd")
    assert ended is not None and ended.completed_at == ended.updated_at

    DBOS.update_workflow_attributes("attr-upd", {"stage": "paid", "amount": 10}, merge=True)
    assert attributes_of("attr-upd") == {"tenant": "acme", "stage": "paid", "amount": 10}
    DBOS.update_workflow_attributes("attr-upd", {"only": True})
    assert attributes_of("attr-upd") == {"only": True}
    DBOS.update_workflow_attributes("attr-upd", None)
    assert attributes_of("attr-upd") is None
    DBOS.update_workflow_attributes("attr-upd", {"from": "nothing"}, merge=True)
    assert attributes_of("attr-upd") == {"from": "nothing"}
    asyncio.run(DBOS.update_workflow_attributes_async("attr-upd", {"x": [1]}, merge=True))
    DBOSClient().update_workflow_attributes("attr-upd", {"y": None}, merge=True)
    assert attributes_of("attr-upd") == {"from": "nothing", "x": [1], "y": None}

    after = DBOS.get_workflow_status("attr-upd")
    assert after is not None
    assert (after.updated_at, after.completed_at) == (ended.updated_at, ended.completed_at)


def test_update_refuses_an_unknown_workflow_bad_attributes_and_merging_none():
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.update_workflow_attributes("attr-nobody", {"a": 1})
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.update_workflow_attributes("attr-nobody", {"a": 1}, merge=True)
    with SetWorkflowAttributes({"a": 1}), SetWorkflowID("attr-kept"):
        leaf(1)
    with pytest.raises(DBOSInvalidArgumentError, match="merge"):
        DBOS.update_workflow_attributes("attr-kept", None, merge=True)
    with pytest.raises(DBOSInvalidArgumentError):
        DBOS.update_workflow_attributes("attr-kept", {"a": object()})
    assert attributes_of("attr-kept") == {"a": 1}


# Containment: the same table of cases on both databases -----------------------------------------

DOCUMENT = {
    "tenant": "acme",
    "order": 42,
    "ratio": 1.5,
    "paid": True,
    "note": None,
    "tags": ["a", "b", 3],
    "address": {"city": "Paris", "zip": "75001", "lines": ["1 rue", "2e"]},
    "items": [{"sku": "x", "qty": 1}, {"sku": "y", "qty": 2}],
    "matrix": [[1, 2], [3]],
}
CONTAINMENT = [
    ({}, True),
    ({"tenant": "acme"}, True),
    ({"tenant": "acme", "order": 42}, True),
    ({"tenant": "other"}, False),
    ({"order": 42.0}, True),  # numbers by value
    ({"ratio": 1.50}, True),
    ({"order": "42"}, False),  # never across types
    ({"paid": 1}, False),
    ({"paid": True}, True),
    ({"order": True}, False),
    ({"note": None}, True),  # a null value matches a null value
    ({"missing": None}, False),  # not a missing key
    ({"address": {"city": "Paris"}}, True),  # nested objects
    ({"address": {"city": "Lyon"}}, False),
    ({"address": {}}, True),
    ({"address": "Paris"}, False),
    ({"tags": ["a"]}, True),  # arrays contain elements, in any order, repeated
    ({"tags": ["b", "a", "a"]}, True),
    ({"tags": [3.0]}, True),
    ({"tags": ["c"]}, False),
    ({"tags": []}, True),
    ({"tags": "a"}, False),  # an array does not contain a bare element inside a document
    ({"address": {"lines": ["2e"]}}, True),
    ({"items": [{"sku": "y"}]}, True),  # arrays of objects
    ({"items": [{"sku": "y", "qty": 1}]}, False),
    ({"items": [{"sku": "x"}, {"qty": 2}]}, True),
    ({"matrix": [[3]]}, True),
    ({"matrix": [3]}, False),
    ({"tenant": ["acme"]}, False),
]


def test_containment_matches_jsonb_on_both_databases():
    with SetWorkflowAttributes(DOCUMENT), SetWorkflowID("attr-doc"):
        leaf(1)
    with SetWorkflowAttributes({"tenant": "acme", "tags": []}), SetWorkflowID("attr-other"):
        leaf(2)
    with SetWorkflowID("attr-none"):
        leaf(3)  # no attributes: never matches a pattern with a key
    outcomes = [(pattern, "attr-doc" in listed(attributes=pattern)) for pattern, _ in CONTAINMENT]
    assert outcomes == CONTAINMENT
    assert listed(attributes={}) == ["attr-doc", "attr-other", "attr-none"]  # no filter
    assert listed(attributes={"tenant": "acme"}, name=leaf.__dbos__.name) == [  # type: ignore[attr-defined]
        "attr-doc",
        "attr-other",
    ]
    with pytest.raises(DBOSInvalidArgumentError, match="attributes filter"):
        DBOS.list_workflows(attributes="tenant=acme")  # type: ignore[arg-type]


def test_postgresql_answers_containment_from_the_gin_index(is_postgres):
    if not is_postgres:
        pytest.skip("SQLite has no GIN index: it tests every row (docs/attributes.md)")
    rows = WorkflowStatus.objects.filter(attributes__contains={"tenant": "acme"})
    sql, params = rows.query.sql_with_params()
    with connections["default"].cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "@>" in sql
    assert "dbos_wf_attributes_idx" in plan, plan


# The other filters ----------------------------------------------------------------------------


def test_prefix_executor_parent_and_fork_filters():
    with SetWorkflowID("Order-1"):
        parent = DBOS.start_workflow(parent_of_one)
    child = parent.get_result()
    with SetWorkflowID("order-2"):
        leaf(2)
    with SetWorkflowID("ord%_3"):
        leaf(3)
    fork = DBOS.fork_workflow("order-2", 1)
    fork.get_result()

    assert listed(workflow_id_prefix="Order-") == ["Order-1", child]  # case counts
    assert listed(workflow_id_prefix="order") == ["order-2"]
    assert listed(workflow_id_prefix="ord%") == ["ord%_3"]  # no wildcards
    assert len(listed(workflow_id_prefix="")) == 5  # every id starts with ""
    assert listed(parent_workflow_id="Order-1") == [child]
    assert listed(has_parent=True) == [child]
    assert child not in listed(has_parent=False)
    assert listed(forked_from="order-2") == [fork.workflow_id]
    assert listed(is_fork=True) == [fork.workflow_id]
    assert fork.workflow_id not in listed(is_fork=False)
    status = DBOS.get_workflow_status("order-2")
    assert status is not None and status.executor_id
    assert "order-2" in listed(executor_id=status.executor_id)
    assert listed(executor_id="nobody") == []


def test_completed_filters_and_completed_at_cover_finished_workflows_only():
    with SetWorkflowID("attr-early"):
        leaf(1)
    with SetWorkflowID("attr-failed"), pytest.raises(ValueError):
        fails()
    with SetWorkflowID("attr-queued"):
        waiting.enqueue(leaf, 3)
    early = DBOS.get_workflow_status("attr-early")
    failed = DBOS.get_workflow_status("attr-failed")
    queued = DBOS.get_workflow_status("attr-queued")
    assert early and failed and queued
    assert early.completed_at is not None and failed.completed_at is not None
    assert queued.completed_at is None
    assert failed.completed_at >= early.completed_at

    assert listed(completed_after=early.completed_at) == ["attr-early", "attr-failed"]
    assert listed(completed_after=failed.completed_at) == ["attr-failed"]
    assert listed(completed_before=early.completed_at) == ["attr-early"]
    past = early.created_at - datetime.timedelta(days=1)
    assert listed(completed_after=past) == ["attr-early", "attr-failed"]  # never the queued one
    assert listed(completed_before=past) == []


def test_queued_listing_takes_the_filters_that_fit_it():
    with SetWorkflowAttributes({"batch": 7}), SetWorkflowID("attr-q1"):
        waiting.enqueue(leaf, 1)
    with SetWorkflowID("attr-q2"):
        waiting.enqueue(leaf, 2)
    found = DBOS.list_queued_workflows(attributes={"batch": 7})
    assert [status.workflow_id for status in found] == ["attr-q1"]
    found = DBOS.list_queued_workflows(workflow_id_prefix="attr-q", has_parent=False)
    assert [status.workflow_id for status in found] == ["attr-q1", "attr-q2"]


def test_export_and_import_carry_the_attributes():
    with SetWorkflowAttributes({"tenant": "acme", "n": [1, 2.5]}), SetWorkflowID("attr-moved"):
        leaf(1)
    ended = DBOS.get_workflow_status("attr-moved")
    (record,) = DBOS.export_workflows(attributes={"tenant": "acme"})
    DBOS.delete_workflow("attr-moved")
    DBOS.import_workflow(record)
    imported = DBOS.get_workflow_status("attr-moved")
    assert imported is not None and ended is not None
    assert imported.attributes == {"tenant": "acme", "n": [1, 2.5]}
    assert imported.completed_at == ended.completed_at

    record["workflow"]["workflow_id"] = "attr-bad-record"
    record["workflow"]["attributes"] = ["not", "an", "object"]
    with pytest.raises(DBOSInvalidArgumentError, match="attributes"):
        DBOS.import_workflow(record)
    assert DBOS.get_workflow_status("attr-bad-record") is None
