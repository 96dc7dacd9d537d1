"""The admin's inbox: the workflows waiting in recv for a person, and the page to answer one.

A recv declared with `form=SomeForm` is answered with that Django form, and the workflow gets
its cleaned_data; any other recv is answered with a JSON value. An answer is sent once per wait
(an idempotency key), and logged as a change of the workflow (docs/inbox.md).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, PermissionsMixin
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from . import queries
from .api import DBOS
from .errors import DBOSException
from .types import MessageWaitInfo

SEND_MESSAGE = "django_dbos.send_message"
# How many of the people who may answer the inbox names; it counts the others.
NAMED_ANSWERERS = 5
# How many waits the inbox shows, the longest waiting first (?topic= and ?name= narrow them).
SHOWN_WAITS = 200


class JsonAnswerForm(forms.Form):
    """The answer to a recv that declared no form: any JSON value."""

    message = forms.JSONField(
        help_text='Any JSON value, such as "approved", 42 or {"amount": "12.50"}.',
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
    )


def extra_permission(form: type[forms.BaseForm] | None) -> str | None:
    """The permission a form class asks of whoever answers with it, besides send_message
    (`answer_permission = "app_label.codename"` on the class), or None."""
    permission = getattr(form, "answer_permission", None)
    return permission if isinstance(permission, str) and permission else None


def answerers(permission: str | None) -> str:
    """Who may answer, as Django's own permission rules say: active superusers, and active
    users given send_message (and the form's permission) themselves or through a group."""
    user_model = get_user_model()
    if not issubclass(user_model, PermissionsMixin):
        return f"users with the {SEND_MESSAGE} permission"
    users = user_model._default_manager.filter(is_active=True)
    for codename in filter(None, (SEND_MESSAGE, permission)):
        app_label, _, name = codename.partition(".")
        granted = Permission.objects.filter(content_type__app_label=app_label, codename=name)
        users = users.filter(
            Q(is_superuser=True)
            | Q(user_permissions__in=granted)
            | Q(groups__permissions__in=granted)
        )
    names = list(
        users.distinct()
        .order_by(user_model.USERNAME_FIELD)
        .values_list(user_model.USERNAME_FIELD, flat=True)[: NAMED_ANSWERERS + 1]
    )
    if len(names) > NAMED_ANSWERERS:
        more = users.distinct().count() - NAMED_ANSWERERS
        return f"{', '.join(map(str, names[:NAMED_ANSWERERS]))} and {more} more"
    return ", ".join(map(str, names)) or "nobody yet"


def inbox_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    """The waiting workflows, the longest waiting first (of a ?topic=, a workflow ?name=)."""
    if not model_admin.has_view_permission(request):
        return HttpResponse(status=403)
    may_answer = request.user.has_perm(SEND_MESSAGE)
    rows = []
    people: dict[str | None, str] = {}
    waits = queries.waiting_workflows(
        topic=request.GET.get("topic"), name=request.GET.get("name"), limit=SHOWN_WAITS + 1
    )
    for wait in waits[:SHOWN_WAITS]:
        try:
            permission = extra_permission(queries.answer_form(wait))
        except DBOSException:
            permission = None
        if permission not in people:
            people[permission] = answerers(permission)
        rows.append(
            {
                "wait": wait,
                "answerers": people[permission],
                "answer_url": _answer_url(wait) if may_answer else None,
            }
        )
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Inbox",
        "opts": model_admin.model._meta,
        "rows": rows,
        "more": len(waits) > SHOWN_WAITS,
    }
    return TemplateResponse(request, "admin/django_dbos/inbox.html", context)


def answer_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, workflow_id: str, function_id: int
) -> HttpResponse:
    """Answer one wait: its form (or a JSON value), validated, sent once, logged."""
    if not request.user.has_perm(SEND_MESSAGE):
        return HttpResponse(status=403)
    wait = queries.message_wait(workflow_id, function_id)
    if wait is None:
        return _already_answered(model_admin, request)
    try:
        form_class = queries.answer_form(wait)
    except DBOSException as exc:
        return _answer_page(model_admin, request, wait, None, problem=str(exc))
    permission = extra_permission(form_class)
    if permission is not None and not request.user.has_perm(permission):
        return HttpResponse(status=403)
    if request.method != "POST":
        return _answer_page(model_admin, request, wait, (form_class or JsonAnswerForm)())
    form = (form_class or JsonAnswerForm)(request.POST)
    if not form.is_valid():
        return _answer_page(model_admin, request, wait, form)
    message = form.cleaned_data if form_class is not None else form.cleaned_data["message"]
    try:
        sent = queries.answer(wait, message)
    except DBOSException as exc:  # a value it cannot serialize; the workflow just deleted
        form.add_error(None, str(exc))
        return _answer_page(model_admin, request, wait, form)
    if not sent:
        return _already_answered(model_admin, request)
    topic = f"topic {wait.topic!r}" if wait.topic else "no topic"
    workflow = queries.workflow_rows().get(workflow_id=wait.workflow_id)
    model_admin.log_change(request, workflow, f"Answered recv on {topic}")
    model_admin.message_user(
        request, f"Answered workflow {wait.workflow_id} on {topic}.", messages.SUCCESS
    )
    return HttpResponseRedirect(reverse("admin:django_dbos_inbox"))


def _answer_url(wait: MessageWaitInfo) -> str:
    return reverse("admin:django_dbos_answer", args=[wait.workflow_id, wait.function_id])


def _already_answered(model_admin: admin.ModelAdmin, request: HttpRequest) -> HttpResponse:
    model_admin.message_user(
        request,
        "This wait was already answered (or it timed out, or its workflow stopped): "
        "nothing was sent.",
        messages.WARNING,
    )
    return HttpResponseRedirect(reverse("admin:django_dbos_inbox"))


def _answer_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    wait: MessageWaitInfo,
    form: forms.BaseForm | None,
    *,
    problem: str | None = None,
) -> HttpResponse:
    status = DBOS.get_workflow_status(wait.workflow_id)
    shown_input = None if status is None else status.input
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"Answer workflow {wait.workflow_id}",
        "opts": model_admin.model._meta,
        "wait": wait,
        "input": json.dumps(shown_input, indent=2, sort_keys=True, default=repr),
        "form": form,
        "problem": problem,
    }
    return TemplateResponse(request, "admin/django_dbos/answer.html", context)
