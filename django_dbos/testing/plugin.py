"""The pytest plugin of django-dbos (entry point `pytest11`): the `dbos`, `dbos_worker` and
`dbos_clock` fixtures. Nothing here runs unless a test asks for one of them.

Loaded before Django is set up, so everything Django-related is imported inside the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def dbos(transactional_db: None) -> Iterator[Any]:
    """The `DBOS` facade, on empty system tables, with the engine stopped again afterwards.

    Workflows run on threads, so the test's database is a transactional one (as with
    `@pytest.mark.django_db(transaction=True)`, which may also be given, and must name the
    system tables' database when DBOS["DATABASE"] is not "default").
    """
    # Django has it; django-stubs do not declare it.
    from django.test.testcases import DatabaseOperationForbidden  # type: ignore[attr-defined]

    from django_dbos import DBOS

    from ..engine import system_db
    from . import isolation

    try:
        isolation.start_clean()
    except DatabaseOperationForbidden:
        database = system_db.alias()
        pytest.fail(
            f'The system tables are in the database {database!r} (DBOS["DATABASE"]), which '
            "this test may not use. Mark the test "
            f'@pytest.mark.django_db(transaction=True, databases=["default", "{database}"]).',
            pytrace=False,
        )
    yield DBOS
    isolation.finish()


@pytest.fixture
def dbos_worker(dbos: Any) -> Iterator[Any]:
    """A worker on a thread of this process: `dbos_worker.drain()` runs the queued work."""
    from . import isolation
    from .worker import InProcessWorker

    worker = InProcessWorker().start()
    yield worker
    isolation.cancel_unfinished()  # so that stopping does not wait for workflows that wait
    worker.stop()


@pytest.fixture
def dbos_clock(dbos: Any) -> Iterator[Any]:
    """The engine's clock: `with dbos_clock.frozen():` holds time, `dbos_clock.advance(days=3)`
    moves it."""
    from .clock import ClockControl

    control = ClockControl()
    yield control
    control.release()
