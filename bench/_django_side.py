"""Side process of ``core.py``, ``messaging.py``, ``queues.py`` and ``scheduler.py``:
django-dbos on the test project's settings.

Run by the orchestrators with the ``.venv`` interpreter, ``PYTHONPATH`` set to the repository
root, ``DJANGO_SETTINGS_MODULE``/``DATABASE_URL`` in the environment and ``--suite core`` (the
default), ``messaging``, ``queues`` or ``scheduler``; see those scripts for usage. The last two
run with ``DJANGO_SETTINGS_MODULE=_bench_settings`` (the test project's settings plus the
``_bench_app`` workflows) and start ``manage.py rundbosworker`` subprocesses; this process only
enqueues (``queues``) or makes the schedule (``scheduler``), and reads the results.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

import django
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
    TABLE_SCHEDULE,
    WorkflowTable,
    watch_ticks,
    worker,
    worker_env,
)

if os.environ.get("BENCH_TRACING"):
    # core.py's instrumented side: an SDK tracer provider with no exporter, so that every span
    # is made and recorded (the cost of tracing in django-dbos) and then dropped.
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())

# Settings come from the environment (DJANGO_SETTINGS_MODULE, DATABASE_URL); django-dbos can
# only be imported once the app registry is ready. Setting up does not connect yet.
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

import django_dbos  # noqa: E402
from django_dbos import DBOS  # noqa: E402
from django_dbos import conf as dbos_conf  # noqa: E402


@DBOS.step()
def trivial_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_steps(n: int) -> int:
    return sum(trivial_step(i) for i in range(n))


# The instrumentation modes of core.py's instrumented side: (DBOS["METRICS"], tracing on).
MODES = {"off": (False, False), "metrics": (True, False), "tracing": (False, True)}


def instrumentation(args: argparse.Namespace) -> dict[str, Any]:
    """Inline per-step overhead with both off, metrics on and tracing on, in this one process:
    rounds of ``measure_inline`` blocks, one per mode, the modes' order rotated each round, so
    that the drifts of a busy machine hit the three alike (separate processes minutes apart
    differ by more than the few microseconds measured). Tracing is switched on and off on the
    engine's decision, which a process otherwise takes once."""
    from django.test import override_settings

    from django_dbos.engine import runtime, tracing

    decision = runtime.part(tracing.Tracing)
    configured = decision.tracer
    if configured is None:
        raise SystemExit("the instrumentation suite needs BENCH_TRACING=1")
    blocks: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    names = list(MODES)
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for mode in names[shift:] + names[:shift]:
            metrics_on, tracing_on = MODES[mode]
            decision.tracer = configured if tracing_on else None
            with override_settings(DBOS={**settings.DBOS, "METRICS": metrics_on}):
                blocks[mode].append(measure_inline(wf_steps, args.pairs, args.steps))
    decision.tracer = configured
    return {"rounds": args.rounds, "blocks": blocks}


def queues(args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    """Start the workers, then enqueue from this process (which never dispatches)."""
    from _bench_app.workflows import run_queue_suite  # an app of _bench_settings only

    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                worker(
                    Path(args.log_dir) / f"queues-django-dbos-{args.workers}w-worker-{i}.log",
                    worker_env(),
                    "--no-scheduler",
                )
            )
            for i in range(args.workers)
        ]
        table = WorkflowTable.django_dbos(db_url)
        stack.callback(table.close)
        result = run_queue_suite(table, workers, args.queue_n, args.trials)
        result["log_files"] = [str(w.log_path) for w in workers]
    result["worker_exit_codes"] = [w.proc.returncode for w in workers]
    return result


