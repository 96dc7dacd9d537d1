"""Messages: send and recv, FIFO per topic, timeouts, exactly-once sends, and crashes."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from django.db import transaction

from django_dbos import (
    DBOS,
    DBOSException,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
    WorkflowStatusString,
)
from django_dbos.engine import notifier, serialization, system_db
from django_dbos.models import Notification, WorkflowStatus

from .conftest import Processes, wait_until
from .dead_executors import leave_behind, pretend_its_process_died, recover

pytestmark = pytest.mark.django_db(transaction=True)

gates: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return gates.setdefault(name, threading.Event())


@pytest.fixture(autouse=True)
def _open_gates_at_the_end():
    yield
    for event in gates.values():
        event.set()
    gates.clear()


@DBOS.step()
def wait_at(name: str) -> str:
    """A step that blocks until the test opens the gate `name`."""
    assert gate(name).wait(20), f"gate {name} never opened"
    return name


@DBOS.workflow()
def receive(count: int, topic: str | None = None, timeout: float = 10) -> list:
    return [DBOS.recv(topic, timeout_seconds=timeout) for _ in range(count)]


@DBOS.workflow()
def receive_after(gate_name: str, count: int, topic: str | None = None) -> list:
    wait_at(gate_name)
    return [DBOS.recv(topic, timeout_seconds=10) for _ in range(count)]


@DBOS.workflow()
def receive_by_topic(gate_name: str) -> list:
    wait_at(gate_name)
    return [
        DBOS.recv(timeout_seconds=0.2),
        DBOS.recv(timeout_seconds=0.2),
        DBOS.recv("a", timeout_seconds=0.2),
        DBOS.recv("a", timeout_seconds=0.2),
        DBOS.recv("b", timeout_seconds=0.2),
    ]


@DBOS.workflow()
def send_two(destination_id: str) -> str:
    DBOS.send(destination_id, "one")
    DBOS.send(destination_id, "two")
    return "sent"


@DBOS.workflow()
def send_to(destination_id: str) -> None:
    DBOS.send(destination_id, "lost")


@DBOS.workflow()
def send_after_a_pause(gate_name: str, destination_id: str) -> str:
    gate(gate_name).wait(20)  # plain code, not a step: nothing is recorded while it waits
    DBOS.send(destination_id, "from a stale execution")
    return "mine"


@DBOS.workflow()
def done() -> str:
    return "done"


@DBOS.step()
def recv_in_a_step() -> object:
    return DBOS.recv(timeout_seconds=0.1)


@DBOS.workflow()
def calls_recv_in_a_step() -> object:
    return recv_in_a_step()


# Registered here and, under the same name, in the processes of the kill -9 test.
@DBOS.workflow(name="tests.messages.wait_for_go")
def wait_for_go() -> object:
    return DBOS.recv("go", timeout_seconds=120)


def messages_to(workflow_id: str) -> list:
    rows = Notification.objects.filter(destination_id=workflow_id).order_by("id")
    return [serialization.loads(row.message) for row in rows]


def send_raw(destination_id: str, message: object, topic: str = "") -> None:
    """Queue a message as a send by another process would (no local wake-up here)."""
    assert system_db.send_message(
        destination_id,
        topic,
        serialization.dumps(message),
        wake_key=notifier.key("m", destination_id, topic),
    )


# FIFO and topics ------------------------------------------------------------------------------


def test_messages_sent_before_recv_are_kept_and_received_in_the_order_sent():
    with SetWorkflowID("fifo"):
        handle = DBOS.start_workflow(receive_after, "fifo", 5)
    for n in range(5):
        DBOS.send("fifo", {"n": n})
    assert len(messages_to("fifo")) == 5  # queued while the workflow is still in its step

    gate("fifo").set()

    assert handle.get_result(10) == [{"n": n} for n in range(5)]
    assert Notification.objects.filter(destination_id="fifo", consumed_at=None).count() == 0


def test_messages_sent_while_the_workflow_waits_arrive_in_order():
    handle = DBOS.start_workflow(receive, 3, "t")
    wait_until(
        lambda: any(
            s.function_name == "DBOS.sleep" for s in DBOS.list_workflow_steps(handle.workflow_id)
        ),
        10,
        "the workflow to wait in recv",
    )
    for value in ("first", "second", "third"):
        DBOS.send(handle.workflow_id, value, topic="t")

    assert handle.get_result(10) == ["first", "second", "third"]


def test_topics_are_isolated_from_each_other_and_from_messages_without_a_topic():
    with SetWorkflowID("topics"):
        handle = DBOS.start_workflow(receive_by_topic, "topics")
    DBOS.send("topics", "for a")
    DBOS.send("topics", "on a", topic="a")
    DBOS.send("topics", "plain")  # "for a" and "plain" have no topic
    DBOS.send("topics", "on c", topic="c")
    gate("topics").set()

    assert handle.get_result(10) == ["for a", "plain", "on a", None, None]
    unconsumed = Notification.objects.filter(destination_id="topics", consumed_at=None)
    assert [(n.topic, serialization.loads(n.message)) for n in unconsumed] == [("c", "on c")]


def test_recv_returns_none_when_its_short_timeout_passes():
    started = time.monotonic()
    result = receive(1, "nothing-comes", 0.2)
    elapsed = time.monotonic() - started

    assert result == [None]
    assert 0.2 <= elapsed < 3


def test_recv_with_zero_timeout_returns_a_waiting_message_or_none():
    with SetWorkflowID("zero"):
        handle = DBOS.start_workflow(receive_after, "zero", 0)
    DBOS.send("zero", "waiting")
    gate("zero").set()
    handle.get_result(10)

    assert receive(1, None, 0) == [None]


def test_recv_outside_a_workflow_raises_a_clear_error():
    with pytest.raises(DBOSException, match=r"DBOS\.recv\(\) can only be called inside a workflow"):
        DBOS.recv(timeout_seconds=0.1)


def test_recv_inside_a_step_raises_a_clear_error():
    with pytest.raises(DBOSException, match=r"inside a workflow"):
        calls_recv_in_a_step()


def test_recv_refuses_a_negative_timeout():
    with pytest.raises(ValueError, match="negative"):
        receive(1, None, -1)


# Sending --------------------------------------------------------------------------------------


def test_send_to_an_unknown_workflow_raises_and_writes_nothing():
    before = Notification.objects.count()

    with pytest.raises(DBOSNonExistentWorkflowError, match="no-such-workflow"):
        DBOS.send("no-such-workflow", "hello")

    assert Notification.objects.count() == before


def test_a_workflow_that_sends_to_an_unknown_workflow_fails_and_writes_nothing():
    with pytest.raises(DBOSNonExistentWorkflowError), SetWorkflowID("sends-nowhere"):
        send_to("no-such-workflow")

    assert Notification.objects.count() == 0
    assert DBOS.get_workflow_status("sends-nowhere").status == WorkflowStatusString.ERROR
    assert DBOS.list_workflow_steps("sends-nowhere") == []


def test_a_workflow_run_again_with_its_id_sends_nothing_more():
    with SetWorkflowID("inbox"):
        done()
    with SetWorkflowID("sender"):
        assert send_two("inbox") == "sent"
    with SetWorkflowID("sender"):
        assert send_two("inbox") == "sent"
    with SetWorkflowID("sender"):
        assert DBOS.start_workflow(send_two, "inbox").get_result(10) == "sent"

    assert messages_to("inbox") == ["one", "two"]


def test_a_recovered_sender_does_not_send_again_what_it_had_sent():
    with SetWorkflowID("inbox"):
        receiver = DBOS.start_workflow(receive, 3, None, 0.5)
    # The sender's process sent "one" (message and checkpoint commit together), then died.
    send_raw("inbox", "one")
    leave_behind("sender", send_two, ("inbox",), [(1, "DBOS.send", None)])

    assert recover() == 1

    assert DBOS.retrieve_workflow("sender").get_result(10) == "sent"
    assert receiver.get_result(10) == ["one", "two", None]
    assert messages_to("inbox") == ["one", "two"]


def test_a_replayed_sender_sends_nothing_again():
    with SetWorkflowID("inbox"):
        done()
    with SetWorkflowID("sender"):
        send_two("inbox")
    pretend_its_process_died("sender")

    assert recover() == 1

    assert DBOS.retrieve_workflow("sender").get_result(10) == "sent"
    assert messages_to("inbox") == ["one", "two"]
    assert DBOS.get_workflow_status("sender").recovery_attempts == 1


def test_an_execution_that_lost_its_workflow_sends_nothing():
    with SetWorkflowID("inbox"):
        done()
    with SetWorkflowID("stale"):
        handle = DBOS.start_workflow(send_after_a_pause, "stale", "inbox")
    # Meanwhile another executor took the workflow over and finished it.
    WorkflowStatus.objects.filter(workflow_id="stale").update(executor_id="other")
    system_db.finish_workflow("stale", "other", "SUCCESS", serialization.dumps("theirs"), None)
    gate("stale").set()

    assert handle.get_result(10) == "theirs"
    assert messages_to("inbox") == []
    assert DBOS.list_workflow_steps("stale") == []


# Crashes --------------------------------------------------------------------------------------


def test_a_message_consumed_before_a_crash_is_neither_consumed_again_nor_lost():
    leave_behind("crashed-receiver", receive, (2, None, 10), [])
    send_raw("crashed-receiver", "first")
    send_raw("crashed-receiver", "second")
    send_raw("crashed-receiver", "third")
    # The dead process had consumed "first" and recorded it as its first recv.
    with transaction.atomic(using=system_db.alias()):
        consumed = system_db.consume_message("crashed-receiver", "")
        assert system_db.record_operation(
            "crashed-receiver",
            "dead-executor",
            2,
            "DBOS.recv",
            output=consumed,
            started_at=system_db.now(),
        )

    assert recover() == 1

    assert DBOS.retrieve_workflow("crashed-receiver").get_result(10) == ["first", "second"]
    left = Notification.objects.filter(destination_id="crashed-receiver", consumed_at=None)
    assert [serialization.loads(n.message) for n in left] == ["third"]


def test_a_recv_that_timed_out_stays_timed_out_on_replay_and_leaves_later_messages():
    with SetWorkflowID("impatient"):
        assert receive(1, None, 0.1) == [None]
    DBOS.send("impatient", "too late")
    pretend_its_process_died("impatient")

    assert recover() == 1

    assert DBOS.retrieve_workflow("impatient").get_result(10) == [None]
    (message,) = Notification.objects.filter(destination_id="impatient")
    assert message.consumed_at is None


def test_a_recovered_recv_waits_only_for_what_was_left_of_its_timeout():
    leave_behind(
        "timed-receiver", receive, (1, "never", 300), [(1, "DBOS.sleep", time.time() + 1.0)]
    )
    started = time.monotonic()

    assert recover() == 1

    assert DBOS.retrieve_workflow("timed-receiver").get_result(10) == [None]
    assert 0.8 <= time.monotonic() - started < 5  # the code says timeout_seconds=300
    assert [
        (s.function_id, s.function_name, s.output)
        for s in DBOS.list_workflow_steps("timed-receiver")
    ][1:] == [(2, "DBOS.recv", None)]


WAIT_FOR_GO = """
from django_dbos import DBOS

