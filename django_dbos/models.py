"""The system tables: Django models, so migrations create them and the admin can show them.

Only `engine/system_db.py` writes to these tables; everything else reads through the public API.
"""

from django.db import models
from django.db.models import Q

from .validators import (
    validate_cron,
    validate_positive,
    validate_schedule_name,
    validate_timezone,
)


class Status(models.TextChoices):
    PENDING = "PENDING"
    ENQUEUED = "ENQUEUED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"


# A workflow in one of these statuses runs no more, unless someone resumes it.
FINISHED = [Status.SUCCESS, Status.ERROR, Status.CANCELLED, Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED]


class WorkflowStatus(models.Model):
    """One row per workflow execution, keyed by its workflow id."""

    workflow_id = models.CharField(max_length=255, primary_key=True)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=40, choices=Status.choices)
    inputs = models.TextField(blank=True, default="")
    output = models.TextField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    executor_id = models.CharField(max_length=255, null=True, blank=True)
    application_version = models.CharField(max_length=255, null=True, blank=True)
    queue_name = models.CharField(max_length=255, null=True, blank=True)
    priority = models.IntegerField(default=0)
    deduplication_id = models.CharField(max_length=255, null=True, blank=True)
    queue_partition_key = models.CharField(max_length=255, null=True, blank=True)
    timeout_ms = models.BigIntegerField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    # Not dispatched before this time (SetEnqueueOptions(delay_seconds=...)).
    dispatch_after = models.DateTimeField(null=True, blank=True)
    # Started under SetWorkflowTimeout(None) inside its parent: neither the parent's deadline
    # nor its cancellation reaches it.
    detached = models.BooleanField(default=False)
    recovery_attempts = models.IntegerField(default=0)
    # Counts the executions that took the workflow (start, dequeue, recovery, resume). Every
    # checkpoint is fenced on it, so an execution that was cancelled, or taken over, and missed
    # it records nothing more, even when the same executor runs the next execution.
    execution = models.IntegerField(default=0)
    # What a parked workflow waits for, as the admin shows it ("waiting for a message on topic
    # 'go'", "sleeping until ..."), and when it wakes at the latest; empty while it runs.
    waiting = models.CharField(max_length=255, blank=True, default="", db_default="")
    wake_at = models.DateTimeField(null=True, blank=True)
    parent_workflow_id = models.CharField(max_length=255, null=True, blank=True)
    forked_from = models.CharField(max_length=255, null=True, blank=True)
    authenticated_user = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    # When the retention policy (PAYLOAD_DAYS) dropped its inputs, output, error message and
    # the values of its steps, messages, events and streams; null while they are kept.
    payload_expired_at = models.DateTimeField(null=True, blank=True)
    # The W3C trace context (traceparent, tracestate) of the span that started or enqueued it,
    # as JSON, so that its trace continues wherever it runs; null when no tracing was active.
    trace_context = models.TextField(null=True, blank=True)
    # A replay-checked upgrade (`dbos workflow upgrade`, AUTO_UPGRADE) found that the code of
    # `upgrade_checked_version` cannot continue it: its first diverging operation, as JSON
    # ({"function_id", "expected", "found", "reason"}); null when it was never checked, or moved.
    upgrade_blocked_at = models.TextField(null=True, blank=True)
    upgrade_checked_version = models.CharField(max_length=255, null=True, blank=True)
    # What the application said about the workflow (SetWorkflowAttributes, a JSON object), to
    # find it again: list_workflows(attributes=...) matches by containment (a GIN index on
    # PostgreSQL, made by migration 0011 outside the model: other databases have none).
    attributes = models.JSONField(null=True, blank=True)
    # Enqueued by a Debouncer (delayed, its dispatch_after pushed back by each later call with
    # its key, its inputs replaced), and the latest its dispatch may be pushed back to
    # (debounce_timeout_sec after the first call); null when it has no cap.
    debounced = models.BooleanField(default=False, db_default=False)
    debounce_deadline = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "dbos_workflow_status"
        verbose_name = "workflow"
        verbose_name_plural = "workflows"
        permissions = [
            ("cancel_workflowstatus", "Can cancel workflows"),
            ("resume_workflowstatus", "Can resume workflows"),
            ("fork_workflowstatus", "Can fork workflows"),
            ("send_message", "Can answer workflows waiting for a message"),
        ]
        indexes = [
            models.Index(fields=["created_at"], name="dbos_wf_created_idx"),
            models.Index(fields=["name", "created_at"], name="dbos_wf_name_idx"),
            models.Index(fields=["status", "created_at"], name="dbos_wf_status_idx"),
            models.Index(fields=["parent_workflow_id"], name="dbos_wf_parent_idx"),
            # Recovery: the PENDING workflows of one executor.
            models.Index(
                fields=["executor_id"],
                name="dbos_wf_pending_idx",
                condition=Q(status="PENDING"),
            ),
            # Dispatch: the oldest ENQUEUED workflows of a queue, by priority.
            models.Index(
                fields=["queue_name", "priority", "created_at"],
                name="dbos_wf_enqueued_idx",
                condition=Q(status="ENQUEUED"),
            ),
            # Deleting old workflows (garbage_collect, prune) and the dashboard's last hour:
            # the finished workflows in the order they ended.
            models.Index(
                fields=["updated_at", "workflow_id"],
                name="dbos_wf_finished_idx",
                condition=Q(status__in=FINISHED),
            ),
            # The retention policy's PAYLOAD_DAYS: the finished workflows whose payload is still
            # there, in the order they ended (those it scrubbed leave the index).
            models.Index(
                fields=["updated_at", "workflow_id"],
                name="dbos_wf_payload_kept_idx",
                condition=Q(status__in=FINISHED, payload_expired_at__isnull=True),
            ),
            # Flow control: how many of a queue's workflows run, and started lately.
            models.Index(
                fields=["queue_name", "started_at"],
                name="dbos_wf_queue_started_idx",
                condition=Q(queue_name__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["queue_name", "deduplication_id"],
                name="dbos_wf_dedup_uniq",
                condition=Q(deduplication_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.workflow_id


class Queue(models.Model):
    """A queue's flow-control limits: written from code when a worker starts, editable in the
    admin, read by every worker's dispatcher within seconds."""

    name = models.CharField(max_length=255, primary_key=True)
    concurrency = models.PositiveIntegerField(
        validators=[validate_positive],
        null=True,
        blank=True,
        help_text="At most this many running at once, across all workers.",
    )
    worker_concurrency = models.PositiveIntegerField(
        validators=[validate_positive],
        null=True,
        blank=True,
        help_text="At most this many running at once in each worker.",
    )
    rate_limit = models.PositiveIntegerField(
        validators=[validate_positive],
        null=True,
        blank=True,
        help_text="At most this many starts per rate period.",
    )
    rate_period_seconds = models.FloatField(null=True, blank=True, validators=[validate_positive])
    priority_enabled = models.BooleanField(default=False)
    partition_queue = models.BooleanField(default=False)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_queue"

    def __str__(self) -> str:
        return self.name


class OperationOutput(models.Model):
    """The recorded outcome of one durable operation of a workflow (step, transaction, ...).

    One row per step is the write budget, so this table carries a single index: its primary
    key (workflow, function id), which is also the fence that lets only one execution record
    each operation.
    """

    pk = models.CompositePrimaryKey("workflow_id", "function_id")
    # No database-level foreign key: every write is already guarded on the workflow row, and on
    # PostgreSQL the FK check would lock that row (FOR KEY SHARE) on every step.
    workflow = models.ForeignKey(
        WorkflowStatus,
        on_delete=models.CASCADE,
        related_name="operations",
        db_column="workflow_id",
        db_constraint=False,
        db_index=False,
    )
    function_id = models.IntegerField()
    function_name = models.CharField(max_length=255)
    output = models.TextField(null=True, blank=True)
    error = models.TextField(null=True, blank=True)
    child_workflow_id = models.CharField(max_length=255, null=True, blank=True)
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_operation_output"
        verbose_name = "step"
        ordering = ["workflow_id", "function_id"]

    def __str__(self) -> str:
        return f"{self.workflow_id}#{self.function_id} {self.function_name}"


class Notification(models.Model):
    """A message sent to a workflow; consumed once, oldest first per (workflow, topic)."""

    destination = models.ForeignKey(
        WorkflowStatus,
        on_delete=models.CASCADE,
        related_name="notifications",
        db_column="destination_id",
    )
    topic = models.CharField(max_length=255, blank=True, default="")
    message = models.TextField()
    created_at = models.DateTimeField()
    consumed_at = models.DateTimeField(null=True, blank=True)
    # DBOS.send(..., idempotency_key=...): a second send with the same key to the same workflow
    # delivers nothing (the row stays after it is consumed, so the key is remembered as long).
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        db_table = "dbos_notification"
        indexes = [
            models.Index(
                fields=["destination", "topic", "id"],
                name="dbos_notif_unconsumed_idx",
                condition=Q(consumed_at__isnull=True),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "idempotency_key"],
                name="dbos_notif_idempotency_uniq",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"to {self.destination_id} on {self.topic or '(no topic)'}"


class MessageWait(models.Model):
    """A workflow waiting in `recv` (written when the wait begins, deleted with the message it
    consumes): what the admin's inbox lists, and the form it renders to answer."""

    pk = models.CompositePrimaryKey("workflow_id", "function_id")
    workflow = models.ForeignKey(
        WorkflowStatus,
        on_delete=models.CASCADE,
        related_name="message_waits",
        db_column="workflow_id",
        db_constraint=False,
        db_index=False,
    )
    # The recv's own operation: the answer is sent once per wait (its idempotency key).
    function_id = models.IntegerField()
    topic = models.CharField(max_length=255, blank=True, default="")
    # The Django form the answer is made with (DBOS.recv(..., form=...)), as "module:QualName";
    # empty for a free JSON answer.
    form = models.CharField(max_length=255, blank=True, default="")
    since = models.DateTimeField()
    # When recv gives up and returns None.
    deadline = models.DateTimeField()

    class Meta:
        db_table = "dbos_message_wait"
        verbose_name = "message wait"
        ordering = ["since"]
        indexes = [models.Index(fields=["since"], name="dbos_wait_since_idx")]

    def __str__(self) -> str:
        return f"{self.workflow_id}#{self.function_id} on {self.topic or '(no topic)'}"


class WorkflowEvent(models.Model):
    """The latest value a workflow published under a key."""

    workflow = models.ForeignKey(
        WorkflowStatus, on_delete=models.CASCADE, related_name="events", db_column="workflow_id"
    )
    key = models.CharField(max_length=255)
    value = models.TextField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_workflow_event"
        constraints = [
            models.UniqueConstraint(fields=["workflow", "key"], name="dbos_event_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.key}"


class WorkflowEventHistory(models.Model):
    """Every value an event took, by the operation that set it, so fork can restore it."""

    workflow = models.ForeignKey(
        WorkflowStatus,
        on_delete=models.CASCADE,
        related_name="event_history",
        db_column="workflow_id",
    )
    function_id = models.IntegerField()
    key = models.CharField(max_length=255)
    value = models.TextField()

    class Meta:
        db_table = "dbos_workflow_event_history"
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "function_id", "key"], name="dbos_event_history_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.key}@{self.function_id}"


class StreamEntry(models.Model):
    """One value written to a workflow's stream; `closed` marks the end of the stream."""

    workflow = models.ForeignKey(
        WorkflowStatus,
        on_delete=models.CASCADE,
        related_name="stream_entries",
        db_column="workflow_id",
    )
    key = models.CharField(max_length=255)
    position = models.IntegerField()
    value = models.TextField(null=True, blank=True)
    closed = models.BooleanField(default=False)
    function_id = models.IntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_stream_entry"
        verbose_name_plural = "stream entries"
        ordering = ["workflow_id", "key", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["workflow", "key", "position"], name="dbos_stream_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.key}[{self.position}]"


class Lease(models.Model):
    """A job that one worker at a time does (the retention policy), and who holds it until when:
    workers take turns through a guarded UPDATE of the job's row."""

    name = models.CharField(max_length=255, primary_key=True)
    holder = models.CharField(max_length=255, blank=True, default="")
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_lease"

    def __str__(self) -> str:
        return self.name


class Executor(models.Model):
    """A live process that runs workflows; its heartbeat tells others it is alive."""

    executor_id = models.CharField(max_length=255, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    role = models.CharField(max_length=40)
    application_version = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    last_heartbeat = models.DateTimeField()
    # The names of the queues this executor dispatches, as of its last heartbeat: a worker's
    # (its declared queues and those with a row, or only its --queue ones); empty for a process
    # that dispatches none. NULL from a worker of a version that did not record them.
    queues = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "dbos_executor"

    def __str__(self) -> str:
        return self.executor_id


class ApplicationVersion(models.Model):
    """An application version some worker ran; the one with the newest `version_timestamp` is
    the latest (a worker's start inserts its version once; set_latest_application_version bumps
    the timestamp, as in DBOS Python)."""

    version_name = models.CharField(max_length=255, primary_key=True)
    version_timestamp = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_application_version"
        verbose_name = "application version"
        ordering = ["-version_timestamp"]

    def __str__(self) -> str:
        return self.version_name


class Schedule(models.Model):
    """A cron schedule made at run time (DBOS.create_schedule or the admin), editable there."""

    class State(models.TextChoices):
        ACTIVE = "ACTIVE"
        PAUSED = "PAUSED"

    name = models.CharField(max_length=255, unique=True, validators=[validate_schedule_name])
    workflow_name = models.CharField(
        max_length=255, help_text="The registered name of the workflow to run at each tick."
    )
    cron = models.CharField(
        max_length=255,
        validators=[validate_cron],
        help_text='Cron, with an optional leading seconds field: "0 */15 * * * *".',
    )
    timezone = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[validate_timezone],
        help_text="An IANA time zone for the cron fields (default UTC).",
    )
    status = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    context = models.JSONField(null=True, blank=True, help_text="Passed to each run.")
    queue_name = models.CharField(
        max_length=255, null=True, blank=True, help_text="Run on this queue (default: any worker)."
    )
    automatic_backfill = models.BooleanField(
        default=False,
        help_text="When a worker starts, run the ticks missed since the last one fired.",
    )
    last_fired_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "dbos_schedule"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertState(models.Model):
    """Where one alert rule of DBOS["ALERTS"] stands: firing or not, since when, and why; the
    worker that checks the rules compares against it, so a restart repeats no transition."""

    name = models.CharField(max_length=255, primary_key=True)
    kind = models.CharField(max_length=40)
    firing = models.BooleanField(default=False)
    # When it last began firing (or resolved, while not firing).
    since = models.DateTimeField()
    message = models.TextField(blank=True, default="")
    checked_at = models.DateTimeField()

    class Meta:
        db_table = "dbos_alert_state"
        verbose_name = "alert"
        verbose_name_plural = "alerts"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AlertTransition(models.Model):
    """An alert rule that began firing (raised) or stopped (resolved), recorded with its state's
    change in one transaction; delivered_at is set once its signals and mail went out."""

    class Change(models.TextChoices):
        RAISED = "raised"
        RESOLVED = "resolved"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=40)
    change = models.CharField(max_length=10, choices=Change.choices)
    message = models.TextField()
    at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "dbos_alert_transition"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["at"], name="dbos_alert_at_idx"),
            # The transitions left to deliver (few: delivery follows the recording).
            models.Index(
                fields=["id"],
                name="dbos_alert_undelivered_idx",
                condition=Q(delivered_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.change}"
