"""A read-only view of workflows and their steps in the Django admin."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import OperationOutput, WorkflowStatus


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
