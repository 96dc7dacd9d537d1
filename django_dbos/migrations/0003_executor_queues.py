from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_dbos", "0002_parked_waits"),
    ]

    operations = [
        migrations.AddField(
            model_name="executor",
            name="queues",
            # Nullable, so that workers of the previous version, still heartbeating during a
            # rolling deploy, can go on writing their rows without it.
            field=models.JSONField(blank=True, null=True),
        ),
    ]
