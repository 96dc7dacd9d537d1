"""Hostile input, a catalogue: through each public surface (the Python API, DBOSClient, the JSON
API, the admin, the management commands), bad input gets a typed error that says what to do, and
every row of every system table (and the admin's log) is as it was before.

Each catalogue is a table of cases. The cases that pass run as subtests (pytest 9's `subtests`
fixture) of one test per group, so that a group costs one database flush (~0.1 s on PostgreSQL)
rather than one per case. A case marked with a `bug` is a test of its own, marked
`xfail(strict=True, reason="ENGINE BUG: ...")` where the bug shows: it asserts the behaviour the
contract asks for, and fails until the engine is fixed. Inputs that are accepted by design (huge
values, clamped timeouts, unknown names the client cannot check) have tests saying so.

Cases already covered elsewhere are not repeated here: unserializable arguments of an inline call
or `start_workflow` (test_serialization), `SetWorkflowID("")`, `42` and 256 characters
(test_workflows), bad `DBOS.sleep` durations (test_sleep), a negative `recv` timeout and sends to
unknown workflows (test_messages), the client's missing options (test_client), four bad cron
strings and a bad time zone (test_scheduler), the JSON API's authentication, permissions, CSRF,
unknown ids and the first malformed bodies and queries (test_api), the cancel action for a user
holding only the resume permission (test_admin), and unknown ids and the first bad arguments of
`manage.py dbos` (test_cli).
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
import os
import pickle
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from django_dbos import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSSerializationError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowStatusString,
)
from django_dbos.engine import registry
from django_dbos.engine.validation import LONGEST_WAIT_SECONDS
from django_dbos.models import (
    Notification,
    OperationOutput,
    Schedule,
    StreamEntry,
    WorkflowEvent,
    WorkflowEventHistory,
    WorkflowStatus,
)
from django_dbos.models import Queue as QueueRow

from . import inprocess_worker
from .conftest import wait_until
from .workers import running_worker

pytestmark = pytest.mark.django_db(transaction=True)

ENGINE = settings.DATABASES["default"]["ENGINE"]
ON_POSTGRES = ENGINE.endswith("postgresql")
ON_SQLITE = ENGINE.endswith("sqlite3")

API = "/dbos"
PASSWORD = "hostile-horse"
DONE, FAILED, PARKED, PAUSED_SCHEDULE = "thi-done", "thi-failed", "thi-parked-1", "thi-paused"

parked = Queue("thi-parked")  # no worker serves it
prioritized = Queue("thi-prioritized", priority_enabled=True)
served = Queue("thi-served")  # served by a worker in the tests that start one


# Workflows ------------------------------------------------------------------------------------


@DBOS.step(name="thi.step")
def a_step(value: Any) -> Any:
    return value


@DBOS.workflow(name="thi.echo")
def echo(value: Any = None) -> Any:
    return value


@DBOS.workflow(name="thi.publisher")
def publisher(value: Any) -> Any:
    a_step(value)
    DBOS.set_event("stage", value)
    DBOS.write_stream("progress", value)
    DBOS.close_stream("progress")
    return value


@DBOS.workflow(name="thi.fails")
def fails() -> None:
    raise RuntimeError("card declined")


@DBOS.workflow(name="thi.receiver")
def receiver() -> Any:
    return DBOS.recv("t", timeout_seconds=10)


@DBOS.workflow(name="thi.greet", http=True)
def greet(name: str, punctuation: str = "!") -> str:
    return f"Hello, {name}{punctuation}"


@DBOS.workflow(name="thi.tick")
def tick(scheduled_time: Any, context: Any) -> Any:
    return context


@DBOS.workflow(name="thi.sleeper")
def sleeper(seconds: float) -> None:
    DBOS.sleep(seconds)


@DBOS.workflow(name="thi.self_message")
def self_message(timeout_seconds: float) -> Any:
    DBOS.send(DBOS.workflow_id, "to myself", topic="t")
    return DBOS.recv("t", timeout_seconds=timeout_seconds)


def not_a_workflow() -> None:
    """A plain function: registered as nothing."""


# What a workflow may do wrong, by name: (the call, the error, what its message says).
MISUSES: dict[str, tuple[Callable[[], object], type[BaseException], str]] = {
    "recv-nan-timeout": (
        lambda: DBOS.recv("t", timeout_seconds=math.nan),
        DBOSInvalidArgumentError,
        "timeout_seconds must be a number of seconds",
    ),
    "recv-string-timeout": (
        lambda: DBOS.recv("t", timeout_seconds="5"),
        DBOSInvalidArgumentError,
        "timeout_seconds must be a number of seconds",
    ),
    "recv-bool-timeout": (
        lambda: DBOS.recv("t", timeout_seconds=True),
        DBOSInvalidArgumentError,
        "timeout_seconds must be a number of seconds",
    ),
    "recv-int-topic": (
        lambda: DBOS.recv(42),
        DBOSInvalidArgumentError,
        "The topic must be a string",
    ),
    "sleep-nan": (
        lambda: DBOS.sleep(math.nan),
        DBOSInvalidArgumentError,
        "seconds must be a number",
    ),
    "get-event-negative-timeout": (
        lambda: DBOS.get_event(DONE, "stage", timeout_seconds=-1),
        DBOSInvalidArgumentError,
        "timeout_seconds must not be negative",
    ),
    "set-event-object": (
        lambda: DBOS.set_event("stage", object()),
        DBOSSerializationError,
        "Cannot serialize the value of event 'stage'",
    ),
    "set-event-nul-key": (
        lambda: DBOS.set_event("st\x00age", 1),
        DBOSInvalidArgumentError,
        "The event key cannot contain a NUL character",
    ),
    "write-stream-lambda": (
        lambda: DBOS.write_stream("progress", lambda: 1),
        DBOSSerializationError,
        "Cannot serialize the value for stream 'progress'",
    ),
    "write-stream-long-key": (
        lambda: DBOS.write_stream("k" * 256, 1),
        DBOSInvalidArgumentError,
        "The stream key is longer than 255 characters",
    ),
    "send-generator": (
        lambda: DBOS.send(DONE, (n for n in range(3))),
        DBOSSerializationError,
        "Cannot serialize the message",
    ),
    "child-with-object-argument": (
        lambda: DBOS.start_workflow(echo, object()),
        DBOSSerializationError,
        "Cannot serialize the workflow arguments",
    ),
    "child-with-negative-timeout": (
        lambda: SetWorkflowTimeout(-1),
        DBOSInvalidArgumentError,
        "timeout_seconds must not be negative",
    ),
}


@DBOS.workflow(name="thi.misuse")
def misuse(kind: str) -> None:
    MISUSES[kind][0]()


# The state of the system tables -----------------------------------------------------------------

# Each table, and the column naming the workflow a row belongs to.
TABLES: dict[type, str | None] = {
    WorkflowStatus: "workflow_id",
    OperationOutput: "workflow_id",
    Notification: "destination_id",
    WorkflowEvent: "workflow_id",
    WorkflowEventHistory: "workflow_id",
    StreamEntry: "workflow_id",
    QueueRow: None,
    Schedule: None,
}


def snapshot(*, ignoring: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every row of every system table (and the admin's log), except those of `ignoring`."""
    state = {}
    for model, owner in TABLES.items():
        rows = model.objects.all()
        if owner is not None and ignoring:
            rows = rows.exclude(**{f"{owner}__in": ignoring})
        state[model._meta.db_table] = sorted(repr(row) for row in rows.values_list())
    state["django_admin_log"] = sorted(repr(row) for row in LogEntry.objects.values_list())
    return state


