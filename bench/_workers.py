"""What the side processes of ``queues.py`` and ``scheduler.py`` share (standard library only;
psycopg is imported where it is used, both venvs have it).

- ``BenchWorkflows``: the workflows both sides run, declared with either side's ``DBOS`` (the
  django-dbos processes get them from ``_bench_app.workflows``, autodiscovered);
- ``WorkerProcess``: a worker subprocess (``manage.py rundbosworker``, or a DBOS process that
  only dequeues), its output in a log file, stopped with SIGTERM;
- ``WorkflowTable``: how to read each side's workflow table (the two schemas differ);
- the measurements: ``queue_suite`` (warm-up, throughput, idle dispatch latency) and
  ``watch_ticks`` (the drift of a per-second schedule).

All times compared here are wall-clock times (``time.time()``, the workers' clocks, the
database server's clock) of one machine.
"""

from __future__ import annotations

import datetime
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from _common import StartedHandle, ms, percentile

# The queue of queues.py, on both sides: no limits, default options.
QUEUE = "bench"
# The schedule of scheduler.py: every second (six fields, seconds first).
CRON = "* * * * * *"
TICK_PERIOD_S = 1.0
TABLE_SCHEDULE = "bench-tick"
# Printed by a DBOS worker process once it has launched and registered the queue.
READY_MARKER = "@@BENCH-WORKER-READY@@"
# Warm-up: rounds of this many workflows per worker, until every worker has run some.
WARMUP_PER_WORKER = 10
WARMUP_MIN_ROUNDS = 2
WORKER_READY_TIMEOUT_S = 120.0
WAIT_TIMEOUT_S = 600.0
# How often the driver polls the table while it waits for a burst or for the first tick.
POLL_S = 0.02
# Warm-up trials of a dispatch-latency measurement.
DISPATCH_WARMUP = 2
# After the tick window closes: time left for its last ticks to finish before they are read.
TICK_GRACE_S = 3.0
FIRST_TICK_TIMEOUT_S = 30.0


# Workflows ---------------------------------------------------------------------------------


class BenchWorkflows:
    """The benchmark workflows, declared with ``dbos.workflow``/``dbos.step`` (either DBOS).

    ``one_step(i)`` runs one trivial step; ``mark_start()`` returns, from its one step, the
    ``time.time()`` at which that step ran; ``tick(scheduled_time, context)`` is run by a schedule
    made with ``DBOS.create_schedule``, and ``code_tick(scheduled_time, actual_time)`` by
    ``@DBOS.scheduled`` (django-dbos only): both return their times as epoch seconds.
    """

    def __init__(self, dbos: Any) -> None:
        @dbos.step(name="bench_echo")
        def echo(i: int) -> int:
            return i

        @dbos.step(name="bench_clock")
        def clock() -> float:
            return time.time()

        @dbos.workflow(name="bench_one_step")
        def one_step(i: int) -> int:
            return echo(i)

        @dbos.workflow(name="bench_mark_start")
        def mark_start() -> float:
            return clock()

        @dbos.workflow(name="bench_tick")
        def tick(scheduled_time: datetime.datetime, context: Any) -> dict[str, float]:
            return {"scheduled": scheduled_time.timestamp(), "ran": clock()}

        @dbos.workflow(name="bench_code_tick")
        def code_tick(
            scheduled_time: datetime.datetime, actual_time: datetime.datetime
        ) -> dict[str, float]:
            return {
                "scheduled": scheduled_time.timestamp(),
                "actual": actual_time.timestamp(),
                "ran": clock(),
            }

        self.one_step, self.mark_start = one_step, mark_start
        self.tick, self.code_tick = tick, code_tick


# Worker processes --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the side process dies (Linux), so that a
    side killed by the orchestrator's timeout leaves no worker behind."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class WorkerProcess:
    """A worker subprocess whose stdout and stderr go to ``log_path``."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, marker: str, timeout: float = WORKER_READY_TIMEOUT_S) -> None:
        """Wait until the worker prints ``marker``."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready after {timeout} s:\n{self.tail()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the worker process so far (Linux), else None."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


BENCH_DIR = Path(__file__).resolve().parent
MANAGE_PY = BENCH_DIR.parent / "manage.py"


