"""django-dbos behind PgBouncer 1.18 in transaction mode (a real one, started here): the public
API in this process and a real worker both work through it, with prepared statements off and the
listener on a direct connection (DBOS["LISTEN_DATABASE"]); without one, waits poll, and the
process and `manage.py check` say so."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.db import connections

from django_dbos import DBOS, DBOSClient, Queue, SetWorkflowID
from django_dbos.engine import notifier
from testproject.shop.models import LedgerEntry
from testproject.shop.workflows import fleet, fleet_job, journal_until_message

from .conftest import Processes, database_url, wait_until
from .pgbouncer import Bouncer, pgbouncer

POOLED = "pgbouncer"  # testproject's alias for the test database through PgBouncer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=["default", POOLED]),
]

held = Queue("bouncer-held")  # no worker serves it


@pytest.fixture
def bouncer() -> Iterator[Bouncer]:
    direct = connections["default"].settings_dict
    with pgbouncer(direct["HOST"] or "127.0.0.1", int(direct["PORT"] or 5432), "postgres") as b:
        connections[POOLED].settings_dict["PORT"] = b.port
        connections[POOLED].close()
        yield b
        connections[POOLED].close()


@pytest.fixture
def through_bouncer(settings, bouncer: Bouncer) -> Bouncer:
    """This process's DBOS database is the test database through PgBouncer; LISTEN goes to the
    direct alias."""
    settings.DBOS = {
        **settings.DBOS,
        "DATABASE": POOLED,
        "PREPARED_STATEMENTS": False,
        "LISTEN_DATABASE": "default",
    }
    return bouncer


def pooled_url(bouncer: Bouncer) -> str:
    return database_url().replace(
        f":{connections['default'].settings_dict['PORT'] or 5432}/", f":{bouncer.port}/"
    )


def worker_env(bouncer: Bouncer, **extra: str) -> dict[str, str]:
    """A worker whose every Django connection goes through PgBouncer."""
    return {
        "DATABASE_URL": pooled_url(bouncer),
        "DJANGO_TRANSACTION_POOLER": "1",
        "DBOS_PREPARED_STATEMENTS": "0",
        **extra,
    }


@DBOS.step()
def double(number: int) -> int:
    return 2 * number


@DBOS.transaction()
def ledger(reference: str) -> int:
    return LedgerEntry.objects.using(POOLED).create(reference=reference, amount=1).pk


@DBOS.workflow()
def child(number: int) -> int:
    return double(number)


@DBOS.workflow()
def tour(number: int) -> dict[str, Any]:
    """A step, a transaction, an event, a stream, a child, a durable sleep and a message."""
    doubled = double(number)
    ledger(DBOS.workflow_id or "")
    DBOS.set_event("stage", "started")
    DBOS.write_stream("progress", doubled)
    DBOS.close_stream("progress")
    grandchild = DBOS.start_workflow(child, number + 1).get_result()
    DBOS.sleep(0.05)
    message = DBOS.recv("go", timeout_seconds=30)
    return {"doubled": doubled, "child": grandchild, "message": message}


@DBOS.workflow()
def waits_for_ever() -> Any:
    return DBOS.recv("never", timeout_seconds=3600)


def test_the_public_api_works_through_pgbouncer_in_transaction_mode(through_bouncer: Bouncer):
    database = connections["default"].settings_dict["NAME"]
    before = through_bouncer.transactions(database)

    with SetWorkflowID("tour-1"):
        handle = DBOS.start_workflow(tour, 21)
    assert DBOS.get_event("tour-1", "stage", timeout_seconds=30) == "started"
    assert list(DBOS.read_stream("tour-1", "progress")) == [42]
    DBOS.send("tour-1", "now", topic="go")
    assert handle.get_result() == {"doubled": 42, "child": 44, "message": "now"}
    assert LedgerEntry.objects.filter(reference="tour-1").count() == 1

    steps = [step.function_name for step in DBOS.list_workflow_steps("tour-1")]
    assert steps[:2] == [double.__dbos__.name, ledger.__dbos__.name]
    assert [w.workflow_id for w in DBOS.list_workflows(name=tour.__dbos__.name)] == ["tour-1"]

    forked = DBOS.fork_workflow("tour-1", 2)
    DBOS.send(forked.workflow_id, "again", topic="go")
    assert forked.get_result() == {"doubled": 42, "child": 44, "message": "again"}

    with SetWorkflowID("held-1"):
        held.enqueue(child, 1)
    DBOS.cancel_workflow("held-1")
    assert DBOS.get_workflow_status("held-1").status == "CANCELLED"
    DBOS.resume_workflow("held-1")
    assert DBOS.get_workflow_status("held-1").status == "ENQUEUED"
    client = DBOSClient()
    queued = client.enqueue({"queue_name": held.name, "workflow_name": child.__dbos__.name}, 3)
    assert client.retrieve_workflow(queued.workflow_id).get_status().status == "ENQUEUED"

    DBOS.delete_workflow(forked.workflow_id)
    assert DBOS.get_workflow_status(forked.workflow_id) is None
    # It all went through PgBouncer, which saw the transactions.
    assert through_bouncer.transactions(database) > before + 20


def test_a_worker_behind_pgbouncer_runs_queued_work_and_its_listener_wakes_it(
    through_bouncer: Bouncer, processes: Processes, tmp_path
):
    """With a 60 s poll, only the listener on its direct connection can make these waits end
    within the test's 30 s: the enqueues and the message wake the worker through NOTIFY."""
    worker = processes.worker(
        "--queue",
        fleet.name,
        **worker_env(through_bouncer, DBOS_LISTEN_DATABASE=database_url(), DBOS_POLL_SECONDS="60"),
    )
    wait_until(lambda: DBOS.list_queues() and _serves(fleet.name), what="the worker's heartbeat")
    handles = [fleet.enqueue(fleet_job, 0.0) for _ in range(20)]
    for handle in handles:
        assert handle.get_result(timeout=30) == handle.workflow_id
    journal = tmp_path / "journal.txt"
    waiting = fleet.enqueue(journal_until_message, str(journal))
    wait_until(lambda: journal.exists(), what="the workflow to reach its recv")
    DBOS.send(waiting.workflow_id, "go!", topic="go")
    assert waiting.get_result(timeout=30) == "go!"
    assert journal.read_text().splitlines() == ["before", "after go!"]
    assert worker.poll() is None
    assert "transaction pooler" not in Path(worker.log_path).read_text()


