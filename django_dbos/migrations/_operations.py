"""Migration operations the migrations share (a module the migration loader skips: its name
starts with an underscore)."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import ProjectState


class AddIndexConcurrentlyOnPostgres(AddIndexConcurrently):
    """AddIndex that builds the index without blocking writes where the database can.

    On a large dbos_workflow_status, a plain CREATE INDEX blocks every write to the table (each
    workflow's start and end) for as long as the build takes. PostgreSQL's CREATE INDEX
    CONCURRENTLY does not, but it cannot run inside a transaction, hence `atomic = False` below.
    Other databases build the index as AddIndex does. One operation rather than a
    RunPython or SeparateDatabaseAndState pair: the migration state is AddIndex's either way,
    so `makemigrations` sees the model's Meta index as made.
    """

    # Django's two hooks, alike but for their direction: each asks `_kind` which AddIndex runs.
    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self._kind(schema_editor).database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        self._kind(schema_editor).database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )

    @staticmethod
    def _kind(schema_editor: BaseDatabaseSchemaEditor) -> type[migrations.AddIndex]:
        """CREATE INDEX CONCURRENTLY on PostgreSQL, a plain CREATE INDEX elsewhere."""
        if schema_editor.connection.vendor == "postgresql":
            return AddIndexConcurrently
        return migrations.AddIndex