def rows_of(workflow_id: str) -> dict[str, int]:
    """How many rows each system table holds for one workflow (tables with none left out)."""
    counts = {
        model._meta.db_table: model.objects.filter(**{owner: workflow_id}).count()
        for model, owner in TABLES.items()
        if owner is not None
    }
    return {table: count for table, count in counts.items() if count}


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    """Users are made in many tests, and HTTP Basic checks a password per request."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world() -> None:
    """A finished workflow with a step, an event and a stream; a failed one; one parked on a
    queue; and a paused schedule. Both queues get their rows, and an enqueue here, so that no
    refused enqueue of a test is the process's first on its queue (that one writes the row)."""
    for queue in (parked, prioritized):
        QueueRow.objects.get_or_create(name=queue.name, defaults={"updated_at": timezone.now()})
    with SetWorkflowID(DONE):
        publisher("v")
    with SetWorkflowID(FAILED), pytest.raises(RuntimeError):
        fails()
    with SetWorkflowID(PARKED):
        parked.enqueue(echo, 1)
    with SetWorkflowID("thi-prioritized-1"), SetEnqueueOptions(priority=1):
        prioritized.enqueue(echo, 1)
    DBOS.create_schedule(
        schedule_name=PAUSED_SCHEDULE, workflow_fn=tick, schedule="0 0 1 1 *", context="ctx"
    )
    DBOS.pause_schedule(PAUSED_SCHEDULE)


# Catalogues -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A catalogue entry: its id, and the engine bug it shows (on one database, with `only_on`)."""

    case_id: str
    bug: str | None
    only_on: str | None


def run_each(subtests: Any, cases: list[Any], check: Callable[[Any], None]) -> None:
    """Check each case without a bug, as a subtest named by its id."""
    for one in cases:
        if one.bug is None:
            with subtests.test(msg=one.case_id):
                check(one)


@dataclass(frozen=True)
class Refused(Case):
    """One hostile call, the error it must raise, and what that error's message must say."""

    call: Callable[[], object]
    error: type[BaseException]
    says: str


def case(
    case_id: str,
    call: Callable[[], object],
    error: type[BaseException],
    says: str,
    *,
    bug: str | None = None,
    only_on: str | None = None,
) -> Refused:
    return Refused(case_id, bug, only_on, call, error, says)


def check_refused(refused: Refused) -> None:
    before = snapshot()

    with pytest.raises(refused.error) as raised:
        refused.call()

    assert refused.says in str(raised.value)
    assert snapshot() == before


def client_options(**more: Any) -> dict[str, Any]:
    return {"queue_name": parked.name, "workflow_name": "thi.echo", **more}


def enqueue_with(**options: Any) -> Any:
    with SetEnqueueOptions(**options):
        return parked.enqueue(echo, 1)


def enqueue_prioritized(priority: Any) -> Any:
    with SetEnqueueOptions(priority=priority):
        return prioritized.enqueue(echo, 1)


def start_with_timeout(seconds: Any) -> Any:
    with SetWorkflowTimeout(seconds):
        return DBOS.start_workflow(echo, 1)


def call_with_socket() -> Any:
    with socket.socket() as sock:
        return echo(sock)


def schedule(**fields: Any) -> Any:
    values = {"schedule_name": "thi-new", "workflow_fn": tick, "schedule": "* * * * *"}
    return DBOS.create_schedule(**{**values, **fields})


SEND_WITHOUT_ID_CHECK = (
    "DBOS.send does not check its destination id: the database driver's error escapes instead "
    "of a DBOSException"
)
NUL_ID_LOOKUP = (
    "workflow ids are not checked before lookups: an id with a NUL character raises "
    "django.db.utils.DataError on PostgreSQL (SQLite answers 'no such workflow')"
)
CLIENT_FALSY_ID = (
    "DBOSClient.enqueue reads options.get('workflow_id') or uuid4(): an empty (or 0) id is "
    "replaced by a random one instead of being refused as SetWorkflowID('') is, so the caller's "
    "idempotency key is silently dropped"
)
SCHEDULE_NAME = (
    "create_schedule accepts schedule names its tick ids cannot hold (longer than ~220 "
    "characters, or with NUL): every tick then raises DBOSException in the scheduler"
)

