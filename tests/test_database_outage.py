"""Connections dropped by the database: running workflows wait, reconnect and finish."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db import connection

from django_dbos import DBOS, WorkflowStatusString

from .conftest import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

ran: Counter[int] = Counter()


@DBOS.step()
def slow_step(number: int) -> int:
    time.sleep(0.2)
    ran[number] += 1
    return number


@DBOS.workflow()
def five_slow_steps() -> list[int]:
    return [slow_step(number) for number in range(5)]


def terminate_other_connections() -> int:
    """What a database restart or a DBA does: every other session of this database dies."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_running_workflow_survives_its_connection_being_killed():
    ran.clear()
    handle = DBOS.start_workflow(five_slow_steps)
    wait_until(lambda: len(DBOS.list_workflow_steps(handle.workflow_id)) >= 2, 10, "two steps")

    assert terminate_other_connections() >= 1

    assert handle.get_result(timeout=30) == [0, 1, 2, 3, 4]
    assert DBOS.get_workflow_status(handle.workflow_id).status == WorkflowStatusString.SUCCESS
    assert [s.function_id for s in DBOS.list_workflow_steps(handle.workflow_id)] == [1, 2, 3, 4, 5]
    assert all(times <= 2 for times in ran.values())  # at most the interrupted step ran again
    assert ran[0] == ran[1] == 1  # steps recorded before the outage never ran again


def test_the_notifier_and_later_workflows_work_after_the_connections_were_killed():
    DBOS.start_workflow(five_slow_steps).get_result(timeout=30)
    terminate_other_connections()

    handle = DBOS.start_workflow(five_slow_steps)
    assert handle.get_result(timeout=30) == [0, 1, 2, 3, 4]
