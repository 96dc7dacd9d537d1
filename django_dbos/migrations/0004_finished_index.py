from django.db import migrations, models

from ._operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_dbos", "0003_executor_queues"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="workflowstatus",
            index=models.Index(
                condition=models.Q(
                    (
                        "status__in",
                        ["SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"],
                    )
                ),
                fields=["updated_at", "workflow_id"],
                name="dbos_wf_finished_idx",
            ),
        ),
    ]