@DBOS.workflow(name="tests.messages.wait_for_go")
def wait_for_go():
    return DBOS.recv("go", timeout_seconds=120)
"""


def test_a_recv_survives_kill_9_and_gets_the_message_sent_while_it_was_dead(
    processes: Processes,
):
    first = processes.python(
        WAIT_FOR_GO
        + "from django_dbos import SetWorkflowID\n"
        + "with SetWorkflowID('kill-recv'):\n"
        + "    DBOS.start_workflow(wait_for_go).get_result()\n"
    )
    wait_until(
        lambda: [s.function_name for s in DBOS.list_workflow_steps("kill-recv")] == ["DBOS.sleep"],
        30,
        "the first process to wait in recv",
    )
    assert DBOS.get_workflow_status("kill-recv").status == WorkflowStatusString.PENDING
    first.send_signal(signal.SIGKILL)
    first.wait(10)

    DBOS.send("kill-recv", {"order": 42}, topic="go")

    processes.python(
        WAIT_FOR_GO
        + "import time\n"
        + "from django_dbos.engine import executor\n"
        + "from django_dbos.engine.recovery import Recovery\n"
        + "process = executor.current()\n"
        + "process.ensure_started()\n"
        + "recovery = Recovery(process)\n"
        + "while not recovery.recover_dead():\n"
        + "    time.sleep(0.1)\n"
        + "print('recovered', DBOS.retrieve_workflow('kill-recv').get_result(60), flush=True)\n"
    )
    wait_until(
        lambda: DBOS.get_workflow_status("kill-recv").status == WorkflowStatusString.SUCCESS,
        30,
        "a second process to recover and finish the workflow",
    )

    status = DBOS.get_workflow_status("kill-recv")
    assert status.output == {"order": 42}
    assert status.recovery_attempts == 1
    (message,) = Notification.objects.filter(destination_id="kill-recv")
    assert message.consumed_at is not None
    steps = DBOS.list_workflow_steps("kill-recv")
    assert [(s.function_id, s.function_name) for s in steps] == [
        (1, "DBOS.sleep"),
        (2, "DBOS.recv"),
    ]