PYTHON_API: dict[str, list[Refused]] = {
    "unserializable-arguments": [
        case(
            "inline-socket",
            call_with_socket,
            DBOSSerializationError,
            "Object of type socket is not JSON serializable",
        ),
        case(
            "enqueue-generator",
            lambda: parked.enqueue(echo, (n for n in range(3))),
            DBOSSerializationError,
            "enable pickle in DBOS['SERIALIZER']",
        ),
        case(
            "enqueue-lambda-keyword",
            lambda: parked.enqueue(echo, value=lambda: 1),
            DBOSSerializationError,
            "Cannot serialize the workflow arguments",
        ),
        case(
            "client-object",
            lambda: DBOSClient().enqueue(client_options(), object()),
            DBOSSerializationError,
            "Cannot serialize the workflow arguments",
        ),
        case(
            "send-lambda",
            lambda: DBOS.send(DONE, lambda: 1),
            DBOSSerializationError,
            "Cannot serialize the message",
        ),
        case(
            "client-send-a-module",
            lambda: DBOSClient().send(DONE, socket),
            DBOSSerializationError,
            "Cannot serialize the message",
        ),
        case(
            "schedule-context-generator",
            lambda: schedule(context=(n for n in range(3))),
            DBOSSerializationError,
            "Cannot serialize the schedule context",
        ),
    ],
    "malformed-workflow-ids": [
        case(
            "set-workflow-id-none",
            lambda: SetWorkflowID(None),
            DBOSException,
            "A workflow id must be a non-empty string",
        ),
        case(
            "set-workflow-id-nul",
            lambda: SetWorkflowID("order\x0042"),
            DBOSException,
            "A workflow id cannot contain a NUL character",
        ),
        case(
            "set-workflow-id-list",
            lambda: SetWorkflowID(["order-42"]),
            DBOSException,
            "A workflow id must be a non-empty string",
        ),
        case(
            "client-workflow-id-int",
            lambda: DBOSClient().enqueue(client_options(workflow_id=42), 1),
            DBOSException,
            "A workflow id must be a non-empty string",
        ),
        case(
            "client-workflow-id-nul",
            lambda: DBOSClient().enqueue(client_options(workflow_id="a\x00b"), 1),
            DBOSException,
            "cannot contain a NUL character",
        ),
        case(
            "client-workflow-id-256-characters",
            lambda: DBOSClient().enqueue(client_options(workflow_id="w" * 256), 1),
            DBOSException,
            "the limit is 255",
        ),
        case(
            "client-workflow-id-list",
            lambda: DBOSClient().enqueue(client_options(workflow_id=["a"]), 1),
            DBOSException,
            "A workflow id must be a non-empty string",
        ),
        case(
            "client-workflow-id-empty",
            lambda: DBOSClient().enqueue(client_options(workflow_id=""), 1),
            DBOSException,
            "A workflow id must be a non-empty string",
            bug=None,
        ),
        case(
            "client-workflow-id-zero",
            lambda: DBOSClient().enqueue(client_options(workflow_id=0), 1),
            DBOSException,
            "A workflow id must be a non-empty string",
            bug=None,
        ),
        case(
            "send-to-int-id",
            lambda: DBOS.send(42, "hello"),
            DBOSException,
            "workflow",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "send-to-list-id",
            lambda: DBOS.send(["a"], "hello"),
            DBOSException,
            "workflow",
            bug=None,
            only_on="sqlite3",
        ),
        case(
            "send-to-nul-id",
            lambda: DBOS.send("a\x00b", "hello"),
            DBOSException,
            "workflow",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "send-to-256-character-id",
            lambda: DBOS.send("w" * 256, "hello"),
            DBOSException,
            "workflow",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "retrieve-nul-id",
            lambda: DBOS.retrieve_workflow("a\x00b"),
            DBOSException,
            "There is no workflow with id",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "cancel-nul-id",
            lambda: DBOS.cancel_workflow("a\x00b"),
            DBOSException,
            "There is no workflow with id",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "resume-nul-id",
            lambda: DBOS.resume_workflow("a\x00b"),
            DBOSException,
            "There is no workflow with id",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "fork-nul-id",
            lambda: DBOS.fork_workflow("a\x00b", 1),
            DBOSException,
            "There is no workflow with id",
            bug=None,
            only_on="postgresql",
        ),
        case(
            "retrieve-none",
            lambda: DBOS.retrieve_workflow(None),
            DBOSNonExistentWorkflowError,
            "There is no workflow with id None",
        ),
        case(
            "cancel-int-id",
            lambda: DBOS.cancel_workflow(42),
            DBOSNonExistentWorkflowError,
            "There is no workflow with id 42",
        ),
        case(
            "resume-list-id",
            lambda: DBOS.resume_workflow(["a"]),
            DBOSNonExistentWorkflowError,
            "There is no workflow with id",
        ),
        case(
            "client-fork-256-character-id",
            lambda: DBOSClient().fork_workflow("w" * 256, 1),
            DBOSNonExistentWorkflowError,
            "There is no workflow with id",
        ),
        case(
            "read-stream-unknown-workflow",
            lambda: list(DBOS.read_stream("thi-nobody", "progress")),
            DBOSNonExistentWorkflowError,
            "There is no workflow with id 'thi-nobody'",
        ),
    ],
    "fork-arguments": [
        case(
            "fork-from-a-float-step",
            lambda: DBOS.fork_workflow(DONE, 1.5),
            ValueError,
            "start_step must be a step number from 1",
        ),
        case(
            "fork-from-a-string-step",
            lambda: DBOS.fork_workflow(DONE, "2"),
            ValueError,
            "start_step must be a step number from 1",
        ),
        case(
            "fork-from-true",
            lambda: DBOS.fork_workflow(DONE, True),
            ValueError,
            "start_step must be a step number from 1",
        ),
        case(
            "fork-to-an-empty-version",
            lambda: DBOS.fork_workflow(DONE, 1, ""),
            ValueError,
            "The application_version must be a non-empty string",
        ),
        case(
            "fork-to-an-int-version",
            lambda: DBOS.fork_workflow(DONE, 1, 7),
            ValueError,
            "The application_version must be a non-empty string",
        ),
    ],
    "timeouts-delays-and-durations": [
        case(
            "workflow-timeout-negative",
            lambda: start_with_timeout(-1),
            ValueError,
            "timeout_seconds must not be negative (got -1)",
        ),
        case(
            "workflow-timeout-nan",
            lambda: start_with_timeout(math.nan),
            ValueError,
            "timeout_seconds must be a number of seconds, not nan",
        ),
        case(
            "workflow-timeout-string",
            lambda: start_with_timeout("60"),
            ValueError,
            "timeout_seconds must be a number of seconds, not '60'",
        ),
        case(
            "workflow-timeout-bool",
            lambda: start_with_timeout(True),
            ValueError,
            "timeout_seconds must be a number of seconds, not True",
        ),
        case(
            "workflow-timeout-minus-infinity",
            lambda: start_with_timeout(-math.inf),
            ValueError,
            "timeout_seconds must not be negative",
        ),
        case(
            "delay-negative",
            lambda: enqueue_with(delay_seconds=-0.5),
            ValueError,
            "delay_seconds must not be negative",
        ),
        case(
            "delay-nan",
            lambda: enqueue_with(delay_seconds=math.nan),
            ValueError,
            "delay_seconds must be a number of seconds",
        ),
        case(
            "delay-string",
            lambda: enqueue_with(delay_seconds="5"),
            ValueError,
            "delay_seconds must be a number of seconds",
        ),
        case(
            "delay-bool",
            lambda: enqueue_with(delay_seconds=True),
            ValueError,
            "delay_seconds must be a number of seconds",
        ),
        case(
            "get-event-negative-timeout",
            lambda: DBOS.get_event(DONE, "stage", timeout_seconds=-1),
            ValueError,
            "timeout_seconds must not be negative",
        ),
        case(
            "get-event-nan-timeout",
            lambda: DBOS.get_event(DONE, "stage", timeout_seconds=math.nan),
            ValueError,
            "timeout_seconds must be a number of seconds",
        ),
        case(
            "get-event-string-timeout",
            lambda: DBOS.get_event(DONE, "stage", timeout_seconds="soon"),
            ValueError,
            "timeout_seconds must be a number of seconds",
        ),
        case(
            "client-get-event-bool-timeout",
            lambda: DBOSClient().get_event(DONE, "stage", timeout_seconds=False),
            ValueError,
            "timeout_seconds must be a number of seconds",
        ),
        case(
            "client-workflow-timeout-negative",
            lambda: DBOSClient().enqueue(client_options(workflow_timeout=-1), 1),
            ValueError,
            "workflow_timeout must not be negative",
        ),
        case(
            "client-workflow-timeout-nan",
            lambda: DBOSClient().enqueue(client_options(workflow_timeout=math.nan), 1),
            ValueError,
            "workflow_timeout must be a number of seconds",
        ),
        case(
            "client-workflow-timeout-string",
            lambda: DBOSClient().enqueue(client_options(workflow_timeout="1h"), 1),
            ValueError,
            "workflow_timeout must be a number of seconds",
        ),
    ],
    "keys-topics-and-enqueue-options": [
        case(
            "get-event-none-key",
            lambda: DBOS.get_event(DONE, None, timeout_seconds=0),
            ValueError,
            "The event key must be a string",
        ),
        case(
            "get-event-nul-key",
            lambda: DBOS.get_event(DONE, "st\x00age", timeout_seconds=0),
            ValueError,
            "The event key cannot contain a NUL character",
        ),
        case(
            "read-stream-long-key",
            lambda: list(DBOS.read_stream(DONE, "k" * 256)),
            ValueError,
            "The stream key is longer than 255 characters",
        ),
        case("send-int-topic", lambda: DBOS.send(DONE, 1, topic=42), ValueError, "topic"),
        case(
            "send-nul-topic",
            lambda: DBOS.send(DONE, 1, topic="a\x00b"),
            ValueError,
            "The topic cannot contain a NUL character",
        ),
        case(
            "send-long-topic",
            lambda: DBOS.send(DONE, 1, topic="t" * 256),
            ValueError,
            "The topic is longer than 255 characters",
        ),
        case(
            "write-stream-outside-a-workflow",
            lambda: DBOS.write_stream("progress", 1),
            DBOSException,
            "can only be called inside a workflow",
        ),
        case(
            "priority-zero",
            lambda: enqueue_prioritized(0),
            ValueError,
            "priority must be an integer from 1 (highest) to 2147483647",
        ),
        case(
            "priority-too-large",
            lambda: enqueue_prioritized(2**31),
            ValueError,
            "priority must be an integer from 1",
        ),
        case(
            "priority-bool",
            lambda: enqueue_prioritized(True),
            ValueError,
            "priority must be an integer",
        ),
        case(
            "priority-string",
            lambda: enqueue_prioritized("1"),
            ValueError,
            "priority must be an integer",
        ),
        case(
            "priority-on-a-queue-without-priorities",
            lambda: enqueue_with(priority=3),
            DBOSException,
            "declare it with priority_enabled=True",
        ),
        case(
            "partition-key-on-an-unpartitioned-queue",
            lambda: enqueue_with(queue_partition_key="user-7"),
            DBOSException,
            "declare it with partition_queue=True",
        ),
        case(
            "deduplication-id-empty",
            lambda: enqueue_with(deduplication_id=""),
            ValueError,
            "The deduplication_id must be a non-empty string",
        ),
        case(
            "deduplication-id-nul",
            lambda: enqueue_with(deduplication_id="a\x00b"),
            ValueError,
            "The deduplication_id cannot contain a NUL character",
        ),
        case(
            "app-version-long",
            lambda: enqueue_with(app_version="v" * 256),
            ValueError,
            "The app_version is longer than 255 characters",
        ),
    ],
    "unknown-workflows-queues-and-schedules": [
        case(
            "enqueue-a-plain-function",
            lambda: parked.enqueue(not_a_workflow, 1),
            DBOSNotRegisteredError,
            "Decorate it with @DBOS.workflow() first",
        ),
        case(
            "start-a-step",
            lambda: DBOS.start_workflow(a_step, 1),
            DBOSNotRegisteredError,
            "is not a registered workflow",
        ),
        case(
            "client-workflow-name-empty",
            lambda: DBOSClient().enqueue(client_options(workflow_name=""), 1),
            ValueError,
            "The workflow_name must be a non-empty string",
        ),
        case(
            "client-workflow-name-int",
            lambda: DBOSClient().enqueue(client_options(workflow_name=42), 1),
            ValueError,
            "The workflow_name must be a non-empty string",
        ),
        case(
            "client-workflow-name-nul",
            lambda: DBOSClient().enqueue(client_options(workflow_name="thi.\x00echo"), 1),
            ValueError,
            "The workflow_name cannot contain a NUL character",
        ),
        case(
            "client-workflow-name-long",
            lambda: DBOSClient().enqueue(client_options(workflow_name="n" * 256), 1),
            ValueError,
            "The workflow_name is longer than 255 characters",
        ),
        # An unknown queue is not refused: the workers that declare it may not have started yet
        # (test_client.py); its name must still be one a queue can have.
        case(
            "client-queue-none",
            lambda: DBOSClient().enqueue(client_options(queue_name=None), 1),
            ValueError,
            "The queue_name must be a non-empty string",
        ),
        case(
            "client-queue-nul",
            lambda: DBOSClient().enqueue(client_options(queue_name="thi-\x00"), 1),
            ValueError,
            "The queue_name cannot contain a NUL character",
        ),
        case(
            "schedule-a-plain-function",
            lambda: schedule(workflow_fn=not_a_workflow),
            DBOSNotRegisteredError,
            "Decorate it with @DBOS.workflow() first",
        ),
        case(
            "schedule-on-an-unknown-queue",
            lambda: schedule(queue_name="thi-no-such-queue"),
            DBOSNotRegisteredError,
            "thi-no-such-queue",
            bug=None,
        ),
        case(
            "pause-an-unknown-schedule",
            lambda: DBOS.pause_schedule("thi-nope"),
            DBOSNotRegisteredError,
            "There is no schedule named 'thi-nope'",
        ),
        case(
            "trigger-an-unknown-schedule",
            lambda: DBOS.trigger_schedule("thi-nope"),
            DBOSNotRegisteredError,
            "There is no schedule named 'thi-nope'",
        ),
        case(
            "delete-an-unknown-schedule",
            lambda: DBOS.delete_schedule("thi-nope"),
            DBOSNotRegisteredError,
            "There is no schedule named 'thi-nope'",
        ),
        case(
            "backfill-with-naive-datetimes",
            lambda: DBOS.backfill_schedule(
                PAUSED_SCHEDULE, datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 2)
            ),
            ValueError,
            "timezone-aware start and end",
        ),
    ],
    "invalid-cron-and-schedule-fields": [
        case("cron-none", lambda: schedule(schedule=None), DBOSInvalidArgumentError, "cron:"),
        case(
            "cron-int",
            lambda: schedule(schedule=42),
            DBOSInvalidArgumentError,
            "a cron expression has 5 (minute hour day month weekday) or 6",
        ),
        case(
            "cron-empty",
            lambda: schedule(schedule=""),
            DBOSInvalidArgumentError,
            "cron: This field",
        ),
        case(
            "cron-nickname",
            lambda: schedule(schedule="@daily"),
            DBOSInvalidArgumentError,
            "'@daily' has 1 fields",
        ),
        case(
            "cron-with-nul",
            lambda: schedule(schedule="* * * * *\x00"),
            DBOSInvalidArgumentError,
            "is not a valid cron expression",
        ),
        case(
            "cron-400-characters",
            lambda: schedule(schedule="* * * * " + "1," * 200 + "1"),
            DBOSInvalidArgumentError,
            "at most 255 characters",
        ),
        case(
            "time-zone-path",
            lambda: schedule(cron_timezone="../../../etc/passwd"),
            DBOSInvalidArgumentError,
            "is not a known time zone (use an IANA name",
        ),
        case(
            "schedule-name-empty",
            lambda: schedule(schedule_name=""),
            DBOSInvalidArgumentError,
            "name: This field cannot be blank",
        ),
        case(
            "schedule-name-256-characters",
            lambda: schedule(schedule_name="s" * 256),
            DBOSInvalidArgumentError,
            "A schedule name is at most 200 characters",
        ),
        case(
            "schedule-name-240-characters",
            lambda: schedule(schedule_name="s" * 240),
            DBOSInvalidArgumentError,
            "name",
            bug=None,
        ),
        case(
            "schedule-name-nul",
            lambda: schedule(schedule_name="a\x00b"),
            DBOSInvalidArgumentError,
            "name",
            bug=None,
        ),
        case(
            "schedule-backfill-flag-string",
            lambda: schedule(automatic_backfill="maybe"),
            DBOSInvalidArgumentError,
            "automatic_backfill",
        ),
        case(
            "schedule-context-date",
            lambda: schedule(context=datetime.date(2024, 1, 1)),
            DBOSInvalidArgumentError,
            "context: Value must be valid JSON",
        ),
    ],
}


