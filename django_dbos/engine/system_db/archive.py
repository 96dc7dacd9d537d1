"""Workflows as portable records: everything stored about one workflow, out and back in.

A record is a JSON-ready dict (docs/retention.md, "Exporting and importing workflows"): the
workflow's row and the rows that belong to it, column by column, with the serialized values
exactly as stored, so that an import gives back the same bytes. The columns come from the models,
so a column added by a migration is exported without a change here.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

from django.db import DataError, IntegrityError, connections, models
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ...errors import DBOSInvalidArgumentError, DBOSWorkflowConflictIDError
from ...models import Status, WorkflowStatus
from .. import validation
from .connection import alias, write_transaction
from .owned import OWNED_TABLES
from .wakeups import QUEUE_ACTIVITY, announce
from .workflows import matching_workflows

FORMAT = "django-dbos-workflow"
VERSION = 1
# Workflows read per batch: their rows and their children's stay in memory together.
BATCH_SIZE = 500

_RECORD_KEYS = {"format", "version", "workflow", *(owned.key for owned in OWNED_TABLES)}


def _columns(model: type[models.Model], owner: str | None = None) -> list[models.Field[Any, Any]]:
    """The columns a record holds for a table: all but a surrogate id and the owner column."""
    return [
        field
        for field in model._meta.concrete_fields
        if field.attname != owner and not isinstance(field, models.AutoField)
    ]


def _as_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime.datetime) else value


# Exporting ------------------------------------------------------------------------------------


def export_workflows(*, batch_size: int = BATCH_SIZE, **filters: Any) -> Iterator[dict[str, Any]]:
    """Yield the record of every workflow matching the filters (those of matching_workflows),
    oldest first.

    Reads `batch_size` workflows at a time, then each child table once for the whole batch, so
    memory holds one batch whatever the number of workflows. Batches follow each other by
    (created_at, workflow_id), not by offset, so that a late batch costs what the first did.
    """
    rows = matching_workflows(**filters).order_by("created_at", "workflow_id")
    # The database is taken now, not at the first record: a DBOSClient's block may be left
    # by then.
    return _batches(rows, alias(), batch_size)


def _batches(
    rows: QuerySet[WorkflowStatus], database: str, batch_size: int
) -> Iterator[dict[str, Any]]:
    columns = [field.attname for field in _columns(WorkflowStatus)]
    after: Q | None = None
    while True:
        page = rows.filter(after) if after is not None else rows
        batch = list(page.values(*columns)[:batch_size])
        if not batch:
            return
        yield from _records(batch, database)
        if len(batch) < batch_size:
            return
        last = batch[-1]
        after = Q(created_at__gt=last["created_at"]) | Q(
            created_at=last["created_at"], workflow_id__gt=last["workflow_id"]
        )


def _records(batch: list[dict[str, Any]], database: str) -> Iterator[dict[str, Any]]:
    ids = [row["workflow_id"] for row in batch]
    children = {
        owned.key: _children_of(database, ids, owned.model, owned.owner, owned.order)
        for owned in OWNED_TABLES
    }
    for row in batch:
        workflow_id = row["workflow_id"]
        record: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "workflow": {column: _as_json(value) for column, value in row.items()},
        }
        for key, rows in children.items():
            record[key] = rows.get(workflow_id, [])
        yield record


def _children_of(
    database: str,
    workflow_ids: list[str],
    model: type[models.Model],
    owner: str,
    order: tuple[str, ...],
) -> dict[str, list[dict[str, Any]]]:
    """One child table's rows of these workflows, by workflow id, as the record holds them."""
    columns = [field.attname for field in _columns(model, owner)]
    found: dict[str, list[dict[str, Any]]] = {}
    rows: QuerySet[Any, dict[str, Any]] = (
        model._default_manager.using(database)
        .filter(**{f"{owner}__in": workflow_ids})
        .order_by(owner, *order)
        .values(owner, *columns)
    )
    for row in rows:
        workflow_id = row.pop(owner)
        found.setdefault(workflow_id, []).append(
            {column: _as_json(value) for column, value in row.items()}
        )
    return found


# Importing ------------------------------------------------------------------------------------


def import_workflow(record: Any) -> str:
    """Write a workflow and everything that belongs to it from its record, in one transaction;
    return its id.

    Raises DBOSInvalidArgumentError when the record is not a valid one (nothing written), and
    DBOSWorkflowConflictIDError when the workflow's id is taken (nothing written).
    """
    workflow, children = _read_record(record)
    database = alias()
    try:
        with write_transaction():
            if WorkflowStatus.objects.using(database).filter(pk=workflow.pk).exists():
                raise _conflict(workflow.pk)
            workflow.save(using=database, force_insert=True)
            for rows in children:
                if rows:
                    type(rows[0])._default_manager.using(database).bulk_create(rows)
            if workflow.status == Status.ENQUEUED:
                announce(QUEUE_ACTIVITY)
    except (IntegrityError, DataError) as exc:
        # Another import of the same id won the race, or the record holds two rows the
        # tables cannot both keep (the same step twice, a deduplication id in use).
        if WorkflowStatus.objects.using(database).filter(pk=workflow.pk).exists():
            raise _conflict(workflow.pk) from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DBOSInvalidArgumentError(
            f"The record of workflow {workflow.pk!r} cannot be stored ({reason}): nothing was "
            "imported."
        ) from exc
    return str(workflow.pk)


