from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

# Serves list_workflows(attributes=...), whose containment test is jsonb's @> on PostgreSQL.
# Built CONCURRENTLY (hence atomic = False), as a large table would otherwise stop taking
# writes for the whole build. Not a Meta index: Django's GinIndex would fail on other databases,
# which test containment without an index (docs/attributes.md).
INDEX = "dbos_wf_attributes_idx"


def create_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
            "ON dbos_workflow_status USING gin (attributes jsonb_path_ops)"
        )


def drop_index(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_dbos", "0010_attributes_idempotent_sends_waits"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, atomic=False),
    ]
