"""What the two sides of ``waiting.py`` share: start N workflows that wait (in ``recv`` or in
``sleep``), wake them all, and sample the process and its database connections meanwhile.

Imported by ``_waiting_django.py`` and ``_waiting_dbos.py``, each under its own interpreter
(both venvs have psycopg). Each side passes its ``DBOS`` class, its two workflows and the SQL
that reads its own tables; the two libraries have the same names for every call made here.
Every wait is bounded (by the side's budget, and by a time without progress), so a stalled
engine ends as a count below the expected one, never as a hang.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from _common import proc_status

TOPIC = "go"
# recv's timeout: far longer than any run, so that only a message ends the wait.
RECV_TIMEOUT_S = 3600
# How often the sampler reads RSS, threads and connections, and the waits poll their counts
# (seq scans of up to a few hundred thousand rows: not more often, on a machine this small).
# The wake-up time does not depend on it: it ends at the last completion the database recorded.
SAMPLE_S = 0.5
POLL_S = 0.5
# The shortest sleep a workflow is given: DBOS 3.4.0 returns at once, recording nothing, for 0.
MIN_SLEEP_S = 0.001
# Workflows whose results are read back through DBOS.retrieve_workflow, spread over the ids.
SPOT_CHECKS = 10


@dataclass(frozen=True)
class Queries:
    """A side's SQL on its own tables (the two libraries name them differently)."""

    # Recorded wait deadlines: recv and sleep both record theirs as a 'DBOS.sleep' operation
    # before they block, so this counts the workflows that are waiting (or about to).
    waiting: str
    # (status, count) rows of the workflow table.
    statuses: str
    # Epoch seconds of the last workflow to end in SUCCESS.
    last_success: str
    # Every recorded operation: grows as woken workflows go on, before any of them finishes.
    operations: str


class Monitor:
    """One autocommit connection of its own to the side's database, for the counts and the
    connection samples (shared by the sampler thread; psycopg serializes its use)."""

    def __init__(self, db_url: str, queries: Queries) -> None:
        self.conn = psycopg.connect(db_url, autocommit=True)
        self.queries = queries

    def scalar(self, sql: str) -> Any:
        row = self.conn.execute(sql).fetchone()
        return row[0] if row else None

    def waiting(self) -> int:
        return int(self.scalar(self.queries.waiting))

    def statuses(self) -> dict[str, int]:
        return {str(s): int(c) for s, c in self.conn.execute(self.queries.statuses).fetchall()}

    def succeeded(self) -> int:
        return self.statuses().get("SUCCESS", 0)

    def operations(self) -> int:
        return int(self.scalar(self.queries.operations))

    def last_success(self) -> float | None:
        value = self.scalar(self.queries.last_success)
        return None if value is None else float(value)

    def connections(self) -> int:
        """Client connections to this database, other than this monitor's own."""
        return int(
            self.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
        )

    def close(self) -> None:
        self.conn.close()


def reading(monitor: Monitor) -> dict[str, float]:
    """This process's RSS and threads, and the database's connections, now."""
    status = proc_status()
    return {
        "rss_mb": status.get("VmRSS", 0) / 1024,
        "threads": status.get("Threads", 0),
        "connections": monitor.connections(),
    }


