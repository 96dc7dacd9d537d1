"""The demo pages: the ten-step journal, and the checkout of the DBOS docs with its webhook."""

import json
import tempfile
from pathlib import Path

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from django_dbos import DBOS, DBOSNonExistentWorkflowError, SetWorkflowID

from .models import Order
from .workflows import PAYMENT_STATUS, PAYMENT_URL, checkout, quote, ten_step_journal

JOURNALS = Path(tempfile.gettempdir()) / "django-dbos-demo"


@require_http_methods(["GET", "POST"])
def journal(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        JOURNALS.mkdir(exist_ok=True)
        path = tempfile.mktemp(dir=JOURNALS, suffix=".txt")
        handle = DBOS.start_workflow(ten_step_journal, path, 1.0)
        return redirect(f"/journal/?workflow={handle.workflow_id}")
    workflow_id = request.GET.get("workflow")
    status = DBOS.get_workflow_status(workflow_id) if workflow_id else None
    steps = DBOS.list_workflow_steps(workflow_id) if status else []
    return render(request, "shop/journal.html", {"status": status, "steps": steps})


@require_POST
def start_checkout(request: HttpRequest) -> HttpResponse:
    """Start the checkout workflow and send the customer to the payment URL it publishes."""
    order = Order.objects.create()
    with SetWorkflowID(f"checkout-{order.pk}"):
        handle = DBOS.start_workflow(checkout, order.pk)
    payment_url = DBOS.get_event(handle.workflow_id, PAYMENT_URL, timeout_seconds=30)
    if payment_url is None:
        return HttpResponse("The payment service did not answer in time.", status=504)
    return redirect(payment_url)


def payment_page(request: HttpRequest, workflow_id: str) -> HttpResponse:
    """The payment provider's page (simulated): pay, or decline."""
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        raise Http404("No such checkout.")
    return render(request, "shop/pay.html", {"status": status})


@csrf_exempt
@require_POST
def payment_webhook(request: HttpRequest) -> JsonResponse:
    """The payment provider calls this when a payment finishes; forward it to the workflow."""
    try:
        notification = json.loads(request.body)
        workflow_id, payment_status = notification["workflow_id"], notification["status"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "Expected JSON with workflow_id and status."}, status=400)
    try:
        DBOS.send(workflow_id, payment_status, PAYMENT_STATUS)
    except DBOSNonExistentWorkflowError:
        return JsonResponse({"error": f"No checkout {workflow_id!r}."}, status=404)
    return JsonResponse({"received": True})


def order_detail(request: HttpRequest, order_id: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=order_id)
    status = DBOS.get_workflow_status(f"checkout-{order.pk}")
    return JsonResponse(
        {
            "order": order.pk,
            "order_status": order.status,
            "workflow_status": status.status if status else None,
            "result": status.output if status else None,
        }
    )


async def price_quote(request: HttpRequest, amount: int) -> HttpResponse:
    """An async view: start a workflow and wait for it on the event loop (under ASGI, no thread
    is held while it runs)."""
    handle = await DBOS.start_workflow_async(quote, amount)
    return JsonResponse({"workflow_id": handle.workflow_id, **await handle.get_result_async()})
