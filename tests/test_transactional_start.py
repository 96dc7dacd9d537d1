"""A workflow started inside the caller's transaction starts only if that transaction commits."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSNonExistentWorkflowError,
    Queue,
    SetWorkflowID,
)
from testproject.shop.models import Order

from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)


class Abort(Exception):
    pass


outbox_queue = Queue("transactional-start")


@DBOS.workflow(name="transactional.confirm_order")
def confirm_order(order_id: int) -> str:
    Order.objects.filter(pk=order_id).update(status="confirmed")
    return "confirmed"


@DBOS.workflow()
def announce_and_stream() -> str:
    DBOS.set_event("state", "started")
    DBOS.write_stream("lines", "one")
    DBOS.close_stream("lines")
    return "done"


def test_a_rollback_leaves_no_workflow():
    with pytest.raises(Abort), transaction.atomic():
        order = Order.objects.create()
        with SetWorkflowID("rolled-back"):
            DBOS.start_workflow(confirm_order, order.pk)
        raise Abort

    assert DBOS.get_workflow_status("rolled-back") is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("rolled-back")
    assert not Order.objects.exists()


def test_a_commit_starts_the_workflow_once():
    with transaction.atomic():
        order = Order.objects.create()
        with SetWorkflowID("committed"):
            handle = DBOS.start_workflow(confirm_order, order.pk)
        assert Order.objects.get(pk=order.pk).status == "new"  # not before the commit

    assert handle.get_result(timeout=10) == "confirmed"
    assert Order.objects.get(pk=order.pk).status == "confirmed"
    assert DBOS.get_workflow_status("committed").recovery_attempts == 0


def refused(wait) -> str:
    """The message of the DBOSException that `wait()` raises (at once, not after a timeout)."""
    with pytest.raises(DBOSException) as raised:
        wait()
    return str(raised.value)


def test_waiting_inside_the_starting_transaction_fails_at_once_and_says_why():
    with transaction.atomic():
        with SetWorkflowID("waits-in-its-transaction"):
            handle = DBOS.start_workflow(announce_and_stream)
        message = refused(lambda: handle.get_result(timeout=5))
        assert message.startswith(
            "get_result() on workflow 'waits-in-its-transaction' inside the transaction that "
            "started it would wait for nothing: the workflow begins only when this transaction "
            "commits."
        )
        assert "transaction.non_atomic_requests" in message
        assert "get_event()" in refused(
            lambda: DBOS.get_event(handle.workflow_id, "state", timeout_seconds=5)
        )
        assert "read_stream()" in refused(lambda: DBOS.read_stream(handle.workflow_id, "lines"))
        assert "wait_first()" in refused(lambda: DBOS.wait_first([handle]))

    assert handle.get_result(timeout=10) == "done"  # after the commit, it ran
    assert DBOS.get_event(handle.workflow_id, "state", timeout_seconds=5) == "started"
    assert list(DBOS.read_stream(handle.workflow_id, "lines")) == ["one"]


def test_waiting_inside_the_transaction_that_enqueued_fails_at_once():
    client = DBOSClient()
    with transaction.atomic():
        order = Order.objects.create()
        queued = outbox_queue.enqueue(confirm_order, order.pk)
        from_client = client.enqueue(
            {"queue_name": "transactional-start", "workflow_name": "transactional.confirm_order"},
            order.pk,
        )
        assert "get_result()" in refused(lambda: queued.get_result(timeout=5))
        assert "get_result()" in refused(lambda: from_client.get_result(timeout=5))

    with running_worker():
        assert queued.get_result(timeout=10) == "confirmed"
        assert from_client.get_result(timeout=10) == "confirmed"


def test_other_workflows_can_be_awaited_inside_a_transaction():
    earlier = DBOS.start_workflow(announce_and_stream)
    earlier.get_result(timeout=10)
    with transaction.atomic():
        DBOS.start_workflow(announce_and_stream)
        # A new handle reads the database (the first one holds the finished future).
        assert DBOS.retrieve_workflow(earlier.workflow_id).get_result(timeout=5) == "done"


def test_a_start_in_a_rolled_back_savepoint_is_simply_not_there():
    with transaction.atomic():
        with pytest.raises(Abort), transaction.atomic():
            with SetWorkflowID("savepoint-rolled-back"):
                handle = DBOS.start_workflow(announce_and_stream)
            raise Abort
        with pytest.raises(DBOSNonExistentWorkflowError):
            handle.get_result(timeout=5)
