from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_dbos", "0004_finished_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="Lease",
            fields=[
                ("name", models.CharField(max_length=255, primary_key=True, serialize=False)),
                ("holder", models.CharField(blank=True, default="", max_length=255)),
                ("expires_at", models.DateTimeField()),
            ],
            options={
                "db_table": "dbos_lease",
            },
        ),
        # Nullable without a default: adding it rewrites nothing, however large the table.
        migrations.AddField(
            model_name="workflowstatus",
            name="payload_expired_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
