"""SQLite as `django-admin startproject` writes it (no OPTIONS): deferred transactions, no WAL,
a five-second busy timeout. Workers started together on it stay up and run the queue."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from django.conf import settings

from django_dbos.models import WorkflowStatus

from .conftest import Processes, wait_until

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="makes its own SQLite file whatever the test database is: runs in the SQLite pass only",
)

WORKFLOWS = 30


def succeeded(process: subprocess.Popen[bytes]) -> None:
    """Wait for a short-lived process; fail with its output unless it exited cleanly."""
    code = process.wait(60)
    assert code == 0, Path(process.log_path).read_text()  # type: ignore[attr-defined]


def statuses(database: Path) -> dict[str, int]:
    """How many workflows the file holds in each status, read as any SQLite client would."""
    table = WorkflowStatus._meta.db_table
    with closing(sqlite3.connect(database, timeout=30)) as connection:
        rows = connection.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status")
        return dict(rows.fetchall())


def test_three_workers_started_together_on_plain_sqlite_stay_up(
    processes: Processes, tmp_path: Path
):
    database = tmp_path / "startproject.sqlite3"
    plain = {"DATABASE_URL": f"sqlite:///{database}", "DJANGO_SQLITE_OPTIONS": "none"}
    succeeded(
        processes.python(
            "from django.core.management import call_command\n"
            "call_command('migrate', verbosity=0)\n",
            **plain,
        )
    )
    succeeded(
        processes.python(
            "from testproject.shop.workflows import fleet, fleet_job\n"
            f"for _ in range({WORKFLOWS}):\n"
            "    fleet.enqueue(fleet_job, 0.05)\n",
            **plain,
        )
    )
    assert statuses(database) == {"ENQUEUED": WORKFLOWS}

    workers = [processes.worker(**plain) for _ in range(3)]

    wait_until(
        lambda: (
            statuses(database) == {"SUCCESS": WORKFLOWS}
            or any(worker.poll() is not None for worker in workers)
        ),
        timeout=90,
        what="every workflow to succeed",
    )
    for worker in workers:
        log = Path(worker.log_path).read_text()  # type: ignore[attr-defined]
        assert worker.poll() is None, f"a worker died:\n{log}"
        assert "Traceback" not in log, log
        # The system check told the operator what to add to OPTIONS.
        assert "django_dbos.W002" in log
    assert statuses(database) == {"SUCCESS": WORKFLOWS}