@pytest.mark.parametrize("group", PYTHON_API)
def test_the_python_api_refuses_hostile_input_and_writes_nothing(world, subtests, group):
    run_each(subtests, PYTHON_API[group], check_refused)


@pytest.mark.parametrize("lookup", ["get_workflow_status", "get_event"])
def test_looking_up_an_id_with_a_nul_character_finds_nothing(world, lookup):
    before = snapshot()

    if lookup == "get_workflow_status":
        assert DBOS.get_workflow_status("a\x00b") is None
    else:
        assert DBOS.get_event("a\x00b", "stage", timeout_seconds=0) is None

    assert snapshot() == before


def test_hostile_input_inside_a_workflow_fails_it_and_records_nothing_else(world, subtests):
    for kind, (_, error, says) in MISUSES.items():
        with subtests.test(msg=kind):
            workflow_id = f"thi-misuse-{kind}"
            before = snapshot()

            with SetWorkflowID(workflow_id), pytest.raises(error) as raised:
                misuse(kind)

            assert says in str(raised.value)
            status = DBOS.get_workflow_status(workflow_id)
            assert status.status == WorkflowStatusString.ERROR
            assert type(status.error) is error
            # No step, event, message or stream: only the workflow's own row, in ERROR.
            assert rows_of(workflow_id) == {"dbos_workflow_status": 1}
            assert snapshot(ignoring=(workflow_id,)) == before


