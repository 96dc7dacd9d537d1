"""The demo shop's workflows (autodiscovered by django_dbos, like admin.py)."""

import datetime
import time

from django_dbos import DBOS, Queue

from .models import LedgerEntry, Order


@DBOS.step()
def append_line(path: str, line: str, pause: float = 0.0) -> str:
    """Append a line to a file: a side effect that shows how often a step really ran."""
    time.sleep(pause)
    with open(path, "a") as f:
        f.write(line + "\n")
    return line


@DBOS.transaction()
def write_ledger_entry(reference: str, amount: int) -> int:
    """Write an app row; its checkpoint commits in the same transaction."""
    return LedgerEntry.objects.create(reference=reference, amount=amount).pk


@DBOS.workflow()
def ten_step_journal(path: str, pause: float = 0.0) -> int:
    """Ten steps that each append a line, with a ledger transaction half way."""
    for number in range(1, 11):
        append_line(path, f"step {number}", pause)
        if number == 5:
            write_ledger_entry(path, 5)
    return 10


# The checkout of the DBOS documentation ("Communicating with Workflows"): the workflow publishes
# a payment URL as an event, then waits for the payment provider's webhook as a message.

PAYMENT_URL = "payment_url"
PAYMENT_STATUS = "payment_status"


@DBOS.step()
def reserve_inventory(order_id: int) -> None:
    """Hold the order's items (a call to an inventory service in a real shop)."""


@DBOS.step()
def create_payment_session(order_id: int) -> str:
    """Open a session with the payment provider; its URL is where the customer pays."""
    return f"/pay/{DBOS.workflow_id}/"


@DBOS.transaction()
def set_order_status(order_id: int, status: str) -> None:
    Order.objects.filter(pk=order_id).update(status=status)


@DBOS.workflow()
def checkout(order_id: int, payment_timeout_seconds: float = 300) -> str:
    reserve_inventory(order_id)
    DBOS.set_event(PAYMENT_URL, create_payment_session(order_id))
    payment_status = DBOS.recv(PAYMENT_STATUS, timeout_seconds=payment_timeout_seconds)
    if payment_status == "paid":
        set_order_status(order_id, "paid")
        return "fulfilled"
    set_order_status(order_id, "cancelled")
    return "cancelled"


# A fleet of small jobs on a queue that at most four run at once, across all workers.

fleet = Queue("fleet", concurrency=4)


@DBOS.step()
def fleet_work(seconds: float) -> None:
    time.sleep(seconds)


@DBOS.workflow()
def fleet_job(seconds: float) -> str:
    fleet_work(seconds)
    write_ledger_entry(DBOS.workflow_id, 1)
    return DBOS.workflow_id


@DBOS.workflow()
def scheduled_tick(scheduled_time: datetime.datetime, context: dict | None) -> str:
    """Run by schedules made at run time (the demo's and the tests')."""
    return scheduled_time.isoformat()
