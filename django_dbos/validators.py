"""Validators shared by the models (admin forms), the API and the system checks."""

from __future__ import annotations

import zoneinfo

from croniter import croniter
from django.core.exceptions import ValidationError

# The largest value an integer column of the system tables holds (PostgreSQL's integer).
MAX_INTEGER = 2**31 - 1


def cron_error(expression: object) -> str | None:
    """Say what is wrong with a cron expression, or None when it is valid.

    Five fields (minute hour day month weekday) or six, the first then being seconds.
    """
    if not isinstance(expression, str) or not expression.strip():
        return "A cron expression must be a non-empty string."
    fields = expression.split()
    if len(fields) not in (5, 6):
        return (
            f"{expression!r} has {len(fields)} fields; a cron expression has 5 "
            "(minute hour day month weekday) or 6 (with seconds first)."
        )
    if not croniter.is_valid(expression, second_at_beginning=len(fields) == 6):
        return f"{expression!r} is not a valid cron expression."
    return None


def validate_cron(expression: str) -> None:
    error = cron_error(expression)
    if error is not None:
        raise ValidationError(error, code="invalid_cron")


def validate_timezone(name: str) -> None:
    if not name:
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            f"{name!r} is not a known time zone (use an IANA name such as Europe/Paris).",
            code="invalid_timezone",
        ) from exc


# A tick's workflow id is "sched-<name>-<tick time>", and ids are at most 255 characters.
MAX_SCHEDULE_NAME_LENGTH = 200


def validate_schedule_name(name: str) -> None:
    if len(name) > MAX_SCHEDULE_NAME_LENGTH or "\x00" in name:
        raise ValidationError(
            f"A schedule name is at most {MAX_SCHEDULE_NAME_LENGTH} characters, without NUL.",
            code="invalid_schedule_name",
        )


def validate_positive(value: float) -> None:
    if value is not None and value <= 0:
        raise ValidationError("Use a number above zero (or leave it empty for no limit).")
