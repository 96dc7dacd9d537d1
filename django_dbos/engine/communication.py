"""Messages (send/recv), events (set_event/get_event) and streams between workflows and the world.

Every write made from a workflow commits together with its checkpoint, so replay never repeats
it; every wait subscribes to the notifier first and then checks the database.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, cast

from django.db import transaction

from ..errors import DBOSException, DBOSNonExistentWorkflowError
from ..types import Status
from . import (
    after_commit,
    aio,
    answer_forms,
    cancellation,
    clock,
    notifier,
    serialization,
    system_db,
    tracing,
    validation,
)
from .context import WorkflowContext, workflow_context
from .notifier import key as wake_key
from .steps import replayed
from .timers import SLEEP, durable_deadline, park_if_long, utc
from .workflows import next_operation, next_operation_async, record_operation

SEND = "DBOS.send"
RECV = "DBOS.recv"
SET_EVENT = "DBOS.setEvent"
GET_EVENT = "DBOS.getEvent"
WRITE_STREAM = "DBOS.writeStream"
CLOSE_STREAM = "DBOS.closeStream"

T = TypeVar("T")


def _inside_workflow(operation: str) -> WorkflowContext:
    ctx = workflow_context()
    if ctx is None:
        raise DBOSException(
            f"DBOS.{operation}() can only be called inside a workflow (not in a step or outside)."
        )
    return ctx


def _record_with(ctx: WorkflowContext, function_id: int, name: str, write: Callable[[], T]) -> T:
    """Run a write and record the operation in one transaction: it happens exactly once."""
    with transaction.atomic(using=system_db.alias()):
        result = write()
        record_operation(ctx, function_id, name)
    return result


def _publish(ctx: WorkflowContext, name: str, announce: str, write: Callable[[int], Any]) -> None:
    """Make a workflow's write (an event, a stream value) once: `write(function_id)` and its
    record in one transaction, nothing on replay; then wake the readers of `announce`."""
    function_id = next_operation(ctx)
    if replayed(ctx, function_id, name)[0]:
        return
    _record_with(ctx, function_id, name, lambda: write(function_id))
    notifier.current().wake(announce)


# Messages -------------------------------------------------------------------------------------


def send(
    destination_id: str,
    message: Any,
    topic: str | None = None,
    idempotency_key: str | None = None,
) -> None:
    """Queue a message for a workflow; exactly once when sent from a workflow, or with an
    idempotency key (a second send with the same key to the same workflow delivers nothing)."""
    validation.workflow_id(destination_id)
    topic = "" if topic is None else validation.name(topic, "topic")
    if idempotency_key is not None:
        validation.name(idempotency_key, "idempotency_key", allow_empty=False)
    text = serialization.dumps(message, "message")
    key = wake_key("m", destination_id, topic)

    def write() -> None:
        if not system_db.send_message(
            destination_id, topic, text, wake_key=key, idempotency_key=idempotency_key
        ):
            raise DBOSNonExistentWorkflowError(
                f"Cannot send to workflow {destination_id!r}: there is no workflow with that id."
            )

    ctx = workflow_context()
    if ctx is None:
        with tracing.message_span("send", topic, destination_id, None):
            write()
    else:
        function_id = next_operation(ctx)
        if replayed(ctx, function_id, SEND)[0]:
            return
        with tracing.message_span("send", topic, destination_id, function_id):
            _record_with(ctx, function_id, SEND, write)
    notifier.current().wake(key)


def recv(topic: str | None = None, timeout_seconds: float = 60, form: Any = None) -> Any:
    """Wait for and consume the next message on a topic; None when the timeout passes."""
    ctx = _inside_workflow("recv")
    topic = "" if topic is None else validation.name(topic, "topic")
    timeout = validation.duration(timeout_seconds, "timeout_seconds")
    form_path = answer_forms.form_path(form)
    deadline_id, function_id = next_operation(ctx), ctx.next_function_id()
    done, result = replayed(ctx, function_id, RECV)
    if done:
        return result
    listed = _may_be_listed(ctx, deadline_id)
    keys = (wake_key("m", ctx.workflow_id, topic), wake_key("c", ctx.workflow_id))
    waiting = f"waiting for a message on topic {topic!r}" if topic else "waiting for a message"
    with (
        tracing.message_span("recv", topic, ctx.workflow_id, function_id),
        notifier.current().subscribe(*keys) as event,
    ):
        deadline = None
        while True:
            message = _consume(ctx, function_id, topic, listed)
            if message is not None:
                return serialization.loads(message)
            if deadline is None:
                deadline = _begin_wait(ctx, deadline_id, function_id, topic, form_path, timeout)
                listed = True
            remaining = deadline - clock.time()
            if remaining <= 0:
                _time_out(ctx, function_id)
                return None
            park_if_long(ctx, event, remaining, keys, deadline, waiting)
            cancellation.wait(ctx, event, remaining)


async def recv_async(
    topic: str | None = None, timeout_seconds: float = 60, form: Any = None
) -> Any:
    """`recv` for async workflows: it waits on the event loop, holding no thread."""
    ctx = _inside_workflow("recv_async")
    topic = "" if topic is None else validation.name(topic, "topic")
    timeout = validation.duration(timeout_seconds, "timeout_seconds")
    form_path = answer_forms.form_path(form)
    deadline_id = await next_operation_async(ctx)
    function_id = ctx.next_function_id()
    done, result = replayed(ctx, function_id, RECV)
    if done:
        return result
    listed = _may_be_listed(ctx, deadline_id)
    keys = (wake_key("m", ctx.workflow_id, topic), wake_key("c", ctx.workflow_id))
    with (
        tracing.message_span("recv", topic, ctx.workflow_id, function_id),
        notifier.current().subscribe(*keys, waiter=aio.LoopEvent()) as event,
    ):
        deadline = None
        while True:
            message = await aio.run_sync(_consume, ctx, function_id, topic, listed)
            if message is not None:
                return serialization.loads(message)
            if deadline is None:
                deadline = await aio.run_sync(
                    _begin_wait, ctx, deadline_id, function_id, topic, form_path, timeout
                )
                listed = True
            remaining = deadline - clock.time()
            if remaining <= 0:
                await aio.run_sync(_time_out, ctx, function_id)
                return None
            await cancellation.wait_async(ctx, event, remaining)


def _may_be_listed(ctx: WorkflowContext, deadline_id: int) -> bool:
    """Whether an earlier run of this recv began to wait, and so listed it in the inbox: its
    deadline is recorded. A recv that finds its message at once has nothing to take off."""
    return ctx.recorded_operation(deadline_id, SLEEP) is not None


def _begin_wait(
    ctx: WorkflowContext, deadline_id: int, function_id: int, topic: str, form: str, timeout: float
) -> float:
    """Take the wait's durable deadline and list the wait in the inbox, in one transaction
    (one commit, not two); return the deadline."""
    with transaction.atomic(using=system_db.alias()):
        deadline = durable_deadline(ctx, deadline_id, timeout)
        system_db.begin_wait(ctx.workflow_id, function_id, topic, form, clock.now(), utc(deadline))
    return deadline


def _consume(ctx: WorkflowContext, function_id: int, topic: str, listed: bool) -> str | None:
    """Consume the oldest message and record it as this recv's outcome, in one transaction
    (which takes the wait off the inbox, if it is `listed` there)."""
    with transaction.atomic(using=system_db.alias()):
        message = system_db.consume_message(ctx.workflow_id, topic)
        if message is not None:
            record_operation(ctx, function_id, RECV, output=message)
            if listed:
                system_db.end_wait(ctx.workflow_id, function_id)
    return message


def _time_out(ctx: WorkflowContext, function_id: int) -> None:
    """Record that the recv gave up (it returns None) and take it off the inbox."""
    with transaction.atomic(using=system_db.alias()):
        record_operation(ctx, function_id, RECV, output=serialization.dumps(None))
        system_db.end_wait(ctx.workflow_id, function_id)


# Events ---------------------------------------------------------------------------------------


def set_event(key: str, value: Any) -> None:
    """Publish a value under a key of the current workflow (latest value wins)."""
    ctx = _inside_workflow("set_event")
    key = validation.name(key, "event key")
    text = serialization.dumps(value, f"value of event {key!r}")
    announce = wake_key("e", ctx.workflow_id, key)
    _publish(
        ctx,
        SET_EVENT,
        announce,
        lambda function_id: system_db.set_event(
            ctx.workflow_id, function_id, key, text, wake_key=announce
        ),
    )


def get_event(workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
    """Wait for a workflow's event and return its value; None when the timeout passes.

    Inside a workflow the value read is recorded, so recovery sees it even if the event changed.
    """
    key = validation.name(key, "event key")
    timeout = validation.duration(timeout_seconds, "timeout_seconds")
    after_commit.refuse_to_wait(workflow_id, "get_event()")
    ctx = workflow_context()
    if ctx is not None:
        deadline_id, function_id = next_operation(ctx), ctx.next_function_id()
        done, result = replayed(ctx, function_id, GET_EVENT)
        if done:
            return result
    keys = [wake_key("e", workflow_id, key)]
    if ctx is not None:
        keys.append(wake_key("c", ctx.workflow_id))
    with notifier.current().subscribe(*keys) as event:
        deadline = None if ctx is not None else time.time() + timeout
        while True:
            value = system_db.get_event(workflow_id, key)
            if value is not None:
                break
            if deadline is None:
                # cast: the deadline is only unset inside a workflow, where ctx is set.
                deadline = durable_deadline(cast(WorkflowContext, ctx), deadline_id, timeout)
            # In a workflow the deadline is durable (the engine's clock); outside, it is the
            # caller's own patience (real time).
            remaining = deadline - (time.time() if ctx is None else clock.time())
            if remaining <= 0:
                value = serialization.dumps(None)
                break
            if ctx is not None:
                waiting = f"waiting for event {key!r} of workflow {workflow_id}"
                park_if_long(ctx, event, remaining, keys, deadline, waiting)
            cancellation.wait(ctx, event, remaining)
    if ctx is not None:
        record_operation(ctx, function_id, GET_EVENT, output=value)
    return serialization.loads(value)


async def get_event_async(workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
    """`get_event` for coroutines (async workflows and views): it waits on the event loop."""
    # The steps of `get_event`, with each database call and wait awaited: sharing more than
    # the wake keys would interleave sync and async code in one function.
    key = validation.name(key, "event key")
    timeout = validation.duration(timeout_seconds, "timeout_seconds")
    ctx = workflow_context()
    if ctx is not None:
        deadline_id = await next_operation_async(ctx)
        function_id = ctx.next_function_id()
        done, result = replayed(ctx, function_id, GET_EVENT)
        if done:
            return result
    keys = [wake_key("e", workflow_id, key)]
    if ctx is not None:
        keys.append(wake_key("c", ctx.workflow_id))
    with notifier.current().subscribe(*keys, waiter=aio.LoopEvent()) as event:
        deadline = None if ctx is not None else time.time() + timeout
        while True:
            value = await aio.run_sync(system_db.get_event, workflow_id, key)
            if value is not None:
                break
            if deadline is None:
                deadline = await aio.run_sync(durable_deadline, ctx, deadline_id, timeout)
            remaining = deadline - (time.time() if ctx is None else clock.time())
            if remaining <= 0:
                value = serialization.dumps(None)
                break
            await cancellation.wait_async(ctx, event, remaining)
    if ctx is not None:
        await aio.run_sync(record_operation, ctx, function_id, GET_EVENT, output=value)
    return serialization.loads(value)


# Streams --------------------------------------------------------------------------------------


def write_stream(key: str, value: Any) -> None:
    """Append a value to one of the current workflow's streams."""
    _append(key, value, closed=False, name=WRITE_STREAM)


