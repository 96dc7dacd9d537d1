"""Every read and write of the system tables, as named queries; nothing else touches them.

Hot-path writes (a workflow's start, each step, its end) are single raw statements in autocommit,
with the ownership check folded into the statement, so that a step costs one round trip. Colder
reads go through the ORM, which converts types for both PostgreSQL and SQLite. One module per
table family; this package's namespace is the layer's interface.
"""

from .alerts import (
    alert_turn,
    failed_count,
    firing_alerts,
    firing_states,
    forget_rules,
    gave_up,
    mark_delivered,
    recent_transitions,
    record_check,
    undelivered_transitions,
)
from .archive import export_workflows, import_workflow
from .browsing import (
    counts_by_status,
    counts_by_status_and_name,
    empty_every_table,
    executor_rows,
    finished_by_minute,
    live_executor_count,
    operation_rows,
    schedule_rows,
    workflow_rows,
)
from .connection import (
    DatabaseUnavailable,
    alias,
    begins_deferred,
    is_disconnect,
    now,
    read_only,
    unavailable_if_disconnected,
    using,
    wait_until_reachable,
    write_transaction,
)
from .containment import containing
from .debounce import DeduplicationHolder, bounce, deduplication_holder
from .deletion import (
    Position,
    delete_batch,
    delete_finished,
    finished_before,
    kept_with_family,
    nth_newest_finished,
)
from .executors import (
    claim_pending,
    delete_executor,
    forget_executors,
    heartbeat,
    live_executor_ids,
    pending_executor_ids,
    stale_executor_ids,
)
from .messages import consume_message, get_event, read_stream, send_message, set_event, write_stream
from .operations import list_operations, load_operations, load_operations_of, record_operation
from .queues import (
    QueueLoad,
    claim_queued,
    ensure_queue,
    queue_limits,
    queue_statuses,
    sync_queues,
)
from .retention import expire_payloads, retention_turn
from .rows import ClaimedWorkflow, NewWorkflow, ScheduleRow, WorkflowRow
from .schedules import (
    active_schedules,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_schedules,
    schedule_fired,
    update_schedule,
)
from .snapshots import (
    queue_status,
    step_info,
    upgrade_block,
    version_info,
    workflow_schedule,
    workflow_status,
)
from .versions import (
    application_versions,
    in_flight_by_version,
    in_flight_workflows,
    live_executors_by_version,
    live_worker_versions,
    record_version,
    set_latest_version,
    stranded_by_queue,
    stranded_counts,
    stranded_workflows,
    upgrade_batch,
)
from .wakeups import CHANNEL, QUEUE_ACTIVITY, announce, wake_key
from .workflows import (
    RESUMABLE,
    cancel_workflows,
    descendants,
    finish_workflow,
    fork_workflow,
    get_outcome,
    get_outcomes,
    get_workflow,
    give_up,
    insert_workflow,
    list_workflows,
    park_workflow,
    resume_workflow,
    unpark_workflow,
    update_attributes,
)

__all__ = [
    # The database and its connection
    "DatabaseUnavailable",
    "alias",
    "begins_deferred",
    "is_disconnect",
    "now",
    "read_only",
    "unavailable_if_disconnected",
    "using",
    "wait_until_reachable",
    "write_transaction",
    # Wake-ups
    "CHANNEL",
    "QUEUE_ACTIVITY",
    "announce",
    "wake_key",
    # Workflows
    "RESUMABLE",
    "ClaimedWorkflow",
    "NewWorkflow",
    "ScheduleRow",
    "WorkflowRow",
    "cancel_workflows",
    "containing",
    "descendants",
    "finish_workflow",
    "fork_workflow",
    "get_outcome",
    "get_outcomes",
    "get_workflow",
    "give_up",
    "insert_workflow",
    "list_workflows",
    "park_workflow",
    "resume_workflow",
    "unpark_workflow",
    "update_attributes",
    # Deleting finished workflows
    "Position",
    "delete_batch",
    "delete_finished",
    "finished_before",
    "nth_newest_finished",
    "kept_with_family",
    # The retention policy
    "expire_payloads",
    "retention_turn",
    # Alert rules
    "alert_turn",
    "failed_count",
    "firing_alerts",
    "firing_states",
    "forget_rules",
    "gave_up",
    "mark_delivered",
    "recent_transitions",
    "record_check",
    "undelivered_transitions",
    # Operations
    "list_operations",
    "load_operations",
    "load_operations_of",
    "record_operation",
    # Executors
    "claim_pending",
    "delete_executor",
    "forget_executors",
    "heartbeat",
    "live_executor_ids",
    "pending_executor_ids",
    "stale_executor_ids",
    # Application versions
    "application_versions",
    "in_flight_by_version",
    "in_flight_workflows",
    "live_executors_by_version",
    "live_worker_versions",
    "record_version",
    "set_latest_version",
    "stranded_by_queue",
    "stranded_counts",
    "stranded_workflows",
    "upgrade_batch",
    # Queues
    "QueueLoad",
    "claim_queued",
    "ensure_queue",
    "queue_limits",
    "queue_statuses",
    "sync_queues",
    # Debouncing
    "DeduplicationHolder",
    "bounce",
    "deduplication_holder",
    # Messages, events, streams
    "consume_message",
    "get_event",
    "read_stream",
    "send_message",
    "set_event",
    "write_stream",
    # Rows as value types
    "queue_status",
    "step_info",
    "upgrade_block",
    "version_info",
    "workflow_schedule",
    "workflow_status",
    # Export and import
    "export_workflows",
    "import_workflow",
    # For people: the admin and the dashboard
    "counts_by_status",
    "counts_by_status_and_name",
    "empty_every_table",
    "executor_rows",
    "finished_by_minute",
    "live_executor_count",
    "operation_rows",
    "schedule_rows",
    "workflow_rows",
    # Schedules
    "active_schedules",
    "create_schedule",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "schedule_fired",
    "update_schedule",
]
