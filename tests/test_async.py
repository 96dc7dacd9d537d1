"""Async workflows and steps: they run on an event loop, hold no thread while they wait, and keep
every durable rule of sync ones (checkpoints, replay, recovery, queues, cancellation)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
from django.urls import path

from django_dbos import DBOS, Queue, SetWorkflowID
from django_dbos.errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConfigurationError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
)
from django_dbos.models import OperationOutput, WorkflowStatus

from .conftest import wait_until
from .dead_executors import leave_behind, recover
from .inprocess_worker import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

ran: Counter[str] = Counter()
async_queue = Queue("async-tests")


@pytest.fixture(autouse=True)
def _count_afresh():
    ran.clear()


@DBOS.step()
async def fetch(label: str) -> str:
    await asyncio.sleep(0)
    ran[label] += 1
    return label.upper()


@DBOS.step()
def sync_fetch(label: str) -> str:
    ran[label] += 1
    return label


@DBOS.workflow()
async def two_fetches(label: str) -> list[str]:
    return [await fetch(f"{label}-1"), await fetch(f"{label}-2")]


@DBOS.workflow()
async def wait_for_message(label: str) -> str:
    await fetch(f"{label} before")
    message = await DBOS.recv_async("go", timeout_seconds=3600)
    await fetch(f"{label} after")
    return f"{label} got {message}"


@DBOS.workflow()
async def nap(seconds: float) -> str:
    await DBOS.sleep_async(seconds)
    return await fetch("after nap")


@DBOS.workflow()
async def publish_then_wait(value: str) -> object:
    await DBOS.set_event_async("ready", value)
    return await DBOS.recv_async("never", timeout_seconds=0.2)


@DBOS.workflow()
async def read_event(workflow_id: str) -> object:
    return await DBOS.get_event_async(workflow_id, "ready", timeout_seconds=10)


@DBOS.workflow()
def sync_sender(destination_id: str) -> None:
    DBOS.send(destination_id, "from a sync workflow", topic="go")


@DBOS.workflow()
async def calls_a_sync_step_directly() -> str:
    return sync_fetch("direct")


@DBOS.workflow()
async def calls_a_sync_step_in_a_thread() -> str:
    return await asyncio.to_thread(sync_fetch, "threaded")


attempts: list[int] = []


@DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=3)
async def flaky() -> str:
    attempts.append(1)
    if len(attempts) < 3:
        raise ConnectionError("try again")
    return "third time lucky"


@DBOS.step(retries_allowed=True, interval_seconds=0.01, max_attempts=2)
async def hopeless() -> str:
    raise ConnectionError("never")


@DBOS.workflow()
async def retrying(step: str) -> str:
    return await (flaky() if step == "flaky" else hopeless())


def steps_of(workflow_id: str) -> list[str]:
    return list(
        OperationOutput.objects.filter(workflow_id=workflow_id)
        .order_by("function_id")
        .values_list("function_name", flat=True)
    )


def test_an_async_workflow_called_directly_runs_its_async_steps_and_checkpoints_them():
    async def main() -> list[str]:
        with SetWorkflowID("inline-async"):
            return await two_fetches("a")

    assert asyncio.run(main()) == ["A-1", "A-2"]
    assert steps_of("inline-async") == [fetch.__dbos__.name] * 2
    assert WorkflowStatus.objects.get(workflow_id="inline-async").status == "SUCCESS"


def test_the_same_workflow_id_runs_once_and_replays_its_result():
    async def main() -> tuple[list[str], list[str]]:
        with SetWorkflowID("once"):
            first = await two_fetches("b")
        with SetWorkflowID("once"):
            second = await two_fetches("b")
        return first, second

    assert asyncio.run(main()) == (["B-1", "B-2"], ["B-1", "B-2"])
    assert ran == {"b-1": 1, "b-2": 1}


def test_start_workflow_async_runs_on_the_engine_loop_and_both_kinds_of_wait_see_the_result():
    async def main() -> tuple[str, object]:
        handle = await DBOS.start_workflow_async(wait_for_message, "c")
        await DBOS.send_async(handle.workflow_id, "hello", topic="go")
        return await handle.get_result_async(timeout=10), handle

    result, handle = asyncio.run(main())
    assert result == "c got hello"
    assert handle.get_result(timeout=1) == "c got hello"
    assert asyncio.run(handle.get_status_async()).status == "SUCCESS"
    assert ran == {"c before": 1, "c after": 1}


def test_two_hundred_async_workflows_wait_for_messages_without_a_thread_each():
    threads_before = threading.active_count()
    handles = [DBOS.start_workflow(wait_for_message, f"w{i}") for i in range(200)]
    wait_until(lambda: ran.total() == 200, timeout=60, what="every workflow to reach its recv")

    assert threading.active_count() - threads_before < 20
    for i, handle in enumerate(handles):
        DBOS.send(handle.workflow_id, i, topic="go")
    assert [handle.get_result(timeout=60) for handle in handles] == [
        f"w{i} got {i}" for i in range(200)
    ]
    assert set(ran.values()) == {1}


def test_sleep_async_is_durable_and_a_sync_workflow_can_message_an_async_one():
    handle = DBOS.start_workflow(nap, 0.2)
    assert handle.get_result(timeout=10) == "AFTER NAP"
    assert steps_of(handle.workflow_id)[0] == "DBOS.sleep"

    waiter = DBOS.start_workflow(wait_for_message, "d")
    DBOS.start_workflow(sync_sender, waiter.workflow_id).get_result(timeout=10)
    assert waiter.get_result(timeout=10) == "d got from a sync workflow"


def test_events_between_async_workflows_and_from_outside():
    with SetWorkflowID("publisher"):
        publisher = DBOS.start_workflow(publish_then_wait, "green")
    reader = DBOS.start_workflow(read_event, "publisher")
    assert reader.get_result(timeout=10) == "green"
    assert publisher.get_result(timeout=10) is None
    assert asyncio.run(DBOS.get_event_async("publisher", "ready", timeout_seconds=1)) == "green"


def test_an_async_step_is_retried_with_backoff_then_gives_up():
    attempts.clear()
    assert DBOS.start_workflow(retrying, "flaky").get_result(timeout=10) == "third time lucky"
    assert len(attempts) == 3
    with pytest.raises(DBOSMaxStepRetriesExceeded):
        DBOS.start_workflow(retrying, "hopeless").get_result(timeout=10)


def test_a_sync_step_needs_a_thread_in_an_async_workflow():
    with pytest.raises(DBOSException, match=r"asyncio\.to_thread"):
        DBOS.start_workflow(calls_a_sync_step_directly).get_result(timeout=10)
    handle = DBOS.start_workflow(calls_a_sync_step_in_a_thread)
    assert handle.get_result(timeout=10) == "threaded"
    assert steps_of(handle.workflow_id) == [sync_fetch.__dbos__.name]


def test_an_async_transaction_is_refused():
    with pytest.raises(DBOSConfigurationError, match="async def"):

        @DBOS.transaction()
        async def write() -> None: ...


def test_cancelling_an_async_workflow_that_waits_ends_it():
    handle = DBOS.start_workflow(wait_for_message, "e")
    wait_until(lambda: ran["e before"], what="the workflow to wait")
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(timeout=10)
    assert ran == {"e before": 1}


def test_a_worker_dequeues_async_and_sync_workflows_side_by_side():
    async def enqueue() -> list:
        return [
            await async_queue.enqueue_async(two_fetches, "q"),
            await async_queue.enqueue_async(sync_sender, "nobody-listens"),
        ]

    with running_worker(queues=["async-tests"], scheduler=False, recovery=False):
        async_handle, sync_handle = asyncio.run(enqueue())
        assert async_handle.get_result(timeout=20) == ["Q-1", "Q-2"]
        with pytest.raises(DBOSException):  # sync_sender sends to a workflow that is missing
            sync_handle.get_result(timeout=20)


def test_an_async_workflow_of_a_dead_process_is_recovered_after_its_last_step():
    leave_behind("orphan", two_fetches, ("r",), [(1, fetch.__dbos__.name, "R-1")])

    assert recover() == 1

    wait_until(
        lambda: WorkflowStatus.objects.get(workflow_id="orphan").status == "SUCCESS",
        what="the recovered workflow to finish",
    )
    assert ran == {"r-2": 1}  # step 1 was replayed, not run


async def start_and_wait(request):
    from django.http import JsonResponse

    handle = await DBOS.start_workflow_async(two_fetches, request.GET["label"])
    return JsonResponse({"result": await handle.get_result_async(timeout=10)})


urlpatterns = [path("start/", start_and_wait)]


@pytest.mark.urls(__name__)
def test_a_django_async_view_starts_a_workflow_and_awaits_it(client):
    response = client.get("/start/?label=view")
    assert response.json() == {"result": ["VIEW-1", "VIEW-2"]}


@DBOS.workflow()
async def stream_two() -> str:
    await DBOS.write_stream_async("numbers", 1)
    await DBOS.write_stream_async("numbers", 2)
    await DBOS.close_stream_async("numbers")
    return "streamed"


def test_the_managing_functions_have_async_forms():
    async def main() -> None:
        with SetWorkflowID("streamer"):
            handle = await DBOS.start_workflow_async(stream_two)
        assert await handle.get_result_async(timeout=10) == "streamed"
        read = await asyncio.to_thread(lambda: list(DBOS.read_stream("streamer", "numbers")))
        assert read == [1, 2]
        assert (await DBOS.get_workflow_status_async("streamer")).status == "SUCCESS"
        assert (await DBOS.retrieve_workflow_async("streamer")).workflow_id == "streamer"
        steps = await DBOS.list_workflow_steps_async("streamer")
        assert [step.function_name for step in steps] == ["DBOS.writeStream"] * 2 + [
            "DBOS.closeStream"
        ]
        listed = await DBOS.list_workflows_async(workflow_ids=["streamer"])
        assert [status.workflow_id for status in listed] == ["streamer"]
        forked = await DBOS.fork_workflow_async("streamer", 3)
        assert await forked.get_result_async(timeout=10) == "streamed"

        waiting = await DBOS.start_workflow_async(wait_for_message, "f")
        await DBOS.cancel_workflow_async(waiting.workflow_id)
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await waiting.get_result_async(timeout=10)
        assert [s.workflow_id for s in await DBOS.list_queued_workflows_async()] == []

    asyncio.run(main())