def worker_env() -> dict[str, str]:
    """The environment of a ``rundbosworker`` subprocess of a django-dbos side: the side's,
    plus ``bench/`` on the path (for ``_bench_settings`` and ``_bench_app``)."""
    path = [p for p in (os.environ.get("PYTHONPATH"), str(BENCH_DIR)) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def worker(log: Path, env: dict[str, str], *options: str) -> WorkerProcess:
    """A ``manage.py rundbosworker`` process of a django-dbos side, with these options."""
    return WorkerProcess([sys.executable, str(MANAGE_PY), "rundbosworker", *options], env, log)


# The workflow tables -----------------------------------------------------------------------


class Row(NamedTuple):
    workflow_id: str
    name: str
    status: str
    executor_id: str | None
    created: float  # epoch seconds: the row was inserted (enqueued, or fired by a schedule)
    started: float | None  # a worker claimed it (dequeued)
    finished: float | None  # its status was last updated (completed, for a finished one)


class WorkflowTable:
    """Reads one side's workflow-status table with psycopg, in autocommit."""

    FINISHED = ("SUCCESS", "ERROR")

    def __init__(
        self, url: str, table: str, id_column: str, created: str, started: str, finished: str
    ) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.table, self.id_column = table, id_column
        self.columns = (
            f"{id_column}, name, status, executor_id, ({created})::float8, ({started})::float8, "
            f"({finished})::float8"
        )

    @classmethod
    def django_dbos(cls, url: str) -> WorkflowTable:
        """``dbos_workflow_status``: timestamps with time zone, stamped by the processes."""
        return cls(
            url,
            "dbos_workflow_status",
            "workflow_id",
            "extract(epoch FROM created_at)",
            "extract(epoch FROM started_at)",
            "extract(epoch FROM updated_at)",
        )

    @classmethod
    def dbos(cls, url: str) -> WorkflowTable:
        """DBOS's ``dbos.workflow_status``: epoch milliseconds."""
        return cls(
            url,
            "dbos.workflow_status",
            "workflow_uuid",
            "created_at / 1000.0",
            "started_at_epoch_ms / 1000.0",
            "coalesce(completed_at, updated_at) / 1000.0",
        )

    def rows(self, where: str, params: Sequence[Any]) -> list[Row]:
        sql = f"SELECT {self.columns} FROM {self.table} WHERE {where}"
        return [Row(*r) for r in self.conn.execute(sql, params).fetchall()]

    def by_ids(self, ids: list[str]) -> list[Row]:
        return self.rows(f"{self.id_column} = ANY(%s)", [ids])

    def by_name(self, name: str) -> list[Row]:
        return self.rows("name = %s", [name])

    def count_finished(self, ids: list[str]) -> int:
        where = f"{self.id_column} = ANY(%s) AND status = ANY(%s)"
        row = self.conn.execute(
            f"SELECT count(*) FROM {self.table} WHERE {where}", [ids, list(self.FINISHED)]
        ).fetchone()
        return int(row[0])

    def wait_finished(self, ids: list[str], timeout: float = WAIT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while self.count_finished(ids) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids)} workflows not finished after {timeout} s")
            time.sleep(POLL_S)

    def close(self) -> None:
        self.conn.close()


def stats_ms(samples_s: Sequence[float]) -> dict[str, Any]:
    """Samples in seconds -> n, p50/p90/p99, min, max and mean in milliseconds."""
    return {
        "n": len(samples_s),
        "p50_ms": ms(statistics.median(samples_s)),
        "p90_ms": ms(percentile(samples_s, 90)),
        "p99_ms": ms(percentile(samples_s, 99)),
        "max_ms": ms(max(samples_s)),
        "min_ms": ms(min(samples_s)),
        "mean_ms": ms(statistics.fmean(samples_s)),
    }


# Queues ------------------------------------------------------------------------------------


