"""docs/for-dbos-users.md maps every public name of DBOS Python 3.4 to ours, or says why there is
none; and it names every public name of ours, so that a new one gets its row too.

Only the page is read: DBOS's names are frozen below (from dbos 3.4.0: its `__all__`, the public
members of `DBOS`, the public methods of `DBOSClient`), so the `dbos` package is not needed. Ours
are read from the live objects.
"""

from __future__ import annotations

import re

import pytest

import django_dbos
from django_dbos.api import DBOS
from django_dbos.client import DBOSClient

from .conftest import ROOT

PAGE = ROOT / "docs" / "for-dbos-users.md"
SECTION = "## Every public name of DBOS Python 3.4"


def frozen_names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


DBOS_ALL = frozen_names(
    """
DBOSConfig DBOS DBOSClient DBOSConfiguredInstance DBOSPortableJSONSerializer DBOSContextEnsure
DBOSContextSetAuth DuplicationPolicy ScheduleInput EnqueueOptions KafkaMessage
PortableWorkflowError PropagateOtelContext SetWorkflowAttributes SetWorkflowID
SetWorkflowTimeout SetEnqueueOptions SetShardKey SendMessage StepInfo StepOptions
StepReservation WorkflowHandle WorkflowHandleAsync WorkflowIDReusePolicy
WorkflowSerializationFormat WorkflowSchedule ClientScheduleInput VersionInfo WorkflowStatus
WorkflowStatusString error Queue Debouncer DebouncerClient Serializer pydantic_args_validator
make_pydantic_args_validator run_dbos_database_migrations SQLAlchemyDatasource
AsyncSQLAlchemyDatasource
"""
)

DBOS_MEMBERS = frozen_names(
    """
destroy migrate launch reset_system_database register_queue register_queue_async retrieve_queue
retrieve_queue_async delete_queue delete_queue_async list_queues list_queues_async workflow step
dbos_class default_required_roles required_roles kafka_consumer start_workflow
start_workflow_async enqueue_workflow enqueue_workflow_async enqueue_workflow_with_options
enqueue_workflow_with_options_async run_step run_step_async reserve_step get_workflow_status
get_workflow_status_async get_result get_result_async wait_first wait_first_async
retrieve_workflow retrieve_workflow_async send send_async send_bulk send_bulk_async recv
recv_async sleep sleep_async asyncio_wait set_event set_event_async get_event get_event_async
get_all_events get_all_events_async cancel_workflow cancel_workflow_async cancel_workflows
cancel_workflows_async update_workflow_attributes update_workflow_attributes_async
delete_workflow delete_workflow_async delete_workflows delete_workflows_async resume_workflow
resume_workflow_async resume_workflows resume_workflows_async set_workflow_delay
set_workflow_delay_async rewind_workflow rewind_workflow_async fork_workflow fork_workflow_async
list_workflows list_workflows_async list_queued_workflows list_queued_workflows_async
list_workflow_steps list_workflow_steps_async create_schedule list_schedules get_schedule
delete_schedule create_schedule_async list_schedules_async get_schedule_async
delete_schedule_async pause_schedule resume_schedule apply_schedules apply_schedules_async
backfill_schedule trigger_schedule list_application_versions get_latest_application_version
set_latest_application_version list_application_versions_async
get_latest_application_version_async set_latest_application_version_async application_version
executor_id logger workflow_id shard_key step_id step_status span authenticated_user
authenticated_roles assumed_role set_authentication write_stream close_stream read_stream
read_stream_offset read_stream_offset_async write_stream_async close_stream_async
read_stream_async patch patch_async deprecate_patch deprecate_patch_async tracer listen_queues
alert_handler
"""
)

DBOS_CLIENT_METHODS = frozen_names(
    """
check_connection check_connection_async destroy enqueue enqueue_async enqueue_in_transaction
register_queue register_queue_async retrieve_queue retrieve_queue_async delete_queue
delete_queue_async list_queues list_queues_async retrieve_workflow retrieve_workflow_async
wait_first wait_first_async send send_async send_in_transaction send_bulk send_bulk_async
send_bulk_in_transaction get_event get_event_async cancel_workflow cancel_workflow_async
cancel_workflows cancel_workflows_async update_workflow_attributes
update_workflow_attributes_async delete_workflow delete_workflow_async delete_workflows
delete_workflows_async resume_workflow resume_workflow_async resume_workflows
resume_workflows_async rewind_workflow rewind_workflow_async set_workflow_delay
set_workflow_delay_async list_workflows list_workflows_async list_queued_workflows
list_queued_workflows_async list_workflow_steps list_workflow_steps_async fork_workflow
fork_workflow_async read_stream read_stream_async read_stream_offset read_stream_offset_async
create_schedule list_schedules get_schedule delete_schedule create_schedule_async
list_schedules_async get_schedule_async delete_schedule_async pause_schedule resume_schedule
apply_schedules apply_schedules_async backfill_schedule trigger_schedule
list_application_versions get_latest_application_version set_latest_application_version
list_application_versions_async get_latest_application_version_async
set_latest_application_version_async rename_application rename_application_async
"""
)

# Each table of the section, by its heading, and the names its first column must hold.
TABLES = {
    "dbos.__all__": DBOS_ALL,
    "DBOS": DBOS_MEMBERS,
    "DBOSClient": DBOS_CLIENT_METHODS,
}
CODE = re.compile(r"`([^`]+)`")


def first_columns() -> dict[str, list[str]]:
    """The names in backticks in the first column of each table of the reference section, by
    the table's heading (the `### ...` above it)."""
    text = PAGE.read_text()
    assert SECTION in text, f"{PAGE.name} has no section {SECTION!r}"
    columns: dict[str, list[str]] = {}
    heading = None
    for line in text.split(SECTION, 1)[1].splitlines():
        if line.startswith("## "):
            break
        if line.startswith("### "):
            heading = line[4:].strip().strip("`")
            columns[heading] = []
        elif heading is not None and line.startswith("| ") and not line.startswith("| ---"):
            columns[heading].extend(CODE.findall(line.split("|")[1]))
    return columns


@pytest.mark.parametrize("table", TABLES)
def test_each_dbos_name_has_one_row(table: str) -> None:
    listed = first_columns().get(table, [])
    expected = TABLES[table]
    assert len(set(expected)) == len(expected)
    missing = [name for name in expected if name not in listed]
    unknown = sorted(set(listed) - set(expected))
    repeated = sorted({name for name in listed if listed.count(name) > 1})
    assert not missing, f"DBOS 3.4 names without a row in the {table} table: {missing}"
    assert not unknown, f"not DBOS 3.4 names, in the {table} table: {unknown}"
    assert not repeated, f"names in more than one row of the {table} table: {repeated}"


def public(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")}


def test_every_public_name_of_ours_is_on_the_page() -> None:
    # In code spans, outside the fenced samples (whose fences would pair the backticks wrongly).
    prose = re.sub(r"^```.*?^```$", "", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    mentioned = {word for span in CODE.findall(prose) for word in re.findall(r"[A-Za-z_]\w*", span)}
    ours = {*django_dbos.__all__, *public(DBOS), *public(DBOSClient)}
    missing = sorted(ours - mentioned)
    assert not missing, f"public names of django-dbos that {PAGE.name} does not mention: {missing}"
