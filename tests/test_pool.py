"""The workflow thread pool's database connections under Django's default CONN_MAX_AGE = 0."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from django_dbos import DBOS
from django_dbos.engine import executor, pool

from .conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@DBOS.workflow()
def short_workflow(n: int) -> int:
    return n + 1


@pytest.fixture
def conn_max_age_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """Django's default: one connection per request."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.fixture
def opened_by_pool() -> Iterator[list[str]]:
    """The names of the workflow threads that opened a database connection."""
    opened: list[str] = []

    def record(sender: object, connection: object, **kwargs: object) -> None:
        name = threading.current_thread().name
        if name.startswith("dbos-workflow"):
            opened.append(name)

    connection_created.connect(record)
    yield opened
    connection_created.disconnect(record)


def run_one_after_another(count: int) -> None:
    for n in range(count):
        assert DBOS.start_workflow(short_workflow, n).get_result(timeout=10) == n + 1
        # The pool's thread goes idle (and tidies) between two workflows.
        wait_until(lambda: executor.current().pool.busy == 0, what="the pool to go idle")


def test_a_workflow_thread_keeps_its_connection_between_workflows(
    conn_max_age_zero: None, opened_by_pool: list[str]
) -> None:
    run_one_after_another(10)

    assert opened_by_pool == ["dbos-workflow-0"]


def test_a_long_idle_closes_the_connection(
    conn_max_age_zero: None, opened_by_pool: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "IDLE_SECONDS_BEFORE_CLOSING", 0.2)
    run_one_after_another(2)
    time.sleep(0.5)
    run_one_after_another(1)

    assert opened_by_pool == ["dbos-workflow-0", "dbos-workflow-0"]


def test_a_positive_conn_max_age_still_limits_a_connections_age(
    monkeypatch: pytest.MonkeyPatch, opened_by_pool: list[str]
) -> None:
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0.2)
    run_one_after_another(1)
    time.sleep(0.3)
    run_one_after_another(1)  # tidied when it went idle after this one: too old, closed
    run_one_after_another(1)

    assert opened_by_pool == ["dbos-workflow-0", "dbos-workflow-0"]