def test_the_first_refused_enqueue_on_a_new_queue_writes_nothing():
    fresh = Queue(f"thi-fresh-{time.monotonic_ns()}")
    before = snapshot()

    with pytest.raises(DBOSSerializationError):
        fresh.enqueue(echo, object())

    assert snapshot() == before


# Accepted by design: huge values are clamped or stored whole ----------------------------------

HUNDRED_YEARS_MS = int(LONGEST_WAIT_SECONDS * 1000)


def test_a_5_mb_argument_is_stored_whole_there_is_no_size_limit():
    """No limit is enforced: arguments, results and messages are as large as the database
    column takes (PostgreSQL: 1 GB; SQLite: 1e9 bytes by default). See docs/security.md."""
    argument = "x" * (5 * 1024 * 1024)

    with SetWorkflowID("thi-5mb"):
        assert echo(argument) == argument

    row = WorkflowStatus.objects.get(workflow_id="thi-5mb")
    assert len(row.inputs) > 5 * 1024 * 1024
    assert len(row.output) > 5 * 1024 * 1024
    status = DBOS.get_workflow_status("thi-5mb")
    assert status.input == {"args": [argument], "kwargs": {}}
    assert status.output == argument


def test_a_huge_workflow_timeout_is_clamped_to_a_hundred_years(subtests):
    for seconds in (math.inf, 1e300, 2**1000):
        with subtests.test(msg=repr(seconds)[:20]):
            workflow_id = f"thi-huge-timeout-{seconds:g}"
            with SetWorkflowID(workflow_id), SetWorkflowTimeout(seconds):
                handle = DBOS.start_workflow(echo, 1)

            assert handle.get_result(timeout=10) == 1
            row = WorkflowStatus.objects.get(workflow_id=workflow_id)
            assert row.timeout_ms == HUNDRED_YEARS_MS
            assert row.deadline.year >= time.gmtime().tm_year + 99


def test_a_huge_client_timeout_and_delay_are_clamped_to_a_hundred_years():
    DBOSClient().enqueue(client_options(workflow_id="thi-client-huge", workflow_timeout=1e308), 1)
    with SetWorkflowID("thi-delayed-forever"):
        enqueue_with(delay_seconds=math.inf)

    assert WorkflowStatus.objects.get(workflow_id="thi-client-huge").timeout_ms == (
        HUNDRED_YEARS_MS
    )
    delayed = WorkflowStatus.objects.get(workflow_id="thi-delayed-forever")
    assert delayed.status == WorkflowStatusString.ENQUEUED
    assert delayed.dispatch_after.year >= time.gmtime().tm_year + 99


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda: SetWorkflowTimeout(10**400), id="workflow-timeout"),
        pytest.param(
            lambda: DBOS.get_event(DONE, "stage", timeout_seconds=10**400), id="get-event"
        ),
        pytest.param(lambda: enqueue_with(delay_seconds=10**400), id="delay"),
    ],
)
def test_an_integer_too_large_for_a_float_is_clamped_too(world, call):
    call()


def test_huge_waits_end_as_soon_as_their_value_is_there(world):
    assert DBOS.get_event(DONE, "stage", timeout_seconds=math.inf) == "v"
    with SetWorkflowID("thi-self-message"):
        assert self_message(1e300) == "to myself"


def test_an_endless_sleep_records_a_wake_up_a_hundred_years_on_and_can_be_cancelled():
    with SetWorkflowID("thi-endless-sleep"):
        handle = DBOS.start_workflow(sleeper, 10**400)  # an int JSON holds, clamped
    wait_until(
        lambda: OperationOutput.objects.filter(workflow_id="thi-endless-sleep").exists(),
        10,
        "the sleep's wake-up time",
    )

    [step] = DBOS.list_workflow_steps("thi-endless-sleep")
    DBOS.cancel_workflow("thi-endless-sleep")

    assert step.function_name == "DBOS.sleep"
    assert step.output == pytest.approx(time.time() + LONGEST_WAIT_SECONDS, abs=60)
    with pytest.raises(DBOSException, match="cancelled"):
        handle.get_result(timeout=10)


def test_a_255_character_workflow_id_is_the_longest_accepted():
    longest = "w" * 255

    with SetWorkflowID(longest):
        assert echo("ok") == "ok"

    assert DBOS.get_workflow_status(longest).output == "ok"


def test_a_client_enqueue_of_an_unknown_workflow_name_is_accepted_and_ends_in_error():
    """As documented (docs/api.md, DBOS Python): the client cannot know the workers' code, so it
    enqueues by name; a worker without that name marks the workflow ERROR."""
    handle = DBOSClient().enqueue(
        {"queue_name": served.name, "workflow_name": "thi.nobody_registered_this"}, 1
    )
    assert handle.get_status().status == WorkflowStatusString.ENQUEUED

    with (
        running_worker(queues=[served.name]),
        pytest.raises(DBOSNotRegisteredError, match="No workflow is registered as"),
    ):
        handle.get_result(timeout=10)

    assert handle.get_status().status == WorkflowStatusString.ERROR
    assert rows_of(handle.workflow_id) == {"dbos_workflow_status": 1}


# The JSON API ---------------------------------------------------------------------------------