def close_stream(key: str) -> None:
    """Mark the end of one of the current workflow's streams."""
    _append(key, None, closed=True, name=CLOSE_STREAM)


def _append(key: str, value: Any, *, closed: bool, name: str) -> None:
    ctx = _inside_workflow("write_stream" if not closed else "close_stream")
    key = validation.name(key, "stream key")
    text = None if closed else serialization.dumps(value, f"value for stream {key!r}")
    announce = wake_key("s", ctx.workflow_id, key)
    _publish(
        ctx,
        name,
        announce,
        lambda function_id: system_db.write_stream(
            ctx.workflow_id, function_id, key, text, closed=closed, wake_key=announce
        ),
    )


def read_stream(workflow_id: str, key: str) -> Iterator[Any]:
    """Yield a stream's values in order, waiting for new ones, until it is closed or the
    workflow ends."""
    key = validation.name(key, "stream key")
    after_commit.refuse_to_wait(workflow_id, "read_stream()")
    return _read_stream(workflow_id, key)


def _read_stream(workflow_id: str, key: str) -> Iterator[Any]:
    position = 0
    listener = notifier.current()
    with listener.subscribe(wake_key("s", workflow_id, key), wake_key("w", workflow_id)) as event:
        while True:
            values, position, ended = _read_more(workflow_id, key, position)
            yield from values
            if ended:
                return
            if not values:
                listener.wait(event, None)