@dataclass
class QueueSide:
    """How the queue measurements drive one side: the driver enqueues; the worker processes,
    and with ``in_process`` the driver's own process too (DBOS only), dequeue."""

    enqueue_one: Callable[[int], StartedHandle]  # bench_one_step(i) on QUEUE
    enqueue_mark: Callable[[str], StartedHandle]  # bench_mark_start() on the named queue
    result: Callable[[StartedHandle], Any]  # wait for a workflow's result
    table: WorkflowTable
    workers: Sequence[WorkerProcess]
    in_process: bool = False

    @property
    def executors(self) -> int:
        return len(self.workers) + self.in_process

    def cpu_seconds(self) -> float | None:
        """CPU used so far by the processes that run workflows (the driver's own, enqueues
        included, when it runs workflows too)."""
        seconds = [w.cpu_seconds() for w in self.workers]
        if any(s is None for s in seconds):
            return None
        return sum(s for s in seconds if s is not None) + (
            time.process_time() if self.in_process else 0.0
        )


def warm_up(side: QueueSide) -> dict[str, Any]:
    """Rounds of workflows through the queue until every executor has run some of them."""
    per_round = WARMUP_PER_WORKER * side.executors
    by_executor: Counter[str] = Counter()
    rounds = 0
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while rounds < WARMUP_MIN_ROUNDS or len(by_executor) < side.executors:
        if time.monotonic() > deadline:
            raise TimeoutError(f"warm-up: only executors {dict(by_executor)} ran workflows")
        handles = [side.enqueue_one(i) for i in range(per_round)]
        for handle in handles:
            side.result(handle)
        rows = side.table.by_ids([h.get_workflow_id() for h in handles])
        by_executor.update(row.executor_id or "?" for row in rows)
        rounds += 1
    return {"rounds": rounds, "workflows": rounds * per_round, "by_executor": dict(by_executor)}


def queue_throughput(side: QueueSide, n: int) -> dict[str, Any]:
    """Enqueue ``n`` one-step workflows from this thread; time until the last one completed.

    The clock starts just before the first enqueue (``time.time()``) and stops at the largest
    completion time in the table, as in ``/work/shared/bench/dbos_anchor.py``.
    """
    cpu0 = side.cpu_seconds()
    t0_wall, t0, c0 = time.time(), time.perf_counter(), time.process_time()
    ids = [side.enqueue_one(i).get_workflow_id() for i in range(n)]
    enqueue_s, enqueue_cpu = time.perf_counter() - t0, time.process_time() - c0
    side.table.wait_finished(ids)
    seen_s = time.perf_counter() - t0
    cpu1 = side.cpu_seconds()
    rows = side.table.by_ids(ids)
    statuses = Counter(row.status for row in rows)
    if statuses.get("SUCCESS") != n:
        raise AssertionError(f"throughput burst: statuses {dict(statuses)}")
    last_finished = max(row.finished for row in rows if row.finished is not None)
    first_started = min(row.started for row in rows if row.started is not None)
    elapsed = last_finished - t0_wall
    out: dict[str, Any] = {
        "n": n,
        "enqueue_s": enqueue_s,
        "enqueue_per_s": n / enqueue_s,
        "enqueue_cpu_ms_per_wf": ms(enqueue_cpu / n),
        "elapsed_s": elapsed,
        "wf_per_s": n / elapsed,
        "first_started_after_s": first_started - t0_wall,
        "drain_per_s": n / (last_finished - first_started),
        "seen_by_driver_s": seen_s,
        "by_executor": dict(Counter(row.executor_id or "?" for row in rows)),
    }
    if cpu0 is not None and cpu1 is not None:
        # Until the driver saw the last completion (polling every POLL_S): a slight overcount.
        out["workers_cpu_ms_per_wf"] = ms((cpu1 - cpu0) / n)
    return out


def dispatch_latency(side: QueueSide, queue: str, gap_s: float, trials: int) -> dict[str, Any]:
    """Idle-queue dispatch: from just before the enqueue call to the first step's clock.

    Before each trial the driver sleeps a random U(0, ``gap_s``): the previous trial ended just
    after a dispatch, so this lands the enqueue at a random phase of a worker's polling loop.
    """
    to_step, to_claim, call = [], [], []
    for i in range(DISPATCH_WARMUP + trials):
        time.sleep(random.uniform(0.0, gap_s))
        t0 = time.time()
        handle = side.enqueue_mark(queue)
        t_called = time.time()
        ran = float(side.result(handle))
        (row,) = side.table.by_ids([handle.get_workflow_id()])
        if row.started is None:
            raise AssertionError(f"{row.workflow_id} has no start time")
        if i >= DISPATCH_WARMUP:
            to_step.append(ran - t0)
            to_claim.append(row.started - t0)
            call.append(t_called - t0)
    return {
        "queue": queue,
        "gap_s": gap_s,
        "trials": trials,
        "to_first_step": stats_ms(to_step),
        "to_claim": stats_ms(to_claim),
        "enqueue_call": stats_ms(call),
        "samples_ms": [ms(s) for s in to_step],
    }


