"""The Django admin: workflows (read-only, with their steps, events, messages and streams),
actions to cancel, resume and fork them, a dashboard, schedules, queue limits and alerts.

Schedules and queue limits are configuration: the admin edits their rows directly (with the
model's validators). Every action on a workflow goes through the public API and is logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.models import DELETION, LogEntry
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from . import queries
from .api import DBOS, SetWorkflowAttributes
from .errors import DBOSException
from .models import AlertState, AlertTransition, Schedule, WorkflowStatus
from .models import Queue as QueueModel
from .types import Status

# What the admin shows instead of a payload the retention policy dropped (PAYLOAD_DAYS).
PAYLOAD_EXPIRED = "payload expired"

# How many of the alert rules' latest transitions the dashboard shows.
ALERT_HISTORY = 20

STATUS_COLOURS: dict[str, str] = {
    Status.PENDING: "#2f6fb0",
    Status.ENQUEUED: "#6b6b6b",
    Status.SUCCESS: "#2e7d32",
    Status.ERROR: "#c62828",
    Status.CANCELLED: "#8d6e63",
    Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED: "#6a1b9a",
}


def status_badge(status: str) -> SafeString:
    return format_html(
        '<span class="dbos-status" style="background:{};color:#fff;padding:1px 6px;'
        'border-radius:3px;font-size:11px">{}</span>',
        STATUS_COLOURS.get(status, "#444"),
        status,
    )


def pretty_json(text: str | None) -> SafeString:
    if text is None:
        return format_html("<em>{}</em>", "none")
    try:
        shown = json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        shown = text
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', shown)


class DistinctValuesFilter(admin.SimpleListFilter):
    """Filter by the values a column actually holds (names, queues, versions).

    The values are cached for a minute: finding them scans the table, and they rarely change.
    """

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        def distinct_values() -> list[str]:
            return list(
                model_admin.get_queryset(request)
                .exclude(**{f"{self.field}__isnull": True})
                .order_by(self.field)
                .values_list(self.field, flat=True)
                .distinct()[:200]
            )

        # cast: with a default to compute, get_or_set() never returns None.
        values = cast(
            list[str], cache.get_or_set(f"django_dbos:admin:{self.field}", distinct_values, 60)
        )
        return [(value, value) for value in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{self.field: self.value()})
        return queryset


class NameFilter(DistinctValuesFilter):
    title = "workflow"
    parameter_name = "name"
    field = "name"


class QueueFilter(DistinctValuesFilter):
    title = "queue"
    parameter_name = "queue"
    field = "queue_name"


class VersionFilter(DistinctValuesFilter):
    title = "application version"
    parameter_name = "version"
    field = "application_version"


class ExecutorFilter(DistinctValuesFilter):
    title = "executor"
    parameter_name = "executor"
    field = "executor_id"


class PresenceFilter(admin.SimpleListFilter):
    """Whether a column is set: yes or no (a child has a parent, a fork its original)."""

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in ("yes", "no"):
            return queryset.filter(**{f"{self.field}__isnull": self.value() == "no"})
        return queryset


class HasParentFilter(PresenceFilter):
    title = "has a parent"
    parameter_name = "has_parent"
    field = "parent_workflow_id"


class IsForkFilter(PresenceFilter):
    title = "is a fork"
    parameter_name = "is_fork"
    field = "forked_from"


def attributes_searched(term: str) -> dict[str, Any] | None:
    """What a search for attributes asks for: a JSON object (`{"tenant": "acme"}`), or
    `key=value` (the value read as JSON when it is, else as text: `order=42`, `tenant=acme`);
    None when the term is neither."""
    if term.startswith("{"):
        try:
            found = json.loads(term)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None
    key, equals, value = term.partition("=")
    if not equals or not key or any(c.isspace() for c in key):
        return None
    try:
        return {key: json.loads(value)}
    except ValueError:
        return {key: value}


class SystemTablesAdmin(admin.ModelAdmin):
    """An admin whose rows live on DBOS["DATABASE"]: it reads and saves them there, whether or
    not the project routes the django_dbos models there (docs/settings.md)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).using(queries.database())

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.save(using=queries.database())


class WorkflowActionForm(ActionForm):
    start_step = forms.IntegerField(
        required=False, min_value=1, label="Fork from step", help_text="for the fork action"
    )


