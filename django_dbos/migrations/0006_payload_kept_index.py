from django.db import migrations, models

from ._operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_dbos", "0005_payload_expiry"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="workflowstatus",
            index=models.Index(
                condition=models.Q(
                    ("payload_expired_at__isnull", True),
                    (
                        "status__in",
                        ["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"],
                    ),
                ),
                fields=["updated_at", "workflow_id"],
                name="dbos_wf_payload_kept_idx",
            ),
        ),
    ]
