"""The demo page: start a ten-step workflow and watch its steps being recorded."""

import tempfile
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from django_dbos import DBOS

from .workflows import ten_step_journal

JOURNALS = Path(tempfile.gettempdir()) / "django-dbos-demo"


@require_http_methods(["GET", "POST"])
def journal(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        JOURNALS.mkdir(exist_ok=True)
        path = tempfile.mktemp(dir=JOURNALS, suffix=".txt")
        handle = DBOS.start_workflow(ten_step_journal, path, 1.0)
        return redirect(f"/?workflow={handle.workflow_id}")
    workflow_id = request.GET.get("workflow")
    status = DBOS.get_workflow_status(workflow_id) if workflow_id else None
    steps = DBOS.list_workflow_steps(workflow_id) if status else []
    return render(request, "shop/journal.html", {"status": status, "steps": steps})
