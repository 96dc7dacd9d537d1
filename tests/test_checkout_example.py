"""The checkout of the DBOS docs, driven through Django's test client like a browser would."""

from __future__ import annotations

import pytest

from django_dbos import DBOS
from testproject.shop.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def test_paying_through_the_webhook_fulfils_the_order(client):
    response = client.post("/checkout/")

    assert response.status_code == 302
    order = Order.objects.get()
    workflow_id = f"checkout-{order.pk}"
    assert response["Location"] == f"/pay/{workflow_id}/"  # the URL published with set_event
    assert client.get(response["Location"]).status_code == 200

    webhook = client.post(
        "/webhooks/payment/",
        {"workflow_id": workflow_id, "status": "paid"},
        content_type="application/json",
    )

    assert webhook.json() == {"received": True}
    assert DBOS.retrieve_workflow(workflow_id).get_result(timeout=10) == "fulfilled"
    assert client.get(f"/orders/{order.pk}/").json() == {
        "order": order.pk,
        "order_status": "paid",
        "workflow_status": "SUCCESS",
        "result": "fulfilled",
    }


def test_a_declined_payment_cancels_the_order(client):
    client.post("/checkout/")
    order = Order.objects.get()

    client.post(
        "/webhooks/payment/",
        {"workflow_id": f"checkout-{order.pk}", "status": "declined"},
        content_type="application/json",
    )

    assert DBOS.retrieve_workflow(f"checkout-{order.pk}").get_result(timeout=10) == "cancelled"
    order.refresh_from_db()
    assert order.status == "cancelled"


def test_the_webhook_refuses_unknown_checkouts_and_bad_bodies(client):
    unknown = client.post(
        "/webhooks/payment/",
        {"workflow_id": "checkout-404", "status": "paid"},
        content_type="application/json",
    )
    bad = client.post("/webhooks/payment/", "not json", content_type="application/json")

    assert unknown.status_code == 404
    assert "checkout-404" in unknown.json()["error"]
    assert bad.status_code == 400
