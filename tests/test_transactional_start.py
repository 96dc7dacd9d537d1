"""A workflow started inside the caller's transaction starts only if that transaction commits."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_dbos import DBOS, DBOSNonExistentWorkflowError, SetWorkflowID
from testproject.shop.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


class Abort(Exception):
    pass


@DBOS.workflow()
def confirm_order(order_id: int) -> str:
    Order.objects.filter(pk=order_id).update(status="confirmed")
    return "confirmed"


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