async def read_stream_async(workflow_id: str, key: str) -> AsyncIterator[Any]:
    """`read_stream` for coroutines (async views under ASGI): it waits on the event loop, so a
    reader holds no thread while the stream is quiet."""
    key = validation.name(key, "stream key")
    position = 0
    listener = notifier.current()
    keys = (wake_key("s", workflow_id, key), wake_key("w", workflow_id))
    with listener.subscribe(*keys, waiter=aio.LoopEvent()) as event:
        while True:
            values, position, ended = await aio.run_sync(_read_more, workflow_id, key, position)
            for value in values:
                yield value
            if ended:
                return
            if not values:
                await event.wait(listener.poll_interval())


def _read_more(workflow_id: str, key: str, position: int) -> tuple[list[Any], int, bool]:
    """A stream's values from `position` on, the position after them, and whether the stream
    is over (closed, or its workflow ended)."""
    entries = system_db.read_stream(workflow_id, key, position)
    ended = False
    if not entries:
        outcome = system_db.get_outcome(workflow_id)
        if outcome is None:
            raise DBOSNonExistentWorkflowError(f"There is no workflow with id {workflow_id!r}.")
        if outcome[0] in (Status.PENDING, Status.ENQUEUED):
            return [], position, False
        # Entries commit before the workflow's end: this last read sees them all.
        entries = system_db.read_stream(workflow_id, key, position)
        ended = True
    values: list[Any] = []
    for entry_position, value, closed in entries:
        if closed:
            return values, position, True
        values.append(serialization.loads(value))
        position = entry_position + 1
    return values, position, ended
