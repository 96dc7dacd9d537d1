"""The demo shop's workflows (autodiscovered by django_dbos, like admin.py)."""

import datetime
import time

from django_dbos import DBOS, Queue

from .forms import RefundDecisionForm
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


@DBOS.workflow()
def journal_until_message(path: str) -> object:
    """Append a line, wait an hour at most for a message on "go" (parked: no thread held),
    then append another."""
    append_line(path, "before")
    message = DBOS.recv("go", timeout_seconds=3600)
    append_line(path, f"after {message}")
    return message


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


# A refund that a person decides in the admin's inbox (docs/inbox.md): the workflow waits, with
# no thread held, until someone answers with the form; the answer is its cleaned_data.

REFUND_DECISION = "refund_decision"


@DBOS.workflow()
def refund_request(order_id: int, wait_seconds: float = 7 * 24 * 3600) -> dict | None:
    """Ask a person to decide a refund; refund the order if they approve. Returns the decision
    (None when nobody answered in time)."""
    decision = DBOS.recv(REFUND_DECISION, timeout_seconds=wait_seconds, form=RefundDecisionForm)
    if decision is not None and decision["approved"]:
        set_order_status(order_id, "refunded")
    return decision


# A fleet of small jobs on a queue that at most four run at once, across all workers.

fleet = Queue("fleet", concurrency=4)
# No limits: as many workflows at once as a worker has threads (tests/test_connection_pool.py).
bulk = Queue("bulk")


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


# The demo's checkout: the same flow as `checkout` above, run by the worker from a queue, with a
# pause in each step (so that there is time to crash the worker) and its progress written to a
# stream that the demo page follows live.

checkouts = Queue("checkout", worker_concurrency=10)
DEMO_STEP_SECONDS = 1.0


@DBOS.step()
def demo_step(order_id: int, title: str, seconds: float) -> str:
    """One visible step of the demo: counted in a ledger so the page can show it ran once."""
    time.sleep(seconds)
    LedgerEntry.objects.create(reference=f"demo-step:{order_id}:{title}", amount=1)
    return title


def _progress(title: str, state: str) -> None:
    DBOS.write_stream("progress", {"step": title, "state": state})


@DBOS.workflow()
def demo_checkout(order_id: int, step_seconds: float = DEMO_STEP_SECONDS) -> str:
    for title in ("Validate the order", "Reserve the items"):
        _progress(title, "done" if demo_step(order_id, title, step_seconds) else "")
    DBOS.set_event(PAYMENT_URL, f"/pay/{DBOS.workflow_id}/")
    _progress("Wait for the payment", "waiting")
    payment_status = DBOS.recv(PAYMENT_STATUS, timeout_seconds=600)
    if payment_status != "paid":
        set_order_status(order_id, "cancelled")
        _progress("Payment declined", "done")
        DBOS.close_stream("progress")
        return "cancelled"
    _progress("Wait for the payment", "done")
    for title in ("Capture the payment", "Pack the parcel", "Hand it to the carrier"):
        _progress(title, "done" if demo_step(order_id, title, step_seconds) else "")
    set_order_status(order_id, "fulfilled")
    DBOS.close_stream("progress")
    return "fulfilled"


# The fan-out demo: many small workflows on a rate-limited queue.

fanout = Queue("fanout", limiter={"limit": 10, "period": 1})


@DBOS.step()
def fanout_work(number: int) -> int:
    time.sleep(0.2)
    return number * number


@DBOS.workflow()
def fanout_job(number: int) -> int:
    return fanout_work(number)


# An async workflow for the async view of tests/test_asgi.py (served by uvicorn).


@DBOS.step()
async def tax(amount: int) -> int:
    return amount // 5


@DBOS.workflow()
async def quote(amount: int) -> dict:
    """A price with its tax, computed by an async step."""
    return {"amount": amount, "tax": await tax(amount)}


# The workflows of the deploy tests, registered with the shop's.
from . import deploys  # noqa: E402, F401
