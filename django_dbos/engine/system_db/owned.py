"""The tables whose rows belong to one workflow, declared once for everything that deletes,
archives, scrubs or empties them: a table added here is handled by all of them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from ...models import (
    MessageWait,
    Notification,
    OperationOutput,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
    WorkflowStatus,
)


@dataclass(frozen=True)
class WorkflowTable:
    """A table of rows that belong to a workflow, through a foreign key to its row: they go
    when the workflow is deleted."""

    model: type[models.Model]

    @property
    def table(self) -> str:
        return self.model._meta.db_table

    @property
    def owner(self) -> str:
        """The column naming the workflow (the foreign key's)."""
        (field,) = (
            field
            for field in self.model._meta.concrete_fields
            if field.is_relation and field.related_model is WorkflowStatus
        )
        return field.attname


@dataclass(frozen=True)
class OwnedTable(WorkflowTable):
    """A table of a workflow's history: kept in its archived record, and scrubbed when its
    payload expires."""

    # The key of these rows in an archived record (docs/retention.md).
    key: str
    # The order of one workflow's rows in a record.
    order: tuple[str, ...]
    # The column holding a serialized value, dropped when the workflow's payload expires.
    payload: str

    def scrub_statement(self, marks: str) -> str:
        """The UPDATE dropping the payloads of the workflows listed by `marks` (placeholders).

        A column that cannot be null keeps "", which reads back as None.
        """
        column = self.payload
        if self.model._meta.get_field(column).null:
            return (
                f"UPDATE {self.table} SET {column} = NULL "
                f"WHERE {self.owner} IN ({marks}) AND {column} IS NOT NULL"
            )
        return f"UPDATE {self.table} SET {column} = '' WHERE {self.owner} IN ({marks})"


# Messages keep their order, which is the order they are consumed in.
OWNED_TABLES = (
    OwnedTable(OperationOutput, "steps", ("function_id",), "output"),
    OwnedTable(WorkflowEvent, "events", ("key",), "value"),
    OwnedTable(WorkflowEventHistory, "event_history", ("function_id", "key"), "value"),
    OwnedTable(StreamEntry, "streams", ("key", "position"), "value"),
    OwnedTable(Notification, "messages", ("id",), "message"),
)

# Every table of a workflow's rows, for what deletes or empties them. The waits in recv (the
# admin's inbox) describe a running workflow, not its history: they hold no payload to scrub,
# and an archived (finished) workflow waits for nothing.
WORKFLOW_TABLES: tuple[WorkflowTable, ...] = (*OWNED_TABLES, WorkflowTable(MessageWait))
