"""Measurement helpers shared by the benchmark side processes (standard library only).

Each side process (``_floor_side.py``, ``_dbos_side.py``, ``_django_side.py``) runs under its
own interpreter, imports this module from its own directory, measures, and prints one line
``RESULT_MARKER + json`` on stdout, which the orchestrator (``core.py``, ``messaging.py``)
collects. The workflow sides run the same measuring code against either ``DBOS`` class: both
have the same names for what is measured here.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

RESULT_MARKER = "@@BENCH-RESULT@@ "

# Warm-up calls before timing (connection pools, prepared statements, code paths).
WARMUP = 20
# Warm-up trials of each messaging measurement.
MESSAGING_WARMUP = 3
# How long the driver lets a waiter block (in recv or get_event) before it wakes it.
SETTLE_S = 0.1
# Bound on every in-memory wait of the messaging driver, so that a lost wake-up fails loudly.
SIGNAL_TIMEOUT_S = 30.0


class Handle(Protocol):
    """What both DBOS and django-dbos return from ``DBOS.start_workflow``."""

    def get_result(self) -> Any: ...


class StartedHandle(Handle, Protocol):
    def get_workflow_id(self) -> str: ...


def ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, ``p`` in 0..100."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100.0 * len(ordered)) - 1))
    return ordered[k]


def summarize(samples_s: Sequence[float]) -> dict[str, float]:
    """Wall-clock samples in seconds -> summary in milliseconds."""
    return {
        "n": len(samples_s),
        "p50_ms": ms(statistics.median(samples_s)),
        "p90_ms": ms(percentile(samples_s, 90)),
        "p99_ms": ms(percentile(samples_s, 99)),
        "mean_ms": ms(statistics.fmean(samples_s)),
        "min_ms": ms(min(samples_s)),
    }


def admin_url(db_url: str) -> str:
    """The same server, but the ``postgres`` maintenance database."""
    parts = urlsplit(db_url)
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))


def database_name(db_url: str) -> str:
    name = urlsplit(db_url).path.lstrip("/")
    if not name or name in ("postgres", "template0", "template1"):
        raise SystemExit(f"refusing to drop database {name!r}")
    return name


def reset_database(db_url: str) -> None:
    """DROP (forcing out any session) and CREATE the database of ``db_url``."""
    import psycopg  # both venvs have it; imported here to keep this module stdlib-only

    name = database_name(db_url)
    with psycopg.connect(admin_url(db_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def measure_inline(workflow: Callable[[int], int], pairs: int, steps: int) -> dict[str, Any]:
    """Direct calls of ``workflow(0)`` and ``workflow(steps)``, interleaved.

    The order within each pair alternates, so drifts of a noisy machine hit both equally. The
    per-step overhead is ``(p50(steps) - p50(0)) / steps``. Direct calls run on the calling
    thread, so ``time.thread_time`` measures their client-side CPU; process CPU adds whatever
    background threads did meanwhile.
    """
    for _ in range(WARMUP):
        workflow(0)
        workflow(steps)
    wall: dict[int, list[float]] = {0: [], steps: []}
    cpu: dict[int, list[float]] = {0: [], steps: []}
    proc0 = time.process_time()
    for i in range(pairs):
        for n in (0, steps) if i % 2 == 0 else (steps, 0):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            result = workflow(n)
            wall[n].append(time.perf_counter() - t0)
            cpu[n].append(time.thread_time() - c0)
            if result != n * (n - 1) // 2:
                raise AssertionError(f"workflow({n}) returned {result!r}")
    proc_cpu = time.process_time() - proc0
    zero, many = summarize(wall[0]), summarize(wall[steps])
    cpu0, cpu_n = ms(statistics.fmean(cpu[0])), ms(statistics.fmean(cpu[steps]))
    return {
        "pairs": pairs,
        "steps": steps,
        "wf_0": zero,
        f"wf_{steps}": many,
        "per_step_ms": (many["p50_ms"] - zero["p50_ms"]) / steps,
        "thread_cpu_ms_wf_0": cpu0,
        f"thread_cpu_ms_wf_{steps}": cpu_n,
        "thread_cpu_ms_per_step": (cpu_n - cpu0) / steps,
        "process_cpu_ms_per_pair": ms(proc_cpu / pairs),
    }


def measure_start(
    start: Callable[[int], Handle], count: int, steps: int, warmup: int = WARMUP
) -> dict[str, Any]:
    """``count`` starts of a ``steps``-step workflow from this thread, then wait for all."""
    for _ in range(warmup):
        start(steps).get_result()
    proc0 = time.process_time()
    t0 = time.perf_counter()
    handles = [start(steps) for _ in range(count)]
    t_submitted = time.perf_counter()
    results = [h.get_result() for h in handles]
    elapsed = time.perf_counter() - t0
    proc_cpu = time.process_time() - proc0
    expected = steps * (steps - 1) // 2
    if any(r != expected for r in results):
        raise AssertionError("a started workflow returned a wrong result")
    return {
        "count": count,
        "steps": steps,
        "elapsed_s": elapsed,
        "submit_s": t_submitted - t0,
        "wf_per_s": count / elapsed,
        "submit_per_s": count / (t_submitted - t0),
        "process_cpu_ms_per_wf": ms(proc_cpu / count),
    }


# Messaging ------------------------------------------------------------------------------------


class Signals:
    """In-memory signals between the messaging driver and its workflows, by workflow id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[tuple[str, str], threading.Event] = {}
        self.stamps: dict[tuple[str, str], float] = {}

    def event(self, name: str, workflow_id: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault((name, workflow_id), threading.Event())

    def stamp(self, name: str, workflow_id: str) -> None:
        self.stamps[(name, workflow_id)] = time.perf_counter()


def wait_for(event: threading.Event, what: str) -> None:
    if not event.wait(SIGNAL_TIMEOUT_S):
        raise TimeoutError(f"no {what} within {SIGNAL_TIMEOUT_S} s")


class Messaging:
    """send -> recv and set_event -> get_event latencies, the same code for either ``DBOS``.

    Construct it before the DBOS side launches: it declares its two workflows with
    ``dbos.workflow``. Each trial starts a fresh workflow, waits until it is about to block,
    gives the blocking call ``SETTLE_S`` to set up, then wakes it; in-memory signals and
    ``time.perf_counter`` stamps (one process, one clock) time the wake-up.
    """

    def __init__(self, dbos: Any) -> None:
        self.dbos = dbos
        self.signals = signals = Signals()

        @dbos.workflow(name="bench_recv")
        def wf_recv() -> Any:
            wid = dbos.workflow_id
            signals.event("ready", wid).set()
            message = dbos.recv("bench", timeout_seconds=60)
            signals.stamp("received", wid)  # recv() returned inside the workflow
            return message

        @dbos.workflow(name="bench_set_event")
        def wf_set_event() -> None:
            wid = dbos.workflow_id
            signals.event("ready", wid).set()
            wait_for(signals.event("go", wid), "go signal")
            signals.stamp("setting", wid)  # just before set_event()
            dbos.set_event("k", 1)
            signals.stamp("set", wid)

        self.wf_recv, self.wf_set_event = wf_recv, wf_set_event

    def _start(self, workflow: Callable[[], Any]) -> tuple[StartedHandle, str]:
        """Start a workflow and wait until it is about to block."""
        handle: StartedHandle = self.dbos.start_workflow(workflow)
        wid = handle.get_workflow_id()
        wait_for(self.signals.event("ready", wid), "workflow start")
        return handle, wid

    def send_recv(self, trials: int) -> dict[str, Any]:
        """From just before ``send`` (outside any workflow) to just after ``recv`` returns in
        the workflow; also the ``send`` call alone, and until ``get_result`` returns."""
        wake, call, result = [], [], []
        for i in range(MESSAGING_WARMUP + trials):
            handle, wid = self._start(self.wf_recv)
            time.sleep(SETTLE_S)  # let recv() finish its setup and block
            t0 = time.perf_counter()
            self.dbos.send(wid, "hello", "bench")
            t_sent = time.perf_counter()
            message = handle.get_result()
            t_done = time.perf_counter()
            if message != "hello":
                raise AssertionError(f"recv() returned {message!r}")
            if i >= MESSAGING_WARMUP:
                wake.append(self.signals.stamps[("received", wid)] - t0)
                call.append(t_sent - t0)
                result.append(t_done - t0)
        return {
            "send_to_recv": summarize(wake),
            "send_call": summarize(call),
            "send_to_result": summarize(result),
            "samples_ms": [ms(s) for s in wake],
        }

    def set_get_event(self, trials: int) -> dict[str, Any]:
        """From just before ``set_event`` in the workflow to just after ``get_event`` returns
        in a thread outside any workflow, started ``SETTLE_S`` earlier; also the ``set_event``
        call alone."""
        wake, call = [], []
        for i in range(MESSAGING_WARMUP + trials):
            handle, wid = self._start(self.wf_set_event)
            got: dict[str, Any] = {}

            def waiter(wid: str = wid, got: dict[str, Any] = got) -> None:
                got["value"] = self.dbos.get_event(wid, "k", timeout_seconds=60)
                got["t"] = time.perf_counter()

            thread = threading.Thread(target=waiter, name=f"get_event-{i}")
            thread.start()
            time.sleep(SETTLE_S)  # let get_event() register and block
            self.signals.event("go", wid).set()
            thread.join(SIGNAL_TIMEOUT_S)
            handle.get_result()
            if got.get("value") != 1:
                raise AssertionError(f"get_event() returned {got.get('value')!r}")
            if i >= MESSAGING_WARMUP:
                setting = self.signals.stamps[("setting", wid)]
                wake.append(got["t"] - setting)
                call.append(self.signals.stamps[("set", wid)] - setting)
        return {
            "set_event_to_get_event": summarize(wake),
            "set_event_call": summarize(call),
            "samples_ms": [ms(s) for s in wake],
        }

    def run(self, trials: int) -> dict[str, Any]:
        return {"send_recv": self.send_recv(trials), "set_get_event": self.set_get_event(trials)}


def pg_settings(db_url: str) -> dict[str, str]:
    """The server's version and durability settings."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        return query_pg_settings(conn)


def query_pg_settings(conn: Any) -> dict[str, str]:
    """``pg_settings`` on an open psycopg connection."""
    rows = conn.execute(
        "SELECT name, setting FROM pg_settings WHERE name IN "
        "('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version')"
    ).fetchall()
    return dict(rows)


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads of a process, from /proc; {} once it is gone."""
    wanted = ("VmRSS", "VmHWM", "Threads")
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = (line.split(":", 1) for line in f)
            return {k: int(v.split()[0]) for k, v in fields if k in wanted}
    except (OSError, ValueError):
        return {}


def base_meta() -> dict[str, Any]:
    return {"python": platform.python_version(), "executable": sys.executable}


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