@pytest.fixture
def basic_auth(django_user_model) -> dict[str, str]:
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    token = base64.b64encode(f"root:{PASSWORD}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@dataclass(frozen=True)
class BadRequest(Case):
    """A request, the status it must get, and what the error's message must say."""

    method: str
    path: str
    body: str | bytes | None
    status: int
    says: str
    content_type: str


def request(
    case_id: str,
    path: str,
    body: object,
    status: int,
    says: str,
    *,
    method: str = "POST",
    content_type: str = "application/json",
    bug: str | None = None,
) -> BadRequest:
    if body is not None and not isinstance(body, str | bytes):
        body = json.dumps(body)
    return BadRequest(case_id, bug, None, method, path, body, status, says, content_type)


SEND = f"/workflows/{DONE}/send/"
FORK = f"/workflows/{DONE}/fork/"
START = "/workflows/start/thi.greet/"

JSON_API = [
    # Not JSON, or JSON of the wrong shape
    request("body-null", SEND, "null", 400, "The request body must be a JSON object"),
    request("body-string", SEND, '"hello"', 400, "The request body must be a JSON object"),
    request(
        "body-form-encoded",
        SEND,
        "message=1",
        400,
        "The request body is not valid JSON",
        content_type="application/x-www-form-urlencoded",
    ),
    request(
        "body-not-utf-8", SEND, b'{"message": "\xff"}', 400, "The request body is not valid JSON"
    ),
    request(
        "body-nested-100000-deep",
        SEND,
        '{"message": ' + "[" * 100_000 + "]" * 100_000 + "}",
        400,
        "The request body is not valid JSON",
    ),
    request(
        "message-nested-900-deep",
        SEND,
        '{"message": ' + "[" * 900 + "]" * 900 + "}",
        400,
        "The request body nests arrays and objects deeper than 200 levels",
    ),
    request(
        "body-3-mb",
        SEND,
        {"message": "x" * 3_000_000},
        413,
        "The request body is too large",
    ),
    request(
        "extra-field",
        SEND,
        {"message": 1, "priority": 1},
        400,
        "Unknown field(s) in the request body: priority. Expected: idempotency_key, message, topic",
    ),
    # Huge numbers
    request(
        "message-5000-digit-integer",
        SEND,
        '{"message": ' + "9" * 5000 + "}",
        400,
        "The request body is not valid JSON",
    ),
    request(
        "message-overflowing-float",
        SEND,
        '{"message": 1e400}',
        400,
        "Out of range float values are not JSON compliant",
        bug=None,
    ),
    request(
        "start-step-beyond-int32",
        FORK,
        '{"start_step": 99999999999999999999}',
        400,
        '"start_step" must be from 1 to 2147483647',
    ),
    request(
        "start-step-overflowing-float",
        FORK,
        '{"start_step": 1e400}',
        400,
        '"start_step" must be an integer of 1 or more, not Infinity',
    ),
    request("start-step-float", FORK, {"start_step": 1.0}, 400, '"start_step" must be an integer'),
    request("start-step-negative", FORK, {"start_step": -1}, 400, '"start_step" must be from 1'),
    # Wrong types and bad strings
    request(
        "version-empty",
        FORK,
        {"start_step": 1, "application_version": ""},
        400,
        "The application_version must be a non-empty string",
    ),
    request(
        "version-256-characters",
        FORK,
        {"start_step": 1, "application_version": "v" * 256},
        400,
        "The application_version is longer than 255 characters",
    ),
    request(
        "version-nul",
        FORK,
        {"start_step": 1, "application_version": "v\x001"},
        400,
        "must not contain NUL characters",
    ),
    request(
        "topic-lone-surrogate",
        SEND,
        '{"message": 1, "topic": "\\ud800"}',
        400,
        'The "topic" is not valid Unicode text',
    ),
    request(
        "topic-256-characters",
        SEND,
        {"message": 1, "topic": "t" * 256},
        400,
        "The topic is longer than 255 characters",
    ),
    request(
        "workflow-id-int", START, {"args": ["Ada"], "workflow_id": 42}, 400, '"workflow_id" must'
    ),
    request(
        "workflow-id-256-characters",
        START,
        {"args": ["Ada"], "workflow_id": "w" * 256},
        400,
        "the limit is 255",
    ),
    request(
        "workflow-id-nul",
        START,
        {"args": ["Ada"], "workflow_id": "a\x00b"},
        400,
        '"workflow_id" must not contain NUL characters',
    ),
    request(
        "queue-name-list",
        START,
        {"args": ["Ada"], "queue_name": ["thi-parked"]},
        400,
        '"queue_name" must be a string',
    ),
    request(
        "unknown-keyword-argument",
        START,
        {"args": ["Ada"], "kwargs": {"shell": "rm -rf /"}},
        400,
        "The arguments do not fit workflow 'thi.greet'",
    ),
    request(
        "too-many-arguments",
        START,
        {"args": ["Ada", "!", "extra"]},
        400,
        "The arguments do not fit workflow 'thi.greet'",
    ),
    request("workflow-name-nul", "/workflows/start/a%00b/", {}, 400, "NUL"),
    request(
        "event-key-nul",
        f"/workflows/{DONE}/events/st%00age/",
        None,
        400,
        "The key must not contain NUL characters",
        method="GET",
    ),
    request(
        "event-key-256-characters",
        f"/workflows/{DONE}/events/{'k' * 256}/",
        None,
        400,
        "The key is longer than 255 characters",
        method="GET",
    ),
    request(
        "event-timeout-infinite",
        f"/workflows/{DONE}/events/stage/?timeout_seconds=inf",
        None,
        400,
        "timeout_seconds must be a number of seconds from 0 to 60",
        method="GET",
    ),
    request(
        "cancel-a-256-character-id",
        f"/workflows/{'w' * 256}/cancel/",
        None,
        404,
        "There is no workflow with id",
    ),
    request(
        "list-limit-in-exponent-notation",
        "/workflows/?limit=1e3",
        None,
        400,
        "limit must be an integer from 1 to 500",
        method="GET",
    ),
]


def check_request(client: Any, auth: dict[str, str], bad: BadRequest) -> None:
    before = snapshot()

    if bad.method == "GET":
        response = client.get(f"{API}{bad.path}", headers=auth)
    else:
        data = "" if bad.body is None else bad.body
        response = client.post(
            f"{API}{bad.path}", data, content_type=bad.content_type, headers=auth
        )

    assert response.status_code == bad.status, response.content[:300]
    assert set(response.json()) == {"error", "detail"}
    assert bad.says in response.json()["error"]
    assert snapshot() == before


def test_the_json_api_answers_hostile_requests_with_a_json_error_and_writes_nothing(
    world, client, basic_auth, subtests
):
    run_each(subtests, JSON_API, lambda bad: check_request(client, basic_auth, bad))


def test_json_arguments_that_imitate_the_serializers_tags_stay_plain_data(client, basic_auth):
    """A caller cannot smuggle a tagged value (a dataclass named by path) through the API: the
    serializer escapes dicts that use its tag key, so they come back as the same dicts."""
    imitation = {"__dbos__": "dataclass", "cls": "os:system", "v": {"command": "true"}}

    response = client.post(
        f"{API}{START}",
        json.dumps({"args": [imitation], "workflow_id": "thi-imitation"}),
        content_type="application/json",
        headers=basic_auth,
    )

    assert response.status_code == 202
    assert DBOS.retrieve_workflow("thi-imitation").get_result(timeout=10) == (
        f"Hello, {imitation}!"
    )
    assert DBOS.get_workflow_status("thi-imitation").input == {"args": [imitation], "kwargs": {}}


# Pickle payloads, and other values planted in the tables --------------------------------------


class CreatesADirectory:
    """Unpickled, this would create a directory: proof that a payload ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, int, bool]]:
        return (os.makedirs, (str(self.path), 0o777, True))


def pickled(value: Any) -> str:
    return "pickle:" + base64.b64encode(pickle.dumps(value)).decode("ascii")


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "payload-ran"


@pytest.fixture
def planted(world, marker: Path) -> str:
    """The finished workflow, with a pickle payload written over every value it stored."""
    DBOS.send(DONE, "a message")
    payload = pickled(CreatesADirectory(marker))
    WorkflowStatus.objects.filter(workflow_id=DONE).update(
        inputs=pickled({"args": [CreatesADirectory(marker)], "kwargs": {}}), output=payload
    )
    OperationOutput.objects.filter(workflow_id=DONE).update(output=payload)
    WorkflowEvent.objects.filter(workflow_id=DONE).update(value=payload)
    StreamEntry.objects.filter(workflow_id=DONE, closed=False).update(value=payload)
    Notification.objects.filter(destination_id=DONE).update(message=payload)
    return DONE


def api_get(client: Any, path: str) -> Any:
    """GET an API path (logged in); raise what an error answer says, with its status."""
    response = client.get(f"{API}{path}")
    if response.status_code != 200:
        raise DBOSSerializationError(f"{response.status_code}: {response.json()['error']}")
    return response.json()


def cli(*args: str) -> str:
    out = io.StringIO()
    call_command("dbos", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


READERS: dict[str, Callable[[Any], object]] = {
    "get_workflow_status": lambda client: DBOS.get_workflow_status(DONE),
    "get_result": lambda client: DBOS.retrieve_workflow(DONE).get_result(timeout=5),
    "list_workflows": lambda client: DBOS.list_workflows(workflow_ids=[DONE]),
    "list_workflow_steps": lambda client: DBOS.list_workflow_steps(DONE),
    "get_event": lambda client: DBOS.get_event(DONE, "stage", timeout_seconds=0),
    "read_stream": lambda client: list(DBOS.read_stream(DONE, "progress")),
    "client-list_workflows": lambda client: DBOSClient().list_workflows(workflow_ids=[DONE]),
    "api-workflow": lambda client: api_get(client, f"/workflows/{DONE}/"),
    "api-steps": lambda client: api_get(client, f"/workflows/{DONE}/steps/"),
    "api-event": lambda client: api_get(client, f"/workflows/{DONE}/events/stage/"),
    "cli-workflow-get": lambda client: cli("workflow", "get", DONE),
    "cli-workflow-steps": lambda client: cli("workflow", "steps", DONE, "--json"),
}


def test_a_planted_pickle_is_refused_when_read_and_never_runs(planted, marker, client, subtests):
    client.force_login(User.objects.create_superuser("reader", password=PASSWORD))
    for reader, read in READERS.items():
        with subtests.test(msg=reader):
            before = snapshot()

            with pytest.raises((DBOSSerializationError, CommandError)) as raised:
                read(client)

            assert "pickle is not enabled" in str(raised.value)
            assert 'DBOS["SERIALIZER"] = "pickle" only if every writer' in str(raised.value)
            assert not marker.exists()
            assert snapshot() == before


def test_the_admin_shows_a_planted_pickle_as_text_and_never_runs_it(planted, marker, admin_client):
    page = admin_client.get(f"/admin/django_dbos/workflowstatus/{DONE}/change/")

    assert page.status_code == 200
    assert "pickle:" in page.content.decode()
    assert not marker.exists()


@DBOS.step(name="thi.today")
def today() -> datetime.date:
    return datetime.date(2024, 4, 1)


@DBOS.workflow(name="thi.dated")
def dated() -> datetime.date:
    return today()


def test_the_admin_shows_a_step_output_that_json_lacks(admin_client):
    with SetWorkflowID("thi-dated"):
        dated()

    page = admin_client.get("/admin/django_dbos/workflowstatus/thi-dated/change/")

    assert page.status_code == 200
    assert "2024-04-01" in page.content.decode()


def test_a_planted_message_fails_the_receiving_workflow_and_never_runs(marker):
    handle = DBOS.start_workflow(receiver)
    Notification.objects.create(
        destination_id=handle.workflow_id,
        topic="t",
        message=pickled(CreatesADirectory(marker)),
        created_at=WorkflowStatus.objects.get(workflow_id=handle.workflow_id).created_at,
    )
    DBOS.send(handle.workflow_id, "wake up", topic="t")  # wakes recv, which takes the oldest

    with pytest.raises(DBOSSerializationError, match="pickle is not enabled"):
        handle.get_result(timeout=15)
    assert handle.get_status().status == WorkflowStatusString.ERROR
    assert not marker.exists()


def status_of(workflow_id: str) -> str:
    """The status column itself (the public API would try to load the planted arguments)."""
    return WorkflowStatus.objects.get(workflow_id=workflow_id).status


@pytest.fixture
def planted_inputs(marker: Path) -> Any:
    """A queued workflow whose stored arguments were replaced by a pickle payload."""
    with SetWorkflowID("thi-planted-inputs"):
        handle = served.enqueue(echo, 1)
    WorkflowStatus.objects.filter(workflow_id=handle.workflow_id).update(
        inputs=pickled({"args": [CreatesADirectory(marker)], "kwargs": {}})
    )
    return handle


def test_a_worker_never_runs_planted_pickled_arguments(planted_inputs, marker):
    with running_worker(queues=[served.name]):
        wait_until(
            lambda: status_of(planted_inputs.workflow_id) != WorkflowStatusString.ENQUEUED,
            10,
            "the worker to take the workflow",
        )
        time.sleep(0.3)

    assert not marker.exists()
    assert not OperationOutput.objects.filter(workflow_id=planted_inputs.workflow_id).exists()


def test_a_workflow_whose_arguments_cannot_be_read_ends_in_error(planted_inputs):
    with (
        running_worker(queues=[served.name]),
        pytest.raises(DBOSSerializationError, match="pickle is not enabled"),
    ):
        planted_inputs.get_result(timeout=1)

    assert status_of(planted_inputs.workflow_id) == WorkflowStatusString.ERROR


def test_a_planted_tagged_value_naming_a_function_is_refused_and_never_called(world, marker):
    """JSON tags name dataclasses by import path; anything else named there is refused."""
    record = {"__dbos__": "dataclass", "cls": "os:mkdir", "v": {"path": str(marker)}}
    WorkflowStatus.objects.filter(workflow_id=DONE).update(output=json.dumps(record))

    with pytest.raises(DBOSSerializationError, match="os:mkdir is not a dataclass"):
        DBOS.get_workflow_status(DONE)
    assert not marker.exists()


def test_with_pickle_enabled_the_same_payload_runs_which_is_why_it_is_off(planted, marker):
    with override_settings(DBOS={**settings.DBOS, "SERIALIZER": "pickle"}):
        DBOS.get_workflow_status(planted)

    assert marker.exists()


# The admin ------------------------------------------------------------------------------------

CHANGELIST = "/admin/django_dbos/workflowstatus/"


def staff(*codenames: str, username: str = "operator") -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(codename=codename, content_type__app_label="django_dbos")
        )
    return user


ACTIONS = {
    # action: the workflow it would change (a queued one to cancel, a failed one to resume, a
    # finished one to fork into a new row)
    "cancel_workflows": PARKED,
    "resume_workflows": FAILED,
    "fork_workflows": DONE,
}


def action(name: str, step: str = "1") -> dict[str, Any]:
    return {"action": name, "_selected_action": [ACTIONS[name]], "start_step": step}


def test_an_action_without_its_permission_changes_nothing_and_logs_nothing(world, client, subtests):
    """Each action for a staff user who may view workflows but holds none of the actions'
    permissions; test_admin covers a user holding another action's permission."""
    client.force_login(staff("view_workflowstatus"))
    for name in ACTIONS:
        with subtests.test(msg=name):
            before = snapshot()

            response = client.post(CHANGELIST, action(name))

            assert response.status_code == 200  # the list again: the user has no action to run
            assert snapshot() == before


def test_an_action_without_the_view_permission_or_a_login_is_refused(world, client, subtests):
    for name in ACTIONS:
        with subtests.test(msg=name):
            client.logout()
            before = snapshot()

            anonymous = client.post(CHANGELIST, action(name))
            client.force_login(staff(username=f"no-view-{name}"))
            no_view = client.post(CHANGELIST, action(name))

            assert anonymous.status_code == 302
            assert anonymous["Location"].startswith("/admin/login/")
            assert no_view.status_code == 403
            assert snapshot() == before


def test_a_fork_from_a_bad_step_in_the_admin_changes_nothing(world, admin_client, subtests):
    for step in ("0", "-1", "abc", "1.5"):
        with subtests.test(msg=step):
            before = snapshot()

            response = admin_client.post(CHANGELIST, action("fork_workflows", step), follow=True)

            assert response.status_code == 200
            assert "No action selected." in response.content.decode()  # the form is invalid
            assert snapshot() == before


SCHEDULE_FORM = {
    "name": "thi-admin",
    "workflow_name": "thi.tick",
    "cron": "0 * * * *",
    "timezone": "",
    "status": "ACTIVE",
    "context": "null",
    "queue_name": "",
}


@dataclass(frozen=True)
class BadForm(Case):
    """Fields posted to an admin form, and what the form's errors must say."""

    fields: dict[str, str]
    says: str


def form(case_id: str, says: str, *, bug: str | None = None, **fields: str) -> BadForm:
    return BadForm(case_id, bug, None, fields, says)


SCHEDULE_FORMS = [
    form("cron-nickname", "has 1 fields; a cron expression has 5", cron="@hourly"),
    form("cron-seconds-out-of-range", "is not a valid cron expression", cron="61 * * * * *"),
    form("name-nul", "Null characters are not allowed.", name="a\x00b"),
    form("unknown-workflow", "Select a valid choice.", workflow_name="os.system"),
    form("time-zone-path", "is not a known time zone", timezone="../../etc/passwd"),
    form("context-not-json", "Enter a valid JSON.", context="{not json"),
    form("name-240-characters", "name", name="s" * 240, bug=None),
    form(
        "unknown-queue",
        "thi-no-such-queue",
        queue_name="thi-no-such-queue",
        bug=None,
    ),
]
QUEUE_LIMITS = (
    "the queue admin accepts limits the code refuses (Queue() wants positive integers and a "
    "positive period): 0 stops the queue for good, a negative period turns the rate limit off"
)
QUEUE_FORMS = [
    form("concurrency-negative", "greater than or equal to 0", concurrency="-1"),
    form("period-nan", "Enter a number.", rate_period_seconds="nan"),
    form("period-infinite", "Enter a number.", rate_period_seconds="1e999"),
    form("worker-concurrency-float", "Enter a whole number.", worker_concurrency="2.5"),
    form("concurrency-zero", "concurrency", concurrency="0", bug=None),
    form("period-negative", "period", rate_limit="5", rate_period_seconds="-60", bug=None),
]
FORMS = {
    "schedule": (
        "/admin/django_dbos/schedule/add/",
        {
            "name": "thi-admin",
            "workflow_name": "thi.tick",
            "cron": "0 * * * *",
            "timezone": "",
            "status": "ACTIVE",
            "context": "null",
            "queue_name": "",
        },
        SCHEDULE_FORMS,
    ),
    "queue": (
        f"/admin/django_dbos/queue/{parked.name}/change/",
        {"concurrency": "", "worker_concurrency": "", "rate_limit": "", "rate_period_seconds": ""},
        QUEUE_FORMS,
    ),
}


def check_form(client: Any, url: str, valid: dict[str, str], bad: BadForm) -> None:
    before = snapshot()

    response = client.post(url, {**valid, **bad.fields})

    assert response.status_code == 200  # the form again, with its errors
    assert bad.says in response.content.decode()
    assert snapshot() == before


@pytest.mark.parametrize("admin_form", FORMS)
def test_an_admin_form_refuses_hostile_fields_and_saves_nothing(
    world, admin_client, subtests, admin_form
):
    url, valid, cases = FORMS[admin_form]
    run_each(subtests, cases, lambda bad: check_form(admin_client, url, valid, bad))


def test_queue_limits_cannot_be_changed_without_the_change_permission(world, client):
    client.force_login(staff("view_queue"))
    before = snapshot()

    url, valid, _ = FORMS["queue"]
    response = client.post(url, {**valid, "concurrency": "1"})

    assert response.status_code == 403
    assert snapshot() == before


# The management commands ----------------------------------------------------------------------


@dataclass(frozen=True)
class BadCommand(Case):
    """A command line, and what its CommandError must say."""

    argv: tuple[str, ...]
    says: str


def command(
    case_id: str, says: str, *argv: str, bug: str | None = None, only_on: str | None = None
) -> BadCommand:
    return BadCommand(case_id, bug, only_on, argv, says)


COMMANDS = [
    command("step-word", "invalid int value", "dbos", "workflow", "fork", DONE, "--step", "two"),
    command(
        "empty-version",
        "The application_version must be a non-empty string",
        *("dbos", "workflow", "fork", DONE, "--step", "1", "--application-version", ""),
    ),
    command("negative-offset", "--offset at least 0", "dbos", "workflow", "list", "--offset", "-1"),
    command(
        "256-character-id", "There is no workflow with id", "dbos", "workflow", "cancel", "w" * 256
    ),
    command("unknown-verb", "invalid choice: 'purge'", "dbos", "queue", "purge"),
    command(
        "nul-id",
        "There is no workflow with id",
        *("dbos", "workflow", "get", "a\x00b"),
        bug=None,
        only_on="postgresql",
    ),
    command(
        "worker-timeout-word",
        "invalid float value: 'soon'",
        *("rundbosworker", "--shutdown-timeout", "soon"),
    ),
    command(
        "worker-concurrency-word",
        "invalid int value: 'many'",
        *("rundbosworker", "--concurrency", "many"),
    ),
]


def check_command(bad: BadCommand) -> None:
    before = snapshot()

    with pytest.raises(CommandError) as raised:
        call_command(*bad.argv, stdout=io.StringIO(), stderr=io.StringIO())

    assert bad.says in str(raised.value)
    assert snapshot() == before


def test_a_command_with_hostile_arguments_is_a_command_error_and_writes_nothing(world, subtests):
    run_each(subtests, COMMANDS, check_command)


def test_a_worker_with_zero_threads_is_refused_before_starting(world):
    before = snapshot()

    with pytest.raises(CommandError, match="argument --concurrency: must be at least 1, not 0"):
        call_command("rundbosworker", "--concurrency", "0", stderr=io.StringIO())

    assert snapshot() == before


# A fork from a step beyond every integer column, on each surface -------------------------------

HUGE_STEP = 2**63


def fork_huge_step(surface: str, client: Any) -> bool:
    """Fork DONE from step 2**63 through one surface; True when it was refused, saying why."""
    refusal = f"start_step must be a step number from 1 to {2**31 - 1}"
    if surface == "python":
        with pytest.raises(DBOSInvalidArgumentError, match=refusal):
            DBOS.fork_workflow(DONE, HUGE_STEP)
        return True
    if surface == "admin":
        client.force_login(User.objects.create_superuser("forker", password=PASSWORD))
        response = client.post(
            CHANGELIST,
            {"action": "fork_workflows", "_selected_action": [DONE], "start_step": HUGE_STEP},
            follow=True,
        )
        return any(refusal in str(message) for message in response.context["messages"])
    with pytest.raises(CommandError, match=refusal):
        cli("workflow", "fork", DONE, "--step", str(HUGE_STEP))
    return True


@pytest.mark.parametrize("surface", ["python", "admin", "cli"])
def test_a_fork_from_a_huge_step_forks_or_is_refused_with_a_typed_error(world, client, surface):
    if fork_huge_step(surface, client):
        assert not [wf for wf in DBOS.list_workflows() if wf.forked_from == DONE]
        return
    [fork] = [wf for wf in DBOS.list_workflows() if wf.forked_from == DONE]
    assert DBOS.retrieve_workflow(fork.workflow_id).get_result(timeout=10) == "v"


# A bad schedule row must not stop the others -------------------------------------------------


def test_a_schedule_with_a_name_too_long_for_its_tick_ids_does_not_stop_the_others(monkeypatch):
    monkeypatch.setattr(registry, "_schedules", {})  # only this test's schedules
    # A row too long for its tick ids, as an older version or a raw INSERT could leave it (the
    # API and the admin refuse such a name now).
    Schedule.objects.create(name="a" * 240, workflow_name=tick.__dbos__.name, cron="* * * * * *")
    DBOS.create_schedule(schedule_name="thi-every-second", workflow_fn=tick, schedule="* * * * * *")

    with inprocess_worker.running_worker(recovery=False):
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and not DBOS.list_workflows(name="thi.tick"):
            time.sleep(0.1)

    assert DBOS.list_workflows(name="thi.tick"), "the healthy schedule never fired"
