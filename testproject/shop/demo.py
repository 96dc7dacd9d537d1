"""The live demo: a checkout whose steps tick by on the page, a worker you can crash, and a
fan-out that drains through a rate-limited queue."""

from __future__ import annotations

import json
import os
import signal
import uuid

from django.conf import settings
from django.db.models import Count
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_POST

from django_dbos import DBOS, SetWorkflowID
from django_dbos.models import Executor, WorkflowStatus

from .models import LedgerEntry, Order
from .workflows import PAYMENT_URL, checkouts, demo_checkout, fanout, fanout_job, refund_request

DEMO_WORKER = "demo-worker"


@ensure_csrf_cookie
def page(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/demo.html")


@require_POST
def start_checkout(request: HttpRequest) -> JsonResponse:
    order = Order.objects.create()
    with SetWorkflowID(f"demo-checkout-{order.pk}"):
        handle = checkouts.enqueue(demo_checkout, order.pk)
    return JsonResponse({"workflow_id": handle.workflow_id, "order": order.pk})


@require_GET
def payment_url(request: HttpRequest, workflow_id: str) -> JsonResponse:
    """The payment URL the workflow publishes, once it has (waits up to 30 s)."""
    return JsonResponse({"payment_url": DBOS.get_event(workflow_id, PAYMENT_URL, 30)})


@require_GET
def progress(request: HttpRequest, workflow_id: str) -> StreamingHttpResponse:
    """The workflow's progress stream, as Server-Sent Events."""
    if DBOS.get_workflow_status(workflow_id) is None:
        raise Http404("No such checkout.")

    def events():
        for value in DBOS.read_stream(workflow_id, "progress"):
            yield f"data: {json.dumps(value)}\n\n"
        yield "event: end\ndata: null\n\n"

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


@require_GET
def checkout_status(request: HttpRequest, workflow_id: str) -> JsonResponse:
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        raise Http404("No such checkout.")
    order_id = status.input["args"][0]
    runs = (
        LedgerEntry.objects.filter(reference__startswith=f"demo-step:{order_id}:")
        .values("reference")
        .annotate(times=Count("id"))
    )
    return JsonResponse(
        {
            "status": status.status,
            "result": status.output,
            "recovery_attempts": status.recovery_attempts,
            "worker": "running" if _worker_pid() else "down",
            "step_runs": {row["reference"].split(":", 2)[2]: row["times"] for row in runs},
        }
    )


@require_POST
def crash_worker(request: HttpRequest) -> JsonResponse:
    """Kill the demo's worker with SIGKILL, as a power cut would (local demo only)."""
    if not settings.DEBUG:
        raise Http404("The crash button exists only in the local demo.")
    pid = _worker_pid()
    if pid is None:
        return JsonResponse({"killed": None, "detail": "The worker is not running."}, status=409)
    os.kill(pid, signal.SIGKILL)
    return JsonResponse({"killed": pid})


def _worker_pid() -> int | None:
    """The pid of the demo's worker if it runs on this machine and is alive."""
    worker = Executor.objects.filter(executor_id=DEMO_WORKER).first()
    if worker is None:
        return None
    try:
        os.kill(worker.pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return worker.pid


@require_POST
def start_fanout(request: HttpRequest) -> JsonResponse:
    batch = uuid.uuid4().hex[:8]
    for number in range(50):
        with SetWorkflowID(f"fanout-{batch}-{number:02d}"):
            fanout.enqueue(fanout_job, number)
    return JsonResponse({"batch": batch, "total": 50})


@require_GET
def fanout_progress(request: HttpRequest, batch: str) -> JsonResponse:
    counts = dict(
        WorkflowStatus.objects.filter(workflow_id__startswith=f"fanout-{batch}-")
        .values_list("status")
        .annotate(n=Count("workflow_id"))
    )
    return JsonResponse({"batch": batch, "counts": counts, "done": counts.get("SUCCESS", 0)})


@require_POST
def start_refund(request: HttpRequest) -> JsonResponse:
    """Start a refund request that waits in the admin's inbox for a person's decision."""
    order = Order.objects.create()
    with SetWorkflowID(f"demo-refund-{order.pk}"):
        handle = DBOS.start_workflow(refund_request, order.pk)
    return JsonResponse(
        {"workflow_id": handle.workflow_id, "inbox": "/admin/django_dbos/workflowstatus/inbox/"}
    )