def test_without_a_direct_connection_the_worker_polls_and_says_so(
    through_bouncer: Bouncer, processes: Processes
):
    worker = processes.worker(
        "--queue", fleet.name, **worker_env(through_bouncer, DBOS_POLL_SECONDS="0.2")
    )
    handle = fleet.enqueue(fleet_job, 0.0)
    assert handle.get_result() == handle.workflow_id
    log = Path(worker.log_path).read_text()
    assert "goes through a transaction pooler" in log and "LISTEN_DATABASE" in log


def test_this_process_polls_without_a_direct_connection(settings, bouncer: Bouncer, caplog):
    settings.DBOS = {**settings.DBOS, "DATABASE": POOLED, "PREPARED_STATEMENTS": False}
    with caplog.at_level(logging.WARNING, logger="django_dbos"):
        with SetWorkflowID("polled"):
            handle = DBOS.start_workflow(waits_for_ever)
        threading.Timer(0.3, DBOS.send, args=("polled", "late", "never")).start()
        assert handle.get_result() == "late"
    assert not notifier.current().listening.is_set()
    assert any("transaction pooler" in record.getMessage() for record in caplog.records)


def _serves(queue: str) -> bool:
    return any(q.name == queue and q.live_workers for q in DBOS.list_queues())


def test_the_checks_name_what_a_transaction_pooler_needs(settings):
    base = dict(settings.DBOS)

    def ids(**dbos: Any) -> set[str]:
        settings.DBOS = {**base, **dbos}
        return {m.id for m in run_checks(databases=[]) if m.id and m.id.startswith("django_dbos.")}

    assert {"django_dbos.W007", "django_dbos.W009"} <= ids(DATABASE=POOLED)
    assert not {"django_dbos.W007", "django_dbos.W009"} & ids(
        DATABASE=POOLED, PREPARED_STATEMENTS=False, LISTEN_DATABASE="default"
    )
    assert "django_dbos.W008" in ids(DATABASE=POOLED, LISTEN_DATABASE=POOLED)
    assert "django_dbos.E021" in ids(DATABASE=POOLED, LISTEN_DATABASE="the direct one")
    assert "django_dbos.E021" not in ids(
        DATABASE=POOLED, LISTEN_DATABASE="postgresql://app@db.internal:5432/shop"
    )
