"""Streams: values in order, closing, readers that follow a live writer, and replay."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from django_dbos import (
    DBOS,
    DBOSException,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
    WorkflowStatusString,
)
from django_dbos.engine import notifier, registry, serialization, system_db
from django_dbos.models import StreamEntry, WorkflowStatus

from .conftest import wait_until
from .dead_executors import mark_dead, recover

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


class Broken(Exception):
    pass


@DBOS.step()
def wait_at(name: str) -> str:
    assert gate(name).wait(20), f"gate {name} never opened"
    return name


@DBOS.workflow()
def write_close_and_linger(gate_name: str) -> str:
    for value in [1, None, {"two": 2}, [3], "four"]:
        DBOS.write_stream("numbers", value)
    DBOS.write_stream("letters", "a")
    DBOS.close_stream("numbers")
    wait_at(gate_name)
    return "finished"


@DBOS.workflow()
def write_without_closing(values: list) -> int:
    for value in values:
        DBOS.write_stream("out", value)
    return len(values)


@DBOS.workflow()
def write_then_fail() -> None:
    DBOS.write_stream("out", "before the failure")
    raise Broken("no more")


@DBOS.workflow()
def paced_writer(prefix: str, count: int) -> None:
    wait_at(f"{prefix}-0")
    for n in range(count):
        DBOS.write_stream("paced", n)
        wait_at(f"{prefix}-{n + 1}")
    DBOS.close_stream("paced")


@DBOS.workflow()
def write_three() -> str:
    DBOS.write_stream("out", "a")
    DBOS.write_stream("out", "b")
    DBOS.write_stream("out", "c")
    DBOS.close_stream("out")
    return "written"


@DBOS.workflow()
def write_after_a_pause(gate_name: str) -> str:
    gate(gate_name).wait(20)  # plain code, not a step: nothing is recorded while it waits
    DBOS.write_stream("out", "from a stale execution")
    return "mine"


@DBOS.step()
def write_in_a_step() -> None:
    DBOS.write_stream("out", "from a step")


@DBOS.workflow()
def calls_write_stream_in_a_step() -> None:
    write_in_a_step()


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


def read_all(workflow_id: str, key: str) -> list:
    return list(DBOS.read_stream(workflow_id, key))


def entries(workflow_id: str, key: str) -> list:
    rows = StreamEntry.objects.filter(workflow_id=workflow_id, key=key).order_by("position")
    return [
        (row.position, row.function_id, row.closed, serialization.loads(row.value)) for row in rows
    ]


def test_a_reader_gets_the_values_in_order_and_stops_at_the_close():
    with SetWorkflowID("closer"):
        handle = DBOS.start_workflow(write_close_and_linger, "linger")

    values = in_thread(read_all, "closer", "numbers").result(5)

    assert values == [1, None, {"two": 2}, [3], "four"]
    # The reader stopped at the close, not at the end of the workflow.
    assert DBOS.get_workflow_status("closer").status == WorkflowStatusString.PENDING
    gate("linger").set()
    assert handle.get_result(10) == "finished"
    assert read_all("closer", "numbers") == [1, None, {"two": 2}, [3], "four"]
    assert read_all("closer", "letters") == ["a"]


def test_a_reader_stops_when_the_workflow_ends_without_closing_the_stream():
    with SetWorkflowID("unclosed"):
        assert write_without_closing(["x", "y"]) == 2

    assert in_thread(read_all, "unclosed", "out").result(5) == ["x", "y"]
    assert in_thread(read_all, "unclosed", "never-written").result(5) == []


def test_a_reader_stops_when_the_workflow_fails():
    with pytest.raises(Broken), SetWorkflowID("failed-writer"):
        write_then_fail()

    assert in_thread(read_all, "failed-writer", "out").result(5) == ["before the failure"]


def follow(workflow_id: str, received: list) -> None:
    for value in DBOS.read_stream(workflow_id, "paced"):
        received.append(value)


def follow_on_an_event_loop(workflow_id: str, received: list) -> None:
    async def main() -> None:
        async for value in DBOS.read_stream_async(workflow_id, "paced"):
            received.append(value)

    asyncio.run(main())


@pytest.mark.parametrize("reader", [follow, follow_on_an_event_loop])
def test_a_reader_started_before_the_writer_gets_each_value_as_it_is_written(reader):
    received: list = []
    workflow_id = f"paced-{reader.__name__}"
    with SetWorkflowID(workflow_id):
        writer = DBOS.start_workflow(paced_writer, workflow_id, 3)
    following = in_thread(reader, workflow_id, received)
    with pytest.raises(TimeoutError):
        following.result(0.3)  # nothing is written yet, and the stream is not closed
    assert received == []

    for n in range(3):
        gate(f"{workflow_id}-{n}").set()
        wait_until(lambda n=n: received == list(range(n + 1)), 5, f"the reader to get {n}")
        assert not following.done()
    gate(f"{workflow_id}-3").set()

    following.result(5)
    writer.get_result(5)
    assert received == [0, 1, 2]


def test_read_stream_of_an_unknown_workflow_raises():
    async def read_async() -> list:
        return [value async for value in DBOS.read_stream_async("no-such-workflow", "out")]

    with pytest.raises(DBOSNonExistentWorkflowError):
        read_all("no-such-workflow", "out")
    with pytest.raises(DBOSNonExistentWorkflowError):
        asyncio.run(read_async())


def test_writing_or_closing_a_stream_outside_a_workflow_raises_a_clear_error():
    with pytest.raises(DBOSException, match=r"DBOS\.write_stream\(\) can only be called inside"):
        DBOS.write_stream("out", 1)
    with pytest.raises(DBOSException, match=r"DBOS\.close_stream\(\) can only be called inside"):
        DBOS.close_stream("out")
    with pytest.raises(DBOSException, match="inside a workflow"), SetWorkflowID("in-a-step"):
        calls_write_stream_in_a_step()
    assert StreamEntry.objects.count() == 0


def test_a_replayed_workflow_writes_no_stream_entry_again():
    with SetWorkflowID("writer"):
        write_three()
    before = entries("writer", "out")
    WorkflowStatus.objects.filter(workflow_id="writer").update(
        status="PENDING", output=None, executor_id="dead-executor"
    )
    mark_dead("dead-executor")

    assert recover() == 1
    assert DBOS.retrieve_workflow("writer").get_result(10) == "written"

    assert entries("writer", "out") == before
    assert [(position, closed) for position, _, closed, _ in before] == [
        (0, False),
        (1, False),
        (2, False),
        (3, True),
    ]
    assert read_all("writer", "out") == ["a", "b", "c"]


def test_a_recovered_writer_continues_its_stream_after_what_it_had_written():
    # The writer's process wrote "a" (entry and checkpoint commit together), then died.
    system_db.insert_workflow(
        system_db.NewWorkflow(
            workflow_id="writer",
            name=write_three.__dbos__.name,
            status="PENDING",
            inputs=serialization.dumps_arguments((), {}),
            executor_id="dead-executor",
            application_version=registry.application_version(),
        )
    )
    system_db.write_stream(
        "writer",
        1,
        "out",
        serialization.dumps("a"),
        closed=False,
        wake_key=notifier.key("s", "writer", "out"),
    )
    assert system_db.record_operation(
        "writer", "dead-executor", 1, "DBOS.writeStream", started_at=system_db.now()
    )
    mark_dead("dead-executor")

    assert recover() == 1
    assert DBOS.retrieve_workflow("writer").get_result(10) == "written"

    assert entries("writer", "out") == [
        (0, 1, False, "a"),
        (1, 2, False, "b"),
        (2, 3, False, "c"),
        (3, 4, True, None),
    ]


def test_an_execution_that_lost_its_workflow_writes_nothing_to_its_stream():
    with SetWorkflowID("stale"):
        handle = DBOS.start_workflow(write_after_a_pause, "stale")
    # Meanwhile another executor took the workflow over and finished it.
    WorkflowStatus.objects.filter(workflow_id="stale").update(executor_id="other")
    system_db.finish_workflow("stale", "other", "SUCCESS", serialization.dumps("theirs"), None)
    gate("stale").set()

    assert handle.get_result(10) == "theirs"
    assert entries("stale", "out") == []
    assert read_all("stale", "out") == []
