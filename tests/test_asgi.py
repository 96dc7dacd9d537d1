"""The test project served by a real uvicorn: async views start workflows and wait for them on the
event loop; the JSON API's stream view sends each event as it is written, and a hundred readers
waiting on streams hold no thread each."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connections as django_connections
from django.test import Client

from django_dbos import DBOS, SetWorkflowID

from .conftest import Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

_END = "event: end\ndata: null\n\n"
READERS = 100
APP_NAME = "dbos-test-uvicorn"  # the uvicorn process's connections to PostgreSQL


@DBOS.workflow()
def reports(key: str) -> str:
    """Writes one value, waits for a message, writes another and ends."""
    DBOS.write_stream(key, "first")
    DBOS.recv("go", timeout_seconds=60)
    DBOS.write_stream(key, "second")
    DBOS.close_stream(key)
    return "done"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int):
        self.process = process
        self.port = port

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            return json.loads(r.read())


@pytest.fixture
def uvicorn(processes: Processes) -> Iterator[Server]:
    port = _free_port()
    process = processes._start(
        [sys.executable, "-m", "uvicorn", "testproject.asgi:application", "--port", str(port)],
        "uvicorn",
        PGAPPNAME=APP_NAME,  # libpq names its connections after it
    )

    def answers() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(lambda: process.poll() is not None or answers(), what="uvicorn to listen")
    assert process.poll() is None, Path(process.log_path).read_text()  # type: ignore[attr-defined]
    yield Server(process, port)


@pytest.fixture
def session_cookie(django_user_model) -> str:
    """A logged-in superuser's session, for requests to the uvicorn server."""
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("ops", "ops@example.com", "pw"))
    return f"sessionid={client.cookies['sessionid'].value}"


def test_async_views_start_workflows_and_wait_for_them(uvicorn: Server):
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda n: uvicorn.get(f"/quote/{n}/"), range(100, 120)))
    assert [(a["amount"], a["tax"]) for a in answers] == [(n, n // 5) for n in range(100, 120)]
    for answer in answers:
        assert DBOS.get_workflow_status(answer["workflow_id"]).status == "SUCCESS"


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]  # the writer keeps it open


async def _open_stream(port: int, path: str, cookie: str) -> Stream:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return reader, writer


async def _next_event(stream: Stream) -> str:
    """The next Server-Sent Event (uvicorn sends the body in chunks: size, data, CRLF)."""
    reader = stream[0]
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = (await reader.readexactly(size + 2))[:-2].decode()
        if chunk:
            return chunk


def test_the_stream_view_sends_each_event_as_it_is_written(uvicorn: Server, session_cookie: str):
    with SetWorkflowID("streams-one"):
        handle = DBOS.start_workflow(reports, "progress")
    path = "/dbos/workflows/streams-one/streams/progress/"

    async def read() -> list[str]:
        stream = await _open_stream(uvicorn.port, path, session_cookie)
        first = await asyncio.wait_for(_next_event(stream), 30)
        # The workflow still waits for its message: nothing was held back until the end.
        status = await asyncio.to_thread(DBOS.get_workflow_status, "streams-one")
        assert status.status == "PENDING"
        await asyncio.to_thread(DBOS.send, "streams-one", "now", "go")
        rest = [await asyncio.wait_for(_next_event(stream), 30) for _ in range(2)]
        return [first, *rest]

    assert asyncio.run(read()) == ['data: "first"\n\n', 'data: "second"\n\n', _END]
    assert handle.get_result() == "done"


def test_a_hundred_stream_readers_wait_together_holding_no_connection(
    uvicorn: Server, session_cookie: str, is_postgres: bool
):
    """Each reader waits on the event loop, not in a thread that blocks: all hundred get their
    first event while the workflow still runs, and none keeps a database connection open."""
    with SetWorkflowID("streams-many"):
        handle = DBOS.start_workflow(reports, "progress")
    path = "/dbos/workflows/streams-many/streams/progress/"

    async def read_all() -> tuple[int | None, list[list[str]]]:
        streams = [await _open_stream(uvicorn.port, path, session_cookie) for _ in range(READERS)]
        firsts = await asyncio.wait_for(
            asyncio.gather(*(_next_event(stream) for stream in streams)), 60
        )
        status = await asyncio.to_thread(DBOS.get_workflow_status, "streams-many")
        assert status.status == "PENDING"  # all hundred are waiting for the second value
        connections = await asyncio.to_thread(_server_connections) if is_postgres else None
        await asyncio.to_thread(DBOS.send, "streams-many", "now", "go")
        rests = await asyncio.wait_for(asyncio.gather(*(_rest(s) for s in streams)), 60)
        return connections, [[first, *rest] for first, rest in zip(firsts, rests, strict=True)]

    connections, events = asyncio.run(read_all())
    assert events == [['data: "first"\n\n', 'data: "second"\n\n', _END]] * READERS
    # The engine's own (a few database threads, the listener), not one per reader.
    assert connections is None or connections < 15, connections
    assert handle.get_result() == "done"


def _server_connections() -> int:
    """Connections the uvicorn process has open to PostgreSQL (its application_name)."""
    with django_connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
        )
        return int(cursor.fetchone()[0])


async def _rest(stream: Stream) -> list[str]:
    return [await _next_event(stream), await _next_event(stream)]
