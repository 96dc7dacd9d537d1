"""Health for probes: `manage.py dbos health [--worker] [--json]` and `GET /dbos/health/`."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from django_dbos import DBOS, Queue, SetWorkflowID
from django_dbos.engine import registry, system_db

from .conftest import ROOT, Processes

pytestmark = pytest.mark.django_db(transaction=True)

waiting = Queue("thealth-waiting")  # nothing dispatches it in these tests
UNSERVED = "No live worker serves these queues: thealth-waiting (1 enqueued)."


@DBOS.workflow()
def th_noop() -> None:
    pass


def enqueue_one() -> None:
    with SetWorkflowID("th-waits"):
        waiting.enqueue(th_noop)


def a_worker_serves_the_queue() -> None:
    """A worker's heartbeat row, fresh, that names the queue among those it dispatches."""
    system_db.heartbeat(
        "th-worker",
        hostname="elsewhere",
        pid=1,
        role="worker",
        application_version=registry.application_version(),
        started_at=system_db.now(),
        queues=["thealth-waiting"],
    )


def health(*options: str) -> str:
    out = io.StringIO()
    call_command("dbos", "health", *options, stdout=out)
    return out.getvalue()


# The command ----------------------------------------------------------------------------------


def test_healthy_when_the_database_answers():
    assert health() == "ok: the system database answers; 0 live executors.\n"


def test_queued_work_without_a_worker_fails_only_with_worker():
    enqueue_one()

    assert health().startswith("ok:")
    with pytest.raises(CommandError) as raised:
        health("--worker")
    assert str(raised.value) == UNSERVED
    assert raised.value.returncode == 1


def test_queued_work_with_a_live_worker_is_healthy():
    enqueue_one()
    a_worker_serves_the_queue()

    assert health("--worker") == "ok: the system database answers; 1 live executor.\n"


def test_no_queued_work_needs_no_worker():
    assert health("--worker").startswith("ok:")


def test_json_says_why():
    enqueue_one()

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("dbos", "health", "--worker", "--json", stdout=out)

    assert json.loads(out.getvalue()) == {
        "status": "unhealthy",
        "reason": UNSERVED,
        "database": "reachable",
        "live_executors": 0,
        "unserved_queues": {"thealth-waiting": 1},
    }


def test_an_unreachable_database_fails(unreachable_system_database):
    out = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("dbos", "health", "--json", stdout=out)

    reason = str(raised.value)
    assert reason.startswith("The system database 'default' did not answer: ")
    assert "\n" not in reason
    assert json.loads(out.getvalue()) == {
        "status": "unhealthy",
        "reason": reason,
        "database": "unreachable",
    }


def test_exit_codes_of_the_process(processes: Processes, is_postgres: bool):
    def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "dbos", "health", *args],
            cwd=ROOT,
            env=processes.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    enqueue_one()
    nowhere = (
        "postgres://postgres@127.0.0.1:1/nowhere"
        if is_postgres
        else "sqlite:////nonexistent-directory/x.sqlite3"
    )

    healthy = manage()
    unserved = manage("--worker")
    unreachable = manage(DATABASE_URL=nowhere)

    assert healthy.returncode == 0, healthy.stderr
    assert healthy.stdout.startswith("ok: the system database answers")
    assert unserved.returncode == 1
    assert unserved.stderr.strip() == f"CommandError: {UNSERVED}"
    assert unreachable.returncode == 1
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr
    assert unreachable.stderr.startswith("CommandError: The system database 'default' did not")


# The view -------------------------------------------------------------------------------------


def test_the_view_keeps_its_answer_by_default(client):
    enqueue_one()

    response = client.get("/dbos/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "reachable", "live_executors": 0}


def test_the_view_with_worker_is_503_with_the_reason(client):
    enqueue_one()

    response = client.get("/dbos/health/?worker=true")

    assert response.status_code == 503
    assert response.json() == {
        "error": UNSERVED,
        "detail": {"unserved_queues": {"thealth-waiting": 1}},
    }


def test_the_view_with_worker_is_200_when_served(client):
    enqueue_one()
    a_worker_serves_the_queue()

    response = client.get("/dbos/health/?worker=1")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "reachable",
        "live_executors": 1,
        "unserved_queues": {},
    }


def test_the_view_refuses_a_malformed_worker_parameter(client):
    response = client.get("/dbos/health/?worker=maybe")

    assert response.status_code == 400
    assert response.json()["error"] == "worker must be true or false."