def scheduler(args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    """A per-second schedule, made with ``DBOS.create_schedule`` (in the table) or declared
    with ``@DBOS.scheduled`` (in the worker's code), fired by one worker process."""
    from _bench_app.workflows import WORKFLOWS  # an app of _bench_settings only

    env = worker_env()
    if args.kind == "create_schedule":
        DBOS.create_schedule(
            schedule_name=TABLE_SCHEDULE, workflow_fn=WORKFLOWS.tick, schedule=CRON
        )
        name, prefix = "bench_tick", f"sched-{TABLE_SCHEDULE}-"
    else:
        env["BENCH_CODE_SCHEDULE"] = CRON  # read by _bench_app.workflows in the worker
        name, prefix = "bench_code_tick", "sched-bench_code_tick-"
    log = Path(args.log_dir) / f"scheduler-django-dbos-{args.kind}-worker.log"
    with worker(log, env) as process:
        table = WorkflowTable.django_dbos(db_url)
        try:
            result = watch_ticks(
                table,
                name,
                prefix,
                args.seconds,
                lambda workflow_id: DBOS.retrieve_workflow(workflow_id).get_result(),
            )
        finally:
            table.close()
    return {**result, "kind": args.kind, "log_file": str(log), "exit_code": process.proc.returncode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--suite",
        choices=("core", "instrumentation", "messaging", "queues", "scheduler"),
        default="core",
    )
    ap.add_argument("--rounds", type=int, default=5, help="instrumentation: rounds of blocks")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--start-n", type=int, default=1000)
    ap.add_argument("--start-steps", type=int, default=3)
    ap.add_argument("--trials", type=int, default=50, help="messaging or dispatch trials")
    ap.add_argument("--workers", type=int, default=1, help="queues: worker processes")
    ap.add_argument("--queue-n", type=int, default=1000, help="queues: workflows in the burst")
    ap.add_argument("--log-dir", default=tempfile.gettempdir(), help="worker logs")
    ap.add_argument("--seconds", type=float, default=60.0, help="scheduler: length of the run")
    ap.add_argument("--kind", choices=("create_schedule", "scheduled"), default="create_schedule")
    args = ap.parse_args()

    # The harness's own connections (resetting the database, reading the workflow table) go
    # straight to PostgreSQL, also when the side's run through a pooler (queues.py --pgbouncer).
    db_url = os.environ.get("BENCH_DIRECT_URL", os.environ["DATABASE_URL"])
    reset_database(db_url)
    call_command("migrate", verbosity=0)

    result: dict[str, Any]
    try:
        if args.suite == "messaging":
            result = {"messaging": Messaging(DBOS).run(args.trials)}
        elif args.suite == "queues":
            result = {"queues": queues(args, db_url)}
        elif args.suite == "scheduler":
            result = {"scheduler": scheduler(args, db_url)}
        elif args.suite == "instrumentation":
            result = {"instrumentation": instrumentation(args)}
        else:
            result = {
                "inline": measure_inline(wf_steps, args.pairs, args.steps),
                "start_workflow": measure_start(
                    lambda n: DBOS.start_workflow(wf_steps, n), args.start_n, args.start_steps
                ),
            }
    finally:
        DBOS.shutdown()
        connections.close_all()
    meta = {
        **base_meta(),
        "django": version("django"),
        "psycopg": version("psycopg"),
        "debug": settings.DEBUG,
        "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
        "conn_health_checks": settings.DATABASES["default"].get("CONN_HEALTH_CHECKS"),
        "workflow_threads": settings.DBOS.get("WORKFLOW_THREADS"),
        "metrics": dbos_conf.get("METRICS"),
        "tracing": bool(os.environ.get("BENCH_TRACING")),
        "django_dbos_from": os.path.dirname(django_dbos.__file__),
    }
    if args.suite != "core":
        # The notifier's safety net: a waiter re-checks the database at least this often.
        meta["poll_seconds"] = dbos_conf.get("POLL_SECONDS")
        meta["pg_settings"] = pg_settings(db_url)
        meta["settings_module"] = os.environ["DJANGO_SETTINGS_MODULE"]
    emit({"meta": meta, **result})


if __name__ == "__main__":
    main()
