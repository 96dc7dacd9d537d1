"""Side process of ``core.py``, ``messaging.py``, ``queues.py`` and ``scheduler.py``: DBOS
Transact for Python (``dbos==3.4.0``).

Run by the orchestrators with the ``.venv-dbos`` interpreter and ``--suite core`` (the
default), ``messaging``, ``queues`` or ``scheduler``; see those scripts for usage. ``core``,
``messaging`` and ``scheduler`` launch DBOS in this process. ``queues`` does not: it starts
``--workers`` processes of this script with ``--suite queue-worker`` (each launches DBOS and
dequeues), then enqueues through a ``DBOSClient``, like the django-dbos side's driver.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import (
    Messaging,
    base_meta,
    emit,
    measure_inline,
    measure_start,
    pg_settings,
    reset_database,
)
from _workers import (
    CRON,
    QUEUE,
    READY_MARKER,
    TABLE_SCHEDULE,
    BenchWorkflows,
    QueueSide,
    WorkerProcess,
    WorkflowTable,
    dispatch_latency,
    queue_suite,
    watch_ticks,
)
from dbos import DBOS, DBOSClient

# DBOS's default queue polling interval, and the faster one measured besides.
DEFAULT_POLL_S = 1.0
FAST_QUEUE, FAST_POLL_S = "bench_fast", 0.05


@DBOS.step()
def trivial_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_steps(n: int) -> int:
    return sum(trivial_step(i) for i in range(n))


def config(suite: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"bench-{suite}",
        "system_database_url": extra.pop("db"),
        "application_version": f"bench-{suite}-1",
        "log_level": "WARNING",
        **extra,
    }


def queue_worker(args: argparse.Namespace) -> None:
    """A DBOS process that only dequeues ``QUEUE``, until SIGTERM."""
    BenchWorkflows(DBOS)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config=config("queues", db=args.db, executor_id=f"bench-worker-{args.worker_id}"))
    DBOS.launch()
    DBOS.register_queue(QUEUE)  # every default: polling_interval_sec=1.0, no limits
    print(READY_MARKER, flush=True)
    stop.wait()
    DBOS.destroy()


def queues(args: argparse.Namespace, bench: BenchWorkflows | None) -> dict[str, Any]:
    """Start the worker processes one after the other (the first migrates), then drive them.

    With ``bench`` (``--enqueue in-process``), this process launches DBOS too, enqueues with
    ``Queue.enqueue`` and runs workflows itself, as DBOS applications do and as
    ``/work/shared/bench/dbos_anchor.py`` measured: ``--workers`` counts it as one of them.
    Otherwise it enqueues through a ``DBOSClient`` and runs nothing.
    """
    in_process = bench is not None
    count = args.workers - in_process
    with ExitStack() as stack:
        workers = []
        for i in range(count):
            cmd = [sys.executable, __file__, "--db", args.db, "--suite", "queue-worker"]
            log = Path(args.log_dir) / f"queues-dbos-{args.enqueue}-{args.workers}w-worker-{i}.log"
            worker = stack.enter_context(
                WorkerProcess([*cmd, "--worker-id", str(i)], dict(os.environ), log)
            )
            worker.wait_ready(READY_MARKER)
            workers.append(worker)
        names = {"one_step": "bench_one_step", "mark_start": "bench_mark_start"}
        enqueue: Callable[..., Any]
        register: Callable[..., Any]
        if bench is not None:
            # Launched after the workers: no thread may run here while they are forked.
            DBOS(config=config("queues", db=args.db, executor_id="bench-driver"))
            DBOS.launch()
            stack.callback(DBOS.destroy)
            functions = {"one_step": bench.one_step, "mark_start": bench.mark_start}
            registered = {QUEUE: DBOS.register_queue(QUEUE)}

            def enqueue(kind: str, queue: str, *wf_args: Any) -> Any:
                return registered[queue].enqueue(functions[kind], *wf_args)

            def register(queue: str, **options: Any) -> None:
                registered[queue] = DBOS.register_queue(queue, **options)

        else:
            client = DBOSClient(system_database_url=args.db, application_name="bench-queues")
            stack.callback(client.destroy)

            def enqueue(kind: str, queue: str, *wf_args: Any) -> Any:
                options: Any = {
                    "queue_name": queue,
                    "workflow_name": names[kind],
                    "app_version": "bench-queues-1",
                }
                return client.enqueue(options, *wf_args)

            register = client.register_queue

        table = WorkflowTable.dbos(args.db)
        stack.callback(table.close)
        side = QueueSide(
            enqueue_one=lambda i: enqueue("one_step", QUEUE, i),
            enqueue_mark=lambda queue: enqueue("mark_start", queue),
            result=lambda handle: handle.get_result(polling_interval_sec=0.01),
            table=table,
            workers=workers,
            in_process=in_process,
        )
        result = queue_suite(side, args.queue_n, args.trials, DEFAULT_POLL_S)
        # Besides, as in /work/shared/bench/dbos_anchor.py: a queue polled every 50 ms. The
        # queue managers look for new queues once a second.
        register(FAST_QUEUE, polling_interval_sec=FAST_POLL_S)
        time.sleep(2.5)
        result["dispatch"]["poll_50ms"] = dispatch_latency(
            side, FAST_QUEUE, FAST_POLL_S, args.trials
        )
        result["log_files"] = [str(w.log_path) for w in workers]
    result["enqueue"] = args.enqueue
    result["worker_exit_codes"] = [w.proc.returncode for w in workers]
    result["polling_interval_s"] = {QUEUE: DEFAULT_POLL_S, FAST_QUEUE: FAST_POLL_S}
    return result


def scheduler(bench: BenchWorkflows, args: argparse.Namespace) -> dict[str, Any]:
    """A per-second schedule made with ``DBOS.create_schedule``, run in this process."""
    DBOS.create_schedule(schedule_name=TABLE_SCHEDULE, workflow_fn=bench.tick, schedule=CRON)
    table = WorkflowTable.dbos(args.db)
    try:
        return watch_ticks(
            table,
            "bench_tick",
            f"sched-{TABLE_SCHEDULE}-",
            args.seconds,
            lambda workflow_id: DBOS.retrieve_workflow(workflow_id).get_result(),
        )
    finally:
        table.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument(
        "--suite",
        choices=("core", "messaging", "queues", "queue-worker", "scheduler"),
        default="core",
    )
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--start-n", type=int, default=1000)
    ap.add_argument("--start-steps", type=int, default=3)
    ap.add_argument("--trials", type=int, default=50, help="messaging or dispatch trials")
    ap.add_argument("--workers", type=int, default=1, help="queues: worker processes")
    ap.add_argument("--queue-n", type=int, default=1000, help="queues: workflows in the burst")
    ap.add_argument(
        "--enqueue",
        choices=("client", "in-process"),
        default="client",
        help="queues: enqueue with a DBOSClient, or launch DBOS here and run workflows too",
    )
    ap.add_argument("--worker-id", type=int, default=0, help="queue-worker: its number")
    ap.add_argument("--log-dir", default=tempfile.gettempdir(), help="queues: worker logs")
    ap.add_argument("--seconds", type=float, default=60.0, help="scheduler: length of the run")
    args = ap.parse_args()
    if args.suite == "queue-worker":
        queue_worker(args)
        return

    # Workflows are declared before DBOS.launch().
    messaging = Messaging(DBOS) if args.suite == "messaging" else None
    runs_here = args.suite == "scheduler" or (args.suite, args.enqueue) == ("queues", "in-process")
    bench = BenchWorkflows(DBOS) if runs_here else None
    reset_database(args.db)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    result: dict[str, Any]
    if args.suite == "queues":
        result = {"queues": queues(args, bench)}
    else:
        DBOS(config=config(args.suite, db=args.db))
        DBOS.launch()
        try:
            if messaging is not None:
                result = {"messaging": messaging.run(args.trials)}
            elif bench is not None:
                result = {"scheduler": scheduler(bench, args)}
            else:
                result = {
                    "inline": measure_inline(wf_steps, args.pairs, args.steps),
                    "start_workflow": measure_start(
                        lambda n: DBOS.start_workflow(wf_steps, n), args.start_n, args.start_steps
                    ),
                }
        finally:
            DBOS.destroy()
    meta = {
        **base_meta(),
        "dbos": version("dbos"),
        "sqlalchemy": version("sqlalchemy"),
        "psycopg": version("psycopg"),
    }
    if args.suite != "core":
        meta["pg_settings"] = pg_settings(args.db)
    emit({"meta": meta, **result})


if __name__ == "__main__":
    main()
