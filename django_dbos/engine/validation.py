"""Checks of user input shared by the engine: ids, durations, names."""

from __future__ import annotations

import json
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


# How deep workflow attributes may nest: far beyond any use, and well within what Python's JSON
# encoder and PostgreSQL's jsonb take.
MAX_ATTRIBUTE_NESTING = 100


def attributes(value: Any, what: str = "Workflow attributes") -> dict[str, Any]:
    """Return a copy of workflow attributes: a dict with str keys and JSON values (None, bool,
    int, finite float, str, list, dict), that both databases store and compare alike."""
    if not isinstance(value, dict):
        raise DBOSInvalidArgumentError(
            f'{what} must be a dict such as {{"tenant": "acme"}}, not {type(value).__name__}.'
        )
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list) and depth > MAX_ATTRIBUTE_NESTING:
            raise DBOSInvalidArgumentError(
                f"{what} nest deeper than {MAX_ATTRIBUTE_NESTING} levels."
            )
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise DBOSInvalidArgumentError(
                        f"{what} must have string keys, not {key!r}: JSON objects have no others."
                    )
                _json_text(key, what)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _json_text(item, what)
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                raise DBOSInvalidArgumentError(
                    f"{what} cannot hold {item}: JSON has no such number."
                )
        elif item is not None and not isinstance(item, bool | int):
            raise DBOSInvalidArgumentError(
                f"{what} can hold only JSON values (None, bool, int, float, str, list, dict), "
                f"not {type(item).__name__} {item!r:.60}; convert it first (a date to its "
                "isoformat(), say)."
            )
    copy: dict[str, Any] = json.loads(json.dumps(value))
    return copy


def _json_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise DBOSInvalidArgumentError(f"{what} cannot hold a NUL character.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DBOSInvalidArgumentError(f"{what} hold text that is not valid Unicode.") from None
