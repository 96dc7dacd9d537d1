"""A database router for projects that keep the system tables in their own database.

django-dbos itself always reads and writes its tables on `DBOS["DATABASE"]`, router or not. The
router makes the rest of Django agree: `migrate` creates the tables only there, and your own
queries (`WorkflowStatus.objects.filter(...)`) read them there. See docs/settings.md.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from . import conf

APP_LABEL = "django_dbos"


class DBOSRouter:
    """Send the django_dbos models' reads, writes and migrations to DBOS["DATABASE"]; have no
    opinion on any other model."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return conf.get("DATABASE") if model._meta.app_label == APP_LABEL else None

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return self.db_for_read(model, **hints)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        return db == conf.get("DATABASE") if app_label == APP_LABEL else None