@admin.register(WorkflowStatus)
class WorkflowStatusAdmin(SystemTablesAdmin):
    # What fits a row of the list; a workflow's page (`fieldsets`) shows these and more.
    list_display = (
        "workflow_id",
        "name",
        "coloured_status",
        "queue_name",
        "executor_id",
        "application_version",
        "created_at",
        "duration",
        "attributes_summary",
    )
    list_filter = (
        "status",
        NameFilter,
        QueueFilter,
        VersionFilter,
        ExecutorFilter,
        HasParentFilter,
        IsForkFilter,
        ("created_at", admin.DateFieldListFilter),
    )
    search_fields = ("name",)
    ordering = ("-created_at",)
    list_per_page = 50
    show_full_result_count = False
    action_form = WorkflowActionForm
    actions = ["cancel_workflows", "resume_workflows", "fork_workflows", "delete_workflows"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "workflow_id",
                    "name",
                    "coloured_status",
                    "queue_name",
                    "executor_id",
                    "application_version",
                    "recovery_attempts",
                    ("created_at", "updated_at", "duration"),
                    "family",
                    "attributes_json",
                    "upgrade",
                )
            },
        ),
        ("Steps", {"fields": ("timeline",)}),
        ("Input, output and error", {"fields": ("input_json", "output_json", "error_json")}),
        ("Events, messages and streams", {"fields": ("events", "messages", "streams")}),
    )

    # Read-only: the engine writes workflows; people act on them through the actions.

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """A workflow id finds that workflow (an index lookup); `key=value` or a JSON object
        finds the workflows whose attributes contain it; other text searches names."""
        term = search_term.strip()
        if term and queryset.filter(workflow_id=term).exists():
            return queryset.filter(workflow_id=term), False
        attributes = attributes_searched(term)
        if attributes is not None:
            try:
                # The check SetWorkflowAttributes makes of what it records.
                checked = SetWorkflowAttributes(attributes).attributes or {}
            except DBOSException as exc:
                messages.error(request, str(exc))
                return queryset.none(), False
            return queries.with_attributes(queryset, checked), False
        return super().get_search_results(request, queryset, search_term)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field for _, options in self.fieldsets for field in _flatten(options["fields"])]

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_dbos.cancel_workflowstatus")

    def has_resume_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_dbos.resume_workflowstatus")

    def has_fork_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("django_dbos.fork_workflowstatus")

    def has_delete_finished_permission(self, request: HttpRequest) -> bool:
        """Django's own delete permission of the model, which the admin's built-in delete
        (has_delete_permission, off: it would skip the checks) does not use here."""
        return request.user.has_perm("django_dbos.delete_workflowstatus")

    # Columns and fields

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj: WorkflowStatus) -> SafeString:
        if obj.status == Status.PENDING and obj.waiting:
            return format_html("{} {}", status_badge(obj.status), obj.waiting)
        if obj.payload_expired_at is not None:
            return format_html("{} <em>{}</em>", status_badge(obj.status), PAYLOAD_EXPIRED)
        if obj.status == Status.ENQUEUED and obj.debounced and obj.dispatch_after is not None:
            return format_html(
                "{} debounced until {}",
                status_badge(obj.status),
                date_format(timezone.localtime(obj.dispatch_after), "DATETIME_FORMAT"),
            )
        return status_badge(obj.status)

    @admin.display(description="duration")
    def duration(self, obj: WorkflowStatus) -> str:
        if obj.status in (Status.PENDING, Status.ENQUEUED):
            return "running" if obj.status == Status.PENDING else "waiting"
        seconds = (obj.updated_at - (obj.started_at or obj.created_at)).total_seconds()
        return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"

    @admin.display(description="parent and children")
    def family(self, obj: WorkflowStatus) -> SafeString:
        links = []
        if obj.parent_workflow_id:
            links.append(("parent", obj.parent_workflow_id))
        if obj.forked_from:
            links.append(("forked from", obj.forked_from))
        children = queries.workflow_rows().filter(parent_workflow_id=obj.workflow_id)
        links += [("child", child) for child in children.values_list("workflow_id", flat=True)]
        if not links:
            return format_html("<em>{}</em>", "none")
        return format_html_join(
            " ", '{}: <a href="{}">{}</a>', ((kind, _link(wid), wid) for kind, wid in links)
        )

    @admin.display(description="steps")
    @admin.display(description="Upgrade")
    def upgrade(self, obj: WorkflowStatus) -> SafeString | str:
        """Where a newer version's code leaves this workflow's record (an upgrade kept it)."""
        block = queries.upgrade_block(obj)
        if block is None:
            return "-"
        if block.function_id is None:
            return format_html("Cannot continue on version {}: {}", block.version, block.reason)
        return format_html(
            "Cannot continue on version {}: operation {} is <code>{}</code> in the record, but "
            "that code calls <code>{}</code> there. Keep the old path with "
            "<code>DBOS.patch()</code>, or let it finish on a worker of its own version.",
            block.version,
            block.function_id,
            block.expected,
            block.found,
        )

    def timeline(self, obj: WorkflowStatus) -> SafeString:
        # The stored text, not deserialized values: a page must show whatever was recorded.
        steps = list(obj.operations.order_by("function_id"))
        if not steps:
            return format_html("<em>{}</em>", "no recorded steps")
        start = min(step.started_at for step in steps)
        end = max(step.completed_at for step in steps)
        span = max((end - start).total_seconds(), 1e-6)
        rows = []
        for step in steps:
            left = (step.started_at - start).total_seconds() / span * 100
            width = max((step.completed_at - step.started_at).total_seconds() / span * 100, 0.5)
            colour = "#c62828" if step.error is not None else "#417690"
            took = (step.completed_at - step.started_at).total_seconds() * 1000
            outcome = _error_summary(step.error) if step.error is not None else step.output
            if obj.payload_expired_at is not None and step.error is None:
                outcome = PAYLOAD_EXPIRED
            rows.append(
                (
                    step.function_id,
                    step.function_name,
                    f"{left:.2f}",
                    f"{width:.2f}",
                    colour,
                    f"{took:.1f}",
                    outcome,
                )
            )
        return format_html(
            '<table class="dbos-timeline" style="min-width:52rem">{}</table>',
            format_html_join(
                "",
                '<tr class="dbos-step"><td>{}</td><td>{}</td>'
                '<td style="width:22rem"><div style="position:relative;height:12px;'
                'background:#eee"><div style="position:absolute;left:{}%;width:{}%;'
                'height:12px;background:{}"></div></div></td>'
                '<td style="white-space:nowrap">{} ms</td>'
                "<td><code>{}</code></td></tr>",
                rows,
            ),
        )

    @admin.display(description="attributes")
    def attributes_json(self, obj: WorkflowStatus) -> SafeString:
        return pretty_json(None if obj.attributes is None else json.dumps(obj.attributes))

    @admin.display(description="attributes")
    def attributes_summary(self, obj: WorkflowStatus) -> str:
        if obj.attributes is None:
            return "-"
        # By key, as on the workflow's page: PostgreSQL's jsonb keeps no order.
        text = json.dumps(obj.attributes, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= 60 else text[:59] + "…"

    @admin.display(description="input")
    def input_json(self, obj: WorkflowStatus) -> SafeString:
        return _expired(obj) or pretty_json(obj.inputs)

    @admin.display(description="output")
    def output_json(self, obj: WorkflowStatus) -> SafeString:
        return _expired(obj) or pretty_json(obj.output)

    @admin.display(description="error")
    def error_json(self, obj: WorkflowStatus) -> SafeString:
        if obj.error is not None and obj.payload_expired_at is not None:
            return format_html("{} <em>({})</em>", _error_summary(obj.error), PAYLOAD_EXPIRED)
        return pretty_json(obj.error)

    @admin.display(description="events")
    def events(self, obj: WorkflowStatus) -> SafeString:
        return _table(
            ("key", "value"), obj.events.values_list("key", "value").order_by("key"), "no events"
        )

    @admin.display(description="messages")
    def messages(self, obj: WorkflowStatus) -> SafeString:
        rows = obj.notifications.order_by("id").values_list(
            "topic", "message", "created_at", "consumed_at"
        )
        return _table(("topic", "message", "sent", "consumed"), rows, "no messages")

    @admin.display(description="streams")
    def streams(self, obj: WorkflowStatus) -> SafeString:
        rows = obj.stream_entries.order_by("key", "position").values_list(
            "key", "position", "value", "closed"
        )
        return _table(("stream", "position", "value", "closed"), rows, "no streams")

    # Actions

    @admin.action(description="Cancel the selected workflows", permissions=["cancel"])
    def cancel_workflows(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "Cancelled", lambda wf: DBOS.cancel_workflow(wf.workflow_id))

    @admin.action(description="Resume the selected workflows", permissions=["resume"])
    def resume_workflows(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._act(request, queryset, "Resumed", lambda wf: DBOS.resume_workflow(wf.workflow_id))

    @admin.action(description="Fork the selected workflows from a step", permissions=["fork"])
    def fork_workflows(self, request: HttpRequest, queryset: QuerySet) -> None:
        step = request.POST.get("start_step") or "1"
        if not step.isdigit() or int(step) < 1:
            self.message_user(request, "Give the step to fork from (1 or more).", messages.ERROR)
            return

        def fork(workflow: WorkflowStatus) -> str:
            new = DBOS.fork_workflow(workflow.workflow_id, int(step))
            return f"as {new.workflow_id} from step {step}"

        self._act(request, queryset, "Forked", fork)

    @admin.action(
        description="Delete the selected finished workflows", permissions=["delete_finished"]
    )
    def delete_workflows(self, request: HttpRequest, queryset: QuerySet) -> None:
        def delete(workflow: WorkflowStatus) -> str:
            DBOS.delete_workflow(workflow.workflow_id)
            return f"Deleted workflow {workflow.workflow_id}"

        _act_on_each(self, request, queryset, delete, "Deleted {} workflow(s).", deletes=True)

    def _act(self, request: HttpRequest, queryset: QuerySet, verb: str, act: Any) -> None:
        def logged(workflow: WorkflowStatus) -> str:
            detail = act(workflow)
            suffix = f" {detail}" if isinstance(detail, str) else ""
            return f"{verb} workflow {workflow.workflow_id}{suffix}"

        _act_on_each(self, request, queryset, logged, f"{verb} {{}} workflow(s).")

    # The dashboard

    def get_urls(self) -> list[Any]:
        dashboard_view = self.admin_site.admin_view(self.dashboard_view)
        return [
            path("dashboard/", dashboard_view, name="django_dbos_dashboard"),
            path(
                "versions/",
                self.admin_site.admin_view(self.versions_view),
                name="django_dbos_versions",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        minutes = queries.last_hour()
        peak = max([minute.finished for minute in minutes] + [1])
        context = {
            **self.admin_site.each_context(request),
            "title": "DBOS dashboard",
            "opts": self.model._meta,
            "counts": queries.counts_by_status(),
            "colours": {status: STATUS_COLOURS[status] for status in Status.values},
            "queues": DBOS.list_queues(),
            "minutes": [
                {
                    "at": minute.at,
                    "finished": minute.finished,
                    "failed": minute.failed,
                    "height": round(minute.finished / peak * 100),
                    "failed_height": round(minute.failed / peak * 100),
                }
                for minute in minutes
            ],
            "hour_total": sum(minute.finished for minute in minutes),
            "hour_failed": sum(minute.failed for minute in minutes),
            "executors": queries.executors(),
            "firing_alerts": queries.firing_alerts(),
            "alert_history": queries.alert_history(ALERT_HISTORY),
            "stranded": queries.stranded_counts(),
            "now": timezone.now(),
        }
        return TemplateResponse(request, "admin/django_dbos/dashboard.html", context)

    def versions_view(self, request: HttpRequest) -> HttpResponse:
        """Every application version: its live executors, its in-flight and stranded work."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        context = {
            **self.admin_site.each_context(request),
            "title": "Application versions",
            "opts": self.model._meta,
            "versions": queries.versions(),
            "running": queries.running_version(),
        }
        return TemplateResponse(request, "admin/django_dbos/versions.html", context)


def _expired(obj: WorkflowStatus) -> SafeString | None:
    """What a payload field shows once the retention policy dropped the payload."""
    if obj.payload_expired_at is None:
        return None
    return format_html(
        "<em>{} on {}</em>",
        PAYLOAD_EXPIRED,
        date_format(timezone.localtime(obj.payload_expired_at), "DATETIME_FORMAT"),
    )


def _error_summary(error: str) -> str:
    """The class and message of a recorded error (the class alone once its payload expired)."""
    try:
        record = json.loads(error)
        kind = record["type"].rsplit(":", 1)[-1]
        return f"{kind}: {record['message']}" if record["message"] else kind
    except (ValueError, KeyError, TypeError, AttributeError):
        return error


def _flatten(fields: Sequence[str | Sequence[str]]) -> list[str]:
    flat: list[str] = []
    for field in fields:
        flat.extend([field] if isinstance(field, str) else field)
    return flat


def _link(workflow_id: str) -> str:
    return reverse("admin:django_dbos_workflowstatus_change", args=[workflow_id])


def _table(headers: tuple[str, ...], rows: Any, empty: str) -> SafeString:
    rows = list(rows)
    if not rows:
        return format_html("<em>{}</em>", empty)
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


class ScheduleForm(forms.ModelForm):
    """The workflow is picked from those registered, so a typo cannot make a dead schedule."""

    workflow_name = forms.ChoiceField(choices=())

    class Meta:
        model = Schedule
        fields = (
            "name",
            "workflow_name",
            "cron",
            "timezone",
            "status",
            "context",
            "queue_name",
            "automatic_backfill",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = queries.workflow_names()
        # cast: self.fields holds a copy of the ChoiceField declared above, typed as a Field.
        cast(forms.ChoiceField, self.fields["workflow_name"]).choices = [
            (name, name) for name in names
        ]

    def clean_name(self) -> str:
        """Django's own uniqueness check reads the database the router picks, which without a
        router is "default": look where the schedules are."""
        name: str = self.cleaned_data["name"]
        taken = queries.schedule_rows().filter(name=name)
        if taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"There is already a schedule named {name!r}.")
        return name

    def clean_queue_name(self) -> str | None:
        queue_name = self.cleaned_data.get("queue_name") or None
        if queue_name is not None and queue_name not in queries.schedule_queue_names():
            raise forms.ValidationError(f"There is no queue {queue_name!r}.")
        return queue_name


@admin.register(Schedule)
class ScheduleAdmin(SystemTablesAdmin):
    form = ScheduleForm
    list_display = (
        "name",
        "workflow_name",
        "cron",
        "timezone",
        "status",
        "queue_name",
        "automatic_backfill",
        "last_fired_at",
    )
    list_filter = ("status", "workflow_name")
    search_fields = ("name", "workflow_name")
    readonly_fields = ("last_fired_at", "created_at", "updated_at")
    actions = ["pause_schedules", "resume_schedules", "run_now", "backfill_missed_ticks"]

    @admin.action(description="Pause the selected schedules", permissions=["change"])
    def pause_schedules(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, DBOS.pause_schedule, "Paused")

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume_schedules(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, DBOS.resume_schedule, "Resumed")

    @admin.action(description="Run the selected schedules now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: Any) -> None:
        self._each(request, queryset, DBOS.trigger_schedule, "Started a run of")

    @admin.action(description="Backfill ticks missed since the last run", permissions=["change"])
    def backfill_missed_ticks(self, request: HttpRequest, queryset: Any) -> None:
        now = timezone.now()

        def backfill(schedule: Schedule) -> str:
            start = schedule.last_fired_at or schedule.created_at
            return f"Backfilled {len(DBOS.backfill_schedule(schedule.name, start, now))} ticks."

        _act_on_each(self, request, queryset, backfill, "Backfilled {} schedule(s).")

    def _each(self, request: HttpRequest, queryset: Any, operation: Any, verb: str) -> None:
        def logged(schedule: Schedule) -> str:
            operation(schedule.name)
            return f"{verb} the schedule."

        _act_on_each(self, request, queryset, logged, f"{verb} {{}} schedule(s).")


def _act_on_each(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: Any,
    act: Callable[[Any], str],
    summary: str,
    *,
    deletes: bool = False,
) -> None:
    """Run an admin action's `act` on each selected object and log what it returns (a deletion
    each, for an action that `deletes`); a refusal (a DBOSException, such as an unknown workflow,
    a bad cron, or a workflow still running) is shown for its object, and the others go on.
    `summary` gets the count of those done."""
    done = []
    for obj in queryset:
        try:
            message = act(obj)
        except DBOSException as exc:
            model_admin.message_user(request, f"{obj}: {exc}", messages.ERROR)
            continue
        if not deletes:
            model_admin.log_change(request, obj, message)
        done.append(obj)
    if deletes and done:
        # What ModelAdmin.log_deletions does, given the objects: their rows are gone already.
        # The admin's user is a saved one, with a pk.
        user_id = cast(int, request.user.pk)
        LogEntry.objects.log_actions(user_id=user_id, queryset=done, action_flag=DELETION)
    if done:
        model_admin.message_user(request, summary.format(len(done)), messages.SUCCESS)


@admin.register(QueueModel)
class QueueAdmin(SystemTablesAdmin):
    """Queue limits: written from code when a worker starts; an edit here reaches every worker
    within seconds."""

    list_display = ("name", *queries.QUEUE_LIMITS, "updated_at")
    # The flags stay as declared in code: a queue's enqueued workflows were checked against them.
    readonly_fields = ("name", "priority_enabled", "partition_queue", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)


class ReadOnlyAdmin(SystemTablesAdmin):
    """Rows the workers write and people only read."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AlertState)
class AlertStateAdmin(ReadOnlyAdmin):
    """Where each alert rule of DBOS["ALERTS"] stands (docs/monitoring.md#alerts)."""

    list_display = ("name", "kind", "firing", "since", "message", "checked_at")
    list_filter = ("firing", "kind")


@admin.register(AlertTransition)
class AlertTransitionAdmin(ReadOnlyAdmin):
    """When each alert rule began and stopped firing, and whether that was delivered."""

    list_display = ("at", "name", "kind", "change", "message", "delivered_at")
    list_filter = ("change", "kind", "name")
    date_hierarchy = "at"
