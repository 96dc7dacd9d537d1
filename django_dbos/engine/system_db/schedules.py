"""Schedule rows: cron schedules made at run time."""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Q

from ...models import Schedule
from .connection import alias, now, storable


def active_schedules() -> list[Schedule]:
    return list(Schedule.objects.using(alias()).filter(status=Schedule.State.ACTIVE))


def get_schedule(name: str) -> Schedule | None:
    if not storable(name):
        return None
    return Schedule.objects.using(alias()).filter(name=name).first()


def list_schedules(
    status: str | None = None, workflow_name: str | None = None, name_prefix: str | None = None
) -> list[Schedule]:
    rows = Schedule.objects.using(alias()).all()
    if status is not None:
        rows = rows.filter(status=status)
    if workflow_name is not None:
        rows = rows.filter(workflow_name=workflow_name)
    if name_prefix is not None:
        rows = rows.filter(name__startswith=name_prefix)
    return list(rows)


def create_schedule(**fields: Any) -> Schedule:
    """Validate (as the admin form does) and save a new schedule; ValidationError if invalid."""
    schedule = Schedule(**fields)
    schedule.full_clean()
    schedule.save(using=alias())
    return schedule


def update_schedule(name: str, **fields: Any) -> bool:
    rows = Schedule.objects.using(alias()).filter(name=name)
    return rows.update(**fields, updated_at=now()) == 1


def delete_schedule(name: str) -> bool:
    return Schedule.objects.using(alias()).filter(name=name).delete()[0] > 0


def schedule_fired(name: str, tick: datetime.datetime) -> None:
    """Remember the latest tick fired (never moving it back)."""
    Schedule.objects.using(alias()).filter(name=name).filter(
        Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=tick)
    ).update(last_fired_at=tick)