class Sampler(threading.Thread):
    """Takes a ``reading`` every SAMPLE_S and keeps them all, for the peaks (VmHWM gives the
    peak RSS exactly; the thread and connection peaks are those of the samples)."""

    def __init__(self, monitor: Monitor) -> None:
        super().__init__(name="waiting-sampler", daemon=True)
        self.monitor = monitor
        self.t0 = time.time()
        self.samples: list[dict[str, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_S):
            self.samples.append({"t": time.time() - self.t0, **reading(self.monitor)})

    def stop(self) -> dict[str, float]:
        """Stop sampling; return the peaks."""
        self._done.set()
        self.join()
        samples = self.samples or [{"threads": 0, "connections": 0}]
        return {
            "rss_mb": proc_status().get("VmHWM", 0) / 1024,
            "threads": max(s["threads"] for s in samples),
            "connections": max(s["connections"] for s in samples),
        }


def log(message: str) -> None:
    """Progress on stderr (the orchestrator keeps it in the side's log file)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def wait_until(
    what: str,
    count: Callable[[], int],
    target: int,
    deadline: float,
    stall_s: float,
    progress: Callable[[], int] | None = None,
    progress_from: float = 0.0,
) -> dict[str, Any]:
    """Poll ``count`` until it reaches ``target``; give up at ``deadline`` (epoch seconds) or
    after ``stall_s`` without progress: of ``count``, or of ``progress`` when given (the
    first of many workflows woken at once may take long to finish while the others move on),
    counted from ``progress_from`` at the earliest (a sleep's wake time: none is due before)."""
    t0 = time.time()
    last: tuple[int, int] | None = None
    since = max(t0, progress_from)
    while True:
        n, now = count(), time.time()
        if n >= target:
            log(f"{what}: {n} / {target} after {now - t0:.1f} s")
            return {"reached": True, "count": n, "s": now - t0}
        mark = (n, progress() if progress is not None else 0)
        if mark != last:
            last, since = mark, max(now, progress_from)
        gave_up = "deadline" if now >= deadline else "stalled" if now - since >= stall_s else None
        if gave_up is not None:
            log(f"{what}: gave up ({gave_up}) at {n} / {target} after {now - t0:.1f} s")
            return {"reached": False, "count": n, "s": now - t0, "gave_up": gave_up}
        time.sleep(min(POLL_S, deadline - now))  # the last count is taken at the deadline


def spot_check(dbos: Any, ids: list[str]) -> dict[str, Any]:
    """Read back a few results: workflow ``i`` must return ``i`` (the message sent to it, or
    its own argument)."""
    step = max(1, len(ids) // SPOT_CHECKS)
    picked = sorted({*range(0, len(ids), step), len(ids) - 1})
    results = {i: dbos.retrieve_workflow(ids[i]).get_result() for i in picked}
    return {"checked": len(picked), "wrong": {ids[i]: v for i, v in results.items() if v != i}}


class WaitingWorkflows:
    """The two workflows both sides run, declared with either side's ``DBOS`` (as
    ``_workers.BenchWorkflows`` declares the queue benchmarks' ones).

    ``wait_for_message(i)`` waits in ``recv`` on ``TOPIC``, then returns the message from a
    trivial step; ``wait_for_time(i, seconds)`` sleeps, then returns ``i`` from that step.
    """

    def __init__(self, dbos: Any) -> None:
        @dbos.step(name="waiting_echo")
        def echo(value: Any) -> Any:
            return value

        @dbos.workflow(name="waiting_for_message")
        def wait_for_message(i: int) -> Any:
            return echo(dbos.recv(TOPIC, timeout_seconds=RECV_TIMEOUT_S))

        @dbos.workflow(name="waiting_for_time")
        def wait_for_time(i: int, seconds: float) -> int:
            dbos.sleep(seconds)
            return echo(i)

        self.wait_for_message = wait_for_message
        self.wait_for_time = wait_for_time


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--mode", choices=("recv", "sleep"), required=True)
    ap.add_argument("--n", type=int, required=True, help="workflows to start")
    ap.add_argument("--budget-s", type=float, required=True, help="give up waiting after this")
    ap.add_argument("--stall-s", type=float, default=60.0, help="give up after no progress")
    ap.add_argument(
        "--sleep-s", type=float, default=30.0, help="sleep: from the first start to the wake time"
    )


def measure(
    dbos: Any,
    wait_for_message: Callable[[int], Any],
    wait_for_time: Callable[[int, float], Any],
    monitor: Monitor,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start ``args.n`` workflows, wait until all wait, wake them, wait until all finished.

    ``recv``: each waits for one message, sent from here once all wait; the wake-up time runs
    from the first send. ``sleep``: each is given the time left until one common wake time
    (``--sleep-s`` after the first start), so that all wake together; the wake-up time runs
    from that moment. Either way it ends at the last completion recorded in the database.
    """
    n, deadline = args.n, time.time() + args.budget_s
    sampler = Sampler(monitor)
    baseline = reading(monitor)
    sampler.start()
    cpu0, t0 = time.process_time(), time.time()
    wake_at = t0 + args.sleep_s
    log(f"{args.mode}: starting {n} workflows")
    if args.mode == "recv":
        ids = [dbos.start_workflow(wait_for_message, i).get_workflow_id() for i in range(n)]
    else:
        ids = [
            dbos.start_workflow(
                wait_for_time, i, max(MIN_SLEEP_S, wake_at - time.time())
            ).get_workflow_id()
            for i in range(n)
        ]
    t_started, cpu_started = time.time(), time.process_time()
    log(f"started {n} in {t_started - t0:.1f} s")
    # All must be waiting before the first wakes: in sleep mode, give up at the wake time.
    waiting_deadline = deadline if args.mode == "recv" else min(deadline, wake_at)
    waiting = wait_until("waiting", monitor.waiting, n, waiting_deadline, args.stall_s)
    all_waiting = reading(monitor)
    result: dict[str, Any] = {
        "mode": args.mode,
        "n": n,
        "start": {
            "s": t_started - t0,
            "wf_per_s": n / max(t_started - t0, 1e-9),
            "cpu_s": cpu_started - cpu0,
        },
        "waiting": waiting,
        "when_waiting": all_waiting,
        "baseline": baseline,
    }
    if args.mode == "recv":
        t_wake = time.time()
        sent = 0
        for i, workflow_id in enumerate(ids):
            if time.time() >= deadline:
                break
            dbos.send(workflow_id, i, topic=TOPIC)
            sent += 1
        send_s = time.time() - t_wake
        log(f"sent {sent} messages in {send_s:.1f} s")
        result["send"] = {"sent": sent, "s": send_s, "per_s": sent / max(send_s, 1e-9)}
    else:
        t_wake = wake_at
        result["sleep"] = {"sleep_s": args.sleep_s, "started_before_wake": t_started < wake_at}
    finished = wait_until(
        "finished",
        monitor.succeeded,
        n,
        deadline,
        args.stall_s,
        progress=monitor.operations,
        progress_from=t_wake,
    )
    last = monitor.last_success()
    result["finished"] = {**finished, "statuses": monitor.statuses(), "last_success": last}
    # To the last completion recorded in the database, once all have finished.
    to_last = last - t_wake if finished["reached"] and last is not None else None
    result["wake_to_finish_s"] = to_last
    result["wake_to_finish_wf_per_s"] = n / to_last if to_last else None
    result["cpu_s"] = time.process_time() - cpu0
    result["cpu_ms_per_wf"] = 1000.0 * result["cpu_s"] / n
    result["peak"] = sampler.stop()
    result["rss_kb_per_wf"] = 1024 * (all_waiting["rss_mb"] - baseline["rss_mb"]) / n
    checked = spot_check(dbos, ids) if finished["reached"] else None
    result["spot_check"] = checked
    result["samples"] = sampler.samples
    result["ok"] = bool(waiting["reached"] and checked is not None and not checked["wrong"])
    return result