def queue_suite(side: QueueSide, n: int, trials: int, gap_s: float) -> dict[str, Any]:
    """Warm-up, the throughput burst, then the dispatch latency on the idle queue."""
    return {
        "executors": side.executors,
        "in_process": side.in_process,
        "warm_up": warm_up(side),
        "throughput": queue_throughput(side, n),
        "dispatch": {"default": dispatch_latency(side, QUEUE, gap_s, trials)},
    }


# Schedules ---------------------------------------------------------------------------------


def watch_ticks(
    table: WorkflowTable,
    workflow_name: str,
    id_prefix: str,
    seconds: float,
    result: Callable[[str], dict[str, float]],
) -> dict[str, Any]:
    """Wait for the schedule's first run, let it run ``seconds``, then measure each tick.

    A tick's scheduled time is read from its workflow id (``<id_prefix><ISO time>``, the same
    on both sides). Ticks scheduled after the window's end are left out; those in the window
    have ``TICK_GRACE_S`` more to finish. Drifts, each minus the scheduled time: ``fire`` (the
    row was inserted), ``start`` (a worker claimed it), ``step`` (the clock of its first
    step) and ``actual_time`` (the time the scheduler passed, for ``@DBOS.scheduled``).
    """
    deadline = time.monotonic() + FIRST_TICK_TIMEOUT_S
    while not table.by_name(workflow_name):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no run of {workflow_name} within {FIRST_TICK_TIMEOUT_S} s")
        time.sleep(POLL_S)
    window_start = time.time()
    time.sleep(seconds)
    window_end = time.time()
    time.sleep(TICK_GRACE_S)
    ticks = []
    for row in table.by_name(workflow_name):
        scheduled = datetime.datetime.fromisoformat(row.workflow_id.removeprefix(id_prefix))
        tick: dict[str, Any] = {
            "workflow_id": row.workflow_id,
            "status": row.status,
            "scheduled": scheduled.timestamp(),
            "created": row.created,
            "started": row.started,
        }
        if row.status == "SUCCESS":
            output = result(row.workflow_id)
            if abs(output["scheduled"] - tick["scheduled"]) > 1e-6:
                raise AssertionError(f"{row.workflow_id} ran for {output['scheduled']}")
            tick["ran"] = output["ran"]
            tick["actual"] = output.get("actual")
        ticks.append(tick)
    ticks.sort(key=lambda t: t["scheduled"])
    return {
        "workflow": workflow_name,
        "seconds": seconds,
        "window_start": window_start,
        "window_end": window_end,
        **tick_drift(ticks, window_end),
        "ticks": ticks,
    }


def tick_drift(ticks: list[dict[str, Any]], window_end: float) -> dict[str, Any]:
    """Drift statistics of the ticks scheduled up to ``window_end``; missed and duplicated."""
    window = [t for t in ticks if t["scheduled"] <= window_end]
    scheduled = [t["scheduled"] for t in window]
    first = min(scheduled)
    count = int((window_end - first) // TICK_PERIOD_S) + 1
    expected = {first + k * TICK_PERIOD_S for k in range(count)}
    seen = Counter(scheduled)
    drift: dict[str, Any] = {}
    figures = (
        ("fire", "created"),
        ("start", "started"),
        ("step", "ran"),
        ("actual_time", "actual"),
    )
    for figure, key in figures:
        samples = [t[key] - t["scheduled"] for t in window if t.get(key) is not None]
        if samples:
            drift[figure] = stats_ms(samples)
    return {
        "ticks_in_window": len(window),
        "expected": len(expected),
        "missed": sorted(expected - set(seen)),
        "duplicated": sorted(s for s, count in seen.items() if count > 1),
        "off_grid": sorted(s for s in seen if s % TICK_PERIOD_S),
        "not_succeeded": [t["workflow_id"] for t in window if t["status"] != "SUCCESS"],
        "drift": drift,
    }
