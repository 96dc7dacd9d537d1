"""Transactions: ORM writes and their checkpoint commit together, exactly once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from django_dbos import DBOS, SetWorkflowID, WorkflowStatusString
from django_dbos.engine import serialization, system_db
from django_dbos.models import WorkflowStatus
from testproject.shop.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)

runs: Counter[str] = Counter()
inside_transaction = threading.Event()
finish_transaction = threading.Event()


class Refused(Exception):
    pass


@DBOS.transaction()
def credit(reference: str, amount: int) -> int:
    runs[reference] += 1
    return LedgerEntry.objects.create(reference=reference, amount=amount).pk


@DBOS.transaction()
def credit_then_fail(reference: str) -> None:
    LedgerEntry.objects.create(reference=reference, amount=1)
    raise Refused(f"{reference} refused")


@DBOS.transaction(isolation_level="SERIALIZABLE")
def serializable_total() -> int:
    return sum(LedgerEntry.objects.values_list("amount", flat=True))


@DBOS.transaction()
def credit_slowly(reference: str) -> int:
    entry = LedgerEntry.objects.create(reference=reference, amount=7)
    inside_transaction.set()
    finish_transaction.wait(10)
    return entry.pk


@DBOS.workflow()
def pay(reference: str) -> int:
    return credit(reference, 5)


@DBOS.workflow()
def pay_and_fail(reference: str) -> None:
    credit_then_fail(reference)


@DBOS.workflow()
def pay_slowly(reference: str) -> int:
    return credit_slowly(reference)


@DBOS.workflow()
def total() -> int:
    return serializable_total()


@pytest.fixture(autouse=True)
def _reset():
    runs.clear()
    inside_transaction.clear()
    finish_transaction.clear()
    yield
    finish_transaction.set()


def test_a_transaction_commits_its_rows_and_checkpoint_once():
    with SetWorkflowID("pay-1"):
        first = pay("order-1")
    with SetWorkflowID("pay-1"):
        again = pay("order-1")

    assert first == again
    assert LedgerEntry.objects.filter(reference="order-1").count() == 1
    assert runs["order-1"] == 1
    [step] = DBOS.list_workflow_steps("pay-1")
    assert step.function_name == credit.__dbos__.name
    assert step.output == first


def test_a_failing_transaction_rolls_back_its_rows_and_records_the_error():
    with SetWorkflowID("pay-2"), pytest.raises(Refused, match="order-2 refused"):
        pay_and_fail("order-2")

    assert not LedgerEntry.objects.filter(reference="order-2").exists()
    [step] = DBOS.list_workflow_steps("pay-2")
    assert isinstance(step.error, Refused)
    assert DBOS.get_workflow_status("pay-2").status == WorkflowStatusString.ERROR


def test_outside_a_workflow_a_transaction_is_an_atomic_block():
    with pytest.raises(Refused):
        credit_then_fail("bare")
    assert not LedgerEntry.objects.filter(reference="bare").exists()
    credit("bare", 3)
    assert LedgerEntry.objects.get(reference="bare").amount == 3


def test_isolation_level_is_applied():
    credit("seed", 4)
    with SetWorkflowID("total"):
        assert total() == 4


@pytest.mark.postgres
def test_a_transaction_whose_workflow_was_taken_over_writes_nothing():
    handle = DBOS.start_workflow(pay_slowly, "order-3")
    assert inside_transaction.wait(10)
    # While the transaction is open, recovery hands the workflow to another executor.
    WorkflowStatus.objects.filter(workflow_id=handle.workflow_id).update(executor_id="other")
    finish_transaction.set()

    with pytest.raises(TimeoutError):
        handle.get_result(timeout=0.5)  # it now waits for the other executor's outcome
    assert not LedgerEntry.objects.filter(reference="order-3").exists()
    assert DBOS.list_workflow_steps(handle.workflow_id) == []
    system_db.finish_workflow(handle.workflow_id, "other", "SUCCESS", serialization.dumps(0), None)
    assert handle.get_result(timeout=5) == 0  # the other executor's outcome is adopted
