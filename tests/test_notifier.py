"""The notifier: waiters wake on writes made elsewhere, fast, and after a lost connection.

The safety-net poll is set to 30 s, so on PostgreSQL only a NOTIFY (or a reconnect) can wake a
waiter within the assertions' bounds. On SQLite the same tests check the fast poll instead.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection, connections
from django.test import override_settings

from django_dbos import DBOS, SetWorkflowID
from django_dbos.engine import notifier, serialization, system_db
from django_dbos.models import StreamEntry

from .conftest import Processes, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(60),
]

ONLY_NOTIFY_WAKES = override_settings(
    DBOS={"APPLICATION_VERSION": "testproject-1", "POLL_SECONDS": 30}
)


@DBOS.workflow()
def receive_one(topic: str) -> object:
    return DBOS.recv(topic, timeout_seconds=60)


@DBOS.workflow()
def done() -> str:
    return "done"


def in_thread(func, *args):
    """Run `func` on another thread (with its own database connection); return the future."""

    def run():
        try:
            return func(*args)
        finally:
            connections.close_all()

    pool = ThreadPoolExecutor(1)
    future = pool.submit(run)
    pool.shutdown(wait=False)
    return future


def waiting_in_recv(workflow_id: str) -> bool:
    return [s.function_name for s in DBOS.list_workflow_steps(workflow_id)] == ["DBOS.sleep"]


def start_listening(is_postgres: bool) -> None:
    with notifier.current().subscribe(notifier.key("test", "warm-up")):
        pass
    if is_postgres:
        assert notifier.current().listening.wait(10), "the notifier never started listening"


def send_as_another_process_would(destination_id: str, message: object, topic: str) -> float:
    """Queue a message with the engine's write (and NOTIFY) but no local wake-up."""
    assert system_db.send_message(
        destination_id,
        topic,
        serialization.dumps(message),
        wake_key=notifier.key("m", destination_id, topic),
    )
    return time.monotonic()


def listener_pids() -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
        )
        return {row[0] for row in cursor.fetchall()}


@ONLY_NOTIFY_WAKES
def test_a_send_from_another_process_wakes_a_waiting_recv_at_once(
    processes: Processes, is_postgres: bool
):
    with SetWorkflowID("waiting"):
        handle = DBOS.start_workflow(receive_one, "ping")
    wait_until(lambda: waiting_in_recv("waiting"), 10, "the workflow to wait in recv")
    start_listening(is_postgres)

    sender = processes.python(
        "import time\n"
        "from django_dbos import DBOS\n"
        "DBOS.send('waiting', 'pong', topic='ping')\n"
        "print('sent at', repr(time.time()), flush=True)\n"
    )

    assert handle.get_result(15) == "pong"
    received_at = time.time()
    assert sender.wait(10) == 0
    sent_at = float(re.search(r"sent at (\S+)", Path(sender.log_path).read_text()).group(1))
    assert received_at - sent_at < 1.0


@ONLY_NOTIFY_WAKES
def test_a_get_event_waiter_wakes_within_a_fraction_of_a_second_of_the_write(is_postgres: bool):
    with SetWorkflowID("publisher"):
        done()
    start_listening(is_postgres)
    waiter = in_thread(DBOS.get_event, "publisher", "ready", 20)
    time.sleep(0.3)
    assert not waiter.done()

    system_db.set_event(
        "publisher",
        1,
        "ready",
        serialization.dumps("yes"),
        wake_key=notifier.key("e", "publisher", "ready"),
    )
    written_at = time.monotonic()

    assert waiter.result(5) == "yes"
    assert time.monotonic() - written_at < 1.0


@ONLY_NOTIFY_WAKES
def test_a_stream_reader_follows_a_writer_in_another_process(
    processes: Processes, is_postgres: bool
):
    start_listening(is_postgres)
    writer = processes.python(
        "from django_dbos import DBOS, SetWorkflowID\n"
        "@DBOS.workflow(name='tests.notifier.slow_writer')\n"
        "def slow_writer():\n"
        "    DBOS.write_stream('out', 1)\n"
        "    DBOS.sleep(0.5)\n"
        "    DBOS.write_stream('out', 2)\n"
        "    DBOS.sleep(0.5)\n"
        "with SetWorkflowID('remote-writer'):\n"
        "    slow_writer()\n"
    )
    wait_until(
        lambda: StreamEntry.objects.filter(workflow_id="remote-writer").exists(),
        15,
        "the other process to write its first value",
    )
    started = time.monotonic()

    # Without a NOTIFY for the second value and for the end, this would wait for 30 s polls.
    assert in_thread(lambda: list(DBOS.read_stream("remote-writer", "out"))).result(10) == [1, 2]
    assert time.monotonic() - started < 3
    assert writer.wait(10) == 0


@pytest.mark.postgres
@ONLY_NOTIFY_WAKES
def test_the_notifier_reconnects_after_its_connection_is_killed_and_still_wakes_waiters():
    start_listening(True)
    (old_pid,) = wait_until(listener_pids, 5, "the LISTEN connection to show")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [old_pid])
        assert cursor.fetchone()[0] is True

    new_pids = wait_until(
        lambda: (pids := listener_pids()) and old_pid not in pids and pids,
        10,
        "the notifier to LISTEN on a new connection",
    )
    assert len(new_pids) == 1
    assert notifier.current().listening.wait(5)

    with SetWorkflowID("after-reconnect"):
        handle = DBOS.start_workflow(receive_one, "ping")
    wait_until(lambda: waiting_in_recv("after-reconnect"), 10, "the workflow to wait in recv")
    time.sleep(0.2)
    sent_at = send_as_another_process_would("after-reconnect", "still here", "ping")

    assert handle.get_result(5) == "still here"
    assert time.monotonic() - sent_at < 1.0


@pytest.mark.postgres
@ONLY_NOTIFY_WAKES
def test_waiters_are_woken_to_look_again_when_the_notifier_reconnects():
    """A NOTIFY sent while the listener was away is lost: after a reconnect, everyone looks."""
    start_listening(True)
    with SetWorkflowID("missed"):
        handle = DBOS.start_workflow(receive_one, "ping")
    wait_until(lambda: waiting_in_recv("missed"), 10, "the workflow to wait in recv")
    # A message whose NOTIFY this process never hears (as if sent while it was disconnected).
    assert system_db.send_message("missed", "ping", serialization.dumps("late"), wake_key="")
    time.sleep(0.3)
    with pytest.raises(TimeoutError):
        handle.get_result(0.01)  # not woken: the message's NOTIFY was never sent
    (old_pid,) = listener_pids()
    killed_at = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [old_pid])

    assert handle.get_result(10) == "late"
    assert time.monotonic() - killed_at < 5


def test_a_subscription_is_woken_only_by_its_own_keys():
    listener = notifier.current()
    with listener.subscribe(notifier.key("m", "a", "t")) as event:
        listener.wake(notifier.key("m", "a", "other"))
        listener.wake(notifier.key("m", "b", "t"))
        assert not event.is_set()
        threading.Timer(0.1, listener.wake, [notifier.key("m", "a", "t")]).start()
        assert event.wait(5)
