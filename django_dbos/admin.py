"""The Django admin: workflows and their steps (read-only), schedules and queue limits.

Schedules and queue limits are configuration: the admin edits their rows directly (with the
model's validators), and its actions call the public API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from .api import DBOS
from .engine import registry
from .models import OperationOutput, Schedule, WorkflowStatus
from .models import Queue as QueueModel


class ReadOnlyMixin:
    """The system tables are written by the engine only; the admin shows them."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OperationOutputInline(ReadOnlyMixin, admin.TabularInline):
    model = OperationOutput
    fields = (
        "function_id",
        "function_name",
        "output",
        "error",
        "child_workflow_id",
        "started_at",
        "completed_at",
    )
    readonly_fields = fields
    extra = 0
    show_change_link = False


@admin.register(WorkflowStatus)
class WorkflowStatusAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "workflow_id",
        "name",
        "status",
        "queue_name",
        "executor_id",
        "application_version",
        "created_at",
        "updated_at",
    )
    list_filter = ("status", "application_version")
    search_fields = ("workflow_id", "name")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    inlines = [OperationOutputInline]
    show_full_result_count = False


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
        names = sorted(workflow.name for workflow in registry.workflows())
        self.fields["workflow_name"].choices = [(name, name) for name in names]


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
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
        for schedule in queryset:
            start = schedule.last_fired_at or schedule.created_at
            handles = DBOS.backfill_schedule(schedule.name, start, now)
            self.log_change(request, schedule, f"Backfilled {len(handles)} ticks.")
            self.message_user(request, f"{schedule.name}: {len(handles)} ticks enqueued.")

    def _each(self, request: HttpRequest, queryset: Any, operation: Any, verb: str) -> None:
        for schedule in queryset:
            operation(schedule.name)
            self.log_change(request, schedule, f"{verb} the schedule.")
        self.message_user(request, f"{verb} {queryset.count()} schedule(s).")


@admin.register(QueueModel)
class QueueAdmin(admin.ModelAdmin):
    """Queue limits: written from code when a worker starts; an edit here reaches every worker
    within seconds."""

    list_display = (
        "name",
        "concurrency",
        "worker_concurrency",
        "rate_limit",
        "rate_period_seconds",
        "priority_enabled",
        "partition_queue",
        "updated_at",
    )
    readonly_fields = ("name", "priority_enabled", "partition_queue", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)
