"""Checks of user input shared by the engine: ids, durations, names."""

from __future__ import annotations

from typing import Any

from ..errors import DBOSInvalidArgumentError
from ..validators import MAX_INTEGER

MAX_ID_LENGTH = 255
# Longer durations are clamped to this (about 100 years): a wait that long never ends anyway,
# and a deadline must stay a representable time.
LONGEST_WAIT_SECONDS = 100 * 365 * 24 * 3600.0


def workflow_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DBOSInvalidArgumentError(f"A workflow id must be a non-empty string, not {value!r}.")
    if len(value) > MAX_ID_LENGTH:
        raise DBOSInvalidArgumentError(
            f"The workflow id {value[:40]!r}... is {len(value)} characters long; "
            f"the limit is {MAX_ID_LENGTH}."
        )
    if "\x00" in value:
        raise DBOSInvalidArgumentError("A workflow id cannot contain a NUL character.")
    return value


def duration(value: Any, name: str) -> float:
    """Return a duration in seconds, refusing what is not a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise DBOSInvalidArgumentError(f"{name} must be a number of seconds, not {value!r}.")
    if value < 0:
        raise DBOSInvalidArgumentError(f"{name} must not be negative (got {value}).")
    if value > LONGEST_WAIT_SECONDS:  # compared before float(): huge integers overflow it
        return LONGEST_WAIT_SECONDS
    return float(value)


def name(value: Any, what: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise DBOSInvalidArgumentError(
            f"The {what} must be a {'non-empty ' if not allow_empty else ''}string."
        )
    if len(value) > MAX_ID_LENGTH:
        raise DBOSInvalidArgumentError(f"The {what} is longer than {MAX_ID_LENGTH} characters.")
    if "\x00" in value:
        raise DBOSInvalidArgumentError(f"The {what} cannot contain a NUL character.")
    return value


def function_id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTEGER:
        raise DBOSInvalidArgumentError(
            f"{name} must be a step number from 1 to {MAX_INTEGER}, not {value!r}."
        )
    return value