def _conflict(workflow_id: str) -> DBOSWorkflowConflictIDError:
    return DBOSWorkflowConflictIDError(
        f"A workflow with id {workflow_id!r} already exists: nothing was imported. Delete it "
        "first to replace it with the record."
    )


def _read_record(record: Any) -> tuple[WorkflowStatus, list[list[models.Model]]]:
    """Check a record and turn it into unsaved rows, or say what is wrong with it."""
    if not isinstance(record, dict):
        raise DBOSInvalidArgumentError(
            f"A workflow record must be a JSON object, not {type(record).__name__}."
        )
    if record.get("format") != FORMAT:
        raise DBOSInvalidArgumentError(
            f'This is not a workflow record: its "format" is {record.get("format")!r}, '
            f"not {FORMAT!r}."
        )
    if record.get("version") != VERSION:
        raise DBOSInvalidArgumentError(
            f"The record is of version {record.get('version')!r}; this django-dbos reads "
            f"version {VERSION}. Import it with the django-dbos that exported it, or a newer one."
        )
    unknown = sorted(set(record) - _RECORD_KEYS)
    missing = sorted(_RECORD_KEYS - set(record))
    if unknown or missing:
        raise DBOSInvalidArgumentError(_keys_problem("The record", missing, unknown))
    workflow = WorkflowStatus(**_values(WorkflowStatus, record["workflow"], "workflow"))
    children = []
    for owned in OWNED_TABLES:
        rows = record[owned.key]
        if not isinstance(rows, list):
            raise DBOSInvalidArgumentError(f'The record\'s "{owned.key}" must be a list.')
        model, owner = owned.model, owned.owner
        children.append(
            [
                model(**{owner: workflow.pk}, **_values(model, row, f"{owned.key}[{i}]", owner))
                for i, row in enumerate(rows)
            ]
        )
    return workflow, children


def _keys_problem(what: str, missing: list[str], unknown: list[str]) -> str:
    problems = []
    if missing:
        problems.append(f"lacks {', '.join(repr(key) for key in missing)}")
    if unknown:
        problems.append(f"has unknown keys {', '.join(repr(key) for key in unknown)}")
    return f"{what} {' and '.join(problems)}."


def _values(
    model: type[models.Model], row: Any, where: str, owner: str | None = None
) -> dict[str, Any]:
    """A record's row as column values; every column without a default must be there."""
    if not isinstance(row, dict):
        raise DBOSInvalidArgumentError(f'The record\'s "{where}" must be a JSON object.')
    fields = {field.attname: field for field in _columns(model, owner)}
    required = [
        column
        for column, field in fields.items()
        if not field.null and not field.has_default() and not field.has_db_default()
    ]
    missing = sorted(set(required) - set(row))
    unknown = sorted(set(row) - set(fields))
    if missing or unknown:
        raise DBOSInvalidArgumentError(_keys_problem(f'The record\'s "{where}"', missing, unknown))
    return {
        column: _value(fields[column], value, f"{where}.{column}") for column, value in row.items()
    }


def _value(field: models.Field[Any, Any], value: Any, where: str) -> Any:
    """One column's value from JSON, checked against its column."""
    if value is None:
        if not field.null:
            raise DBOSInvalidArgumentError(f'The record\'s "{where}" cannot be null.')
        return None
    if isinstance(field, models.JSONField):
        try:
            return validation.attributes(value, f'The record\'s "{where}"')
        except DBOSInvalidArgumentError as exc:
            raise DBOSInvalidArgumentError(f"{exc} Nothing was imported.") from None
    if isinstance(field, models.DateTimeField):
        moment = parse_datetime(value) if isinstance(value, str) else None
        if moment is None or timezone.is_naive(moment):
            raise DBOSInvalidArgumentError(
                f'The record\'s "{where}" must be an ISO 8601 date and time with its time zone, '
                f"not {value!r}."
            )
        return moment
    expected: type
    if isinstance(field, models.BooleanField):
        expected = bool
    elif isinstance(field, models.IntegerField):
        expected = int
    else:
        expected = str
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise DBOSInvalidArgumentError(
            f'The record\'s "{where}" must be of type {expected.__name__}, not {value!r}.'
        )
    if isinstance(value, str) and "\x00" in value:
        raise DBOSInvalidArgumentError(f'The record\'s "{where}" cannot hold a NUL character.')
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = connections[alias()].ops.integer_field_range(field.get_internal_type())
        if not low <= value <= high:
            raise DBOSInvalidArgumentError(f'The record\'s "{where}" is out of range: {value}.')
    if field.choices and value not in {choice for choice, _label in field.flatchoices}:
        raise DBOSInvalidArgumentError(f'The record\'s "{where}" cannot be {value!r}.')
    max_length = getattr(field, "max_length", None)
    if isinstance(value, str) and max_length is not None and len(value) > max_length:
        raise DBOSInvalidArgumentError(
            f'The record\'s "{where}" is longer than {max_length} characters.'
        )
    return value
