"""Workflows by their attributes: jsonb containment (`@>`) on PostgreSQL, the same test in
Python on SQLite.

PostgreSQL answers `attributes @> pattern` from the GIN index `dbos_wf_attributes_idx`
(jsonb_path_ops, migration 0011). SQLite has neither the operator nor such an index, and
Django's JSONField refuses `contains` there; so each SQLite connection gets a deterministic SQL
function that tests containment as jsonb does, and the filter calls it for every row it reads.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created
from django.db.models import BooleanField, F, Func, QuerySet, Value

from ...models import WorkflowStatus
from .connection import alias

FUNCTION = "dbos_json_contains"


def contains(document: Any, pattern: Any) -> bool:
    """Whether JSON `document` contains `pattern`, as jsonb's `@>` decides inside a document:
    an object contains an object whose keys it has with values it contains; an array contains
    an array each of whose elements it contains (in any order, repeated or not); scalars are
    equal, numbers by value (1 and 1.0), never across types (1 and "1", 1 and true)."""
    if isinstance(pattern, dict):
        return isinstance(document, dict) and all(
            key in document and contains(document[key], value) for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(document, list) and all(
            any(contains(item, wanted) for item in document) for wanted in pattern
        )
    if isinstance(pattern, bool) or isinstance(document, bool):
        return document is pattern
    if isinstance(pattern, int | float):
        return isinstance(document, int | float) and document == pattern
    return type(document) is type(pattern) and document == pattern


def _contains_sql(document: str | None, pattern: str) -> bool | None:
    """The SQL function: NULL for a workflow without attributes, as `NULL @> ...` is."""
    if document is None:
        return None
    return contains(json.loads(document), json.loads(pattern))


def _register(connection: Any) -> None:
    connection.connection.create_function(FUNCTION, 2, _contains_sql, deterministic=True)


def _on_connection_created(*, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        _register(connection)


connection_created.connect(_on_connection_created, dispatch_uid="django_dbos.containment")


def containing(rows: QuerySet[WorkflowStatus], pattern: dict[str, Any]) -> QuerySet[WorkflowStatus]:
    """The rows whose attributes contain `pattern`."""
    connection = connections[alias()]
    if connection.vendor == "postgresql":
        return rows.filter(attributes__contains=pattern)
    if connection.connection is not None:
        _register(connection)  # opened before this module was imported: no signal reached us
    return rows.filter(
        Func(
            F("attributes"),
            Value(json.dumps(pattern)),
            function=FUNCTION,
            output_field=BooleanField(),
        )
    )
