"""Tests of the shop's workflows, written with django-dbos's pytest plugin: a file to copy.

docs/testing.md walks through it. The fixtures come with django-dbos, no conftest needed:
`dbos` (empty system tables, the engine stopped after the test), `dbos_worker` (runs queued
work: `drain()`) and `dbos_clock` (freezes time, and skips it: `advance(minutes=5)`).
"""

from collections import Counter

import pytest

from django_dbos import SetWorkflowID
from django_dbos.testing import assert_replays, crash_at_every_step, recover, simulate_crash
from testproject.shop.models import LedgerEntry, Order
from testproject.shop.workflows import (
    PAYMENT_STATUS,
    PAYMENT_URL,
    checkout,
    fleet,
    fleet_job,
    ten_step_journal,
)


@pytest.fixture
def order(dbos):
    return Order.objects.create()


def test_a_paid_checkout_is_fulfilled(dbos, order):
    handle = dbos.start_workflow(checkout, order.pk)
    url = dbos.get_event(handle.workflow_id, PAYMENT_URL, timeout_seconds=10)
    assert url == f"/pay/{handle.workflow_id}/"

    dbos.send(handle.workflow_id, "paid", topic=PAYMENT_STATUS)

    assert handle.get_result(timeout=10) == "fulfilled"
    order.refresh_from_db()
    assert order.status == "paid"


def test_an_unpaid_checkout_is_cancelled_after_five_minutes(dbos, dbos_clock, order):
    with dbos_clock.frozen():
        handle = dbos.start_workflow(checkout, order.pk)  # waits 300 s for the payment
        dbos_clock.advance(minutes=5)  # returns at once: no one waits five minutes

        assert handle.get_result(timeout=10) == "cancelled"
    order.refresh_from_db()
    assert order.status == "cancelled"


def test_the_fleet_queue_runs_every_job(dbos_worker):
    handles = [fleet.enqueue(fleet_job, 0) for _ in range(8)]

    finished = dbos_worker.drain(timeout=30)

    assert {h.workflow_id for h in finished} == {h.workflow_id for h in handles}
    assert LedgerEntry.objects.count() == 8  # one row per job, written by a transaction


def test_a_checkout_survives_a_crash_while_it_waits_for_the_payment(dbos, order):
    # Operation 3 is set_event(PAYMENT_URL): the process dies right after publishing the URL.
    handle = simulate_crash(checkout, order.pk, at_step=3)
    assert handle.get_status().status == "PENDING"

    recover()  # what a worker does when the dead process's heartbeat stops
    dbos.send(handle.workflow_id, "paid", topic=PAYMENT_STATUS)

    assert handle.get_result(timeout=10) == "fulfilled"
    assert handle.get_status().recovery_attempts == 1
    order.refresh_from_db()
    assert order.status == "paid"


def test_a_crash_at_any_step_of_the_journal_repeats_nothing(dbos, tmp_path):
    journal = tmp_path / "journal.txt"

    def reset():
        journal.unlink(missing_ok=True)
        LedgerEntry.objects.all().delete()

    def end_state():
        return Counter(journal.read_text().splitlines()), LedgerEntry.objects.count()

    runs = crash_at_every_step(ten_step_journal, str(journal), reset=reset, end_state=end_state)

    assert len(runs) == 1 + 12  # a run without a crash, then a crash at the start and after
    lines, ledger_rows = runs[0].end_state  # each of the 11 operations: all ended alike
    assert lines == Counter({f"step {n}": 1 for n in range(1, 11)})
    assert ledger_rows == 1


def test_a_finished_checkout_still_replays_on_this_code(dbos, order):
    with SetWorkflowID(f"checkout-{order.pk}"):
        handle = dbos.start_workflow(checkout, order.pk, payment_timeout_seconds=0)
    assert handle.get_result(timeout=10) == "cancelled"

    assert_replays(handle.workflow_id)  # fails, with the difference, if an edit broke replay
