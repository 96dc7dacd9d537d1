"""Side process of ``retention.py``: django-dbos on PostgreSQL, one phase per process.

Run by ``retention.py`` with the ``.venv`` interpreter, ``DJANGO_SETTINGS_MODULE=_bench_settings``,
``DATABASE_URL`` and Django's default connection settings in the environment, and ``--phase``:

- ``populate``: drop and recreate the database, migrate, then make ``--workflows`` finished
  workflows of ``--steps`` steps each with bulk SQL (``INSERT ... SELECT FROM generate_series``,
  a chunk per transaction), their ends spread evenly over the last ``--days``; VACUUM ANALYZE.
- ``gc``: ``DBOS.garbage_collect(cutoff=now - --older-than-days)`` in this process.
- ``prune``: a ``rundbosworker`` with the retention policy (``--finished-days``,
  ``--interval``, and with ``--archive-dir`` the ``dbos-archive`` storage of
  ``_bench_settings``), watched until no finished workflow older than ``--finished-days`` is
  left (or ``--timeout``): workflows deleted per second, its RSS, the archive's size.
- ``idle``: the same worker where nothing is old enough, for ``--seconds``: its RSS; then a
  check that no step row was left without its workflow.
- ``queues``: ``_workers.queue_suite`` with one worker, without and with the retention policy
  applied by that same worker (as in a project with RETENTION), ``--rounds`` rounds, in a
  rotated order (``--beside-intervals``: one run with each INTERVAL_SECONDS).

Each phase but ``populate`` starts with VACUUM ANALYZE of the two tables, which stands in for
autovacuum (off on the server measured) after the previous phase's deletes.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import os
import time
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

import django
from _common import base_meta, emit, pg_settings, proc_status, reset_database
from _workers import WorkerProcess, WorkflowTable, worker, worker_env

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_dbos import DBOS  # noqa: E402

WF, OP = "dbos_workflow_status", "dbos_operation_output"
# A worker logs this line (at INFO) once it runs, before its retention thread's first turn.
STARTED_MARKER = " started: app "
# The retention workers dispatch only this queue, which nobody uses: they run no workflow of
# the bench.
IDLE_QUEUE = "bench-retention-idle"
# Workflows per INSERT transaction of the populate phase.
POPULATE_CHUNK = 50_000
# How often the prune phase counts what is left to delete.
POLL_S = 0.25
# One workflow in 50 failed: its last step holds the error.
ERROR_EVERY = 50
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "shop/workflows.py", line 42, in charge_card\n'
    "    raise ValueError(f'card declined for order {order_id}')\n"
    "ValueError: card declined\n"
)

# The rows of workflows lo..hi of n, ended `span_s` seconds before `now` at the oldest, evenly
# spread (1 is the oldest); ids are uuid-shaped, as DBOS makes them.
_WORKFLOWS = f"""
    SELECT i,
           md5('bench-retention-' || i)::uuid::text AS workflow_id,
           %(now)s - make_interval(secs => %(span_s)s * (1 - (i - 0.5) / %(n)s)) AS ended,
           mod(i, {ERROR_EVERY}) = 0 AS failed,
           jsonb_build_object(
               'type', 'builtins:ValueError',
               'message', 'card declined for order ' || i,
               'args', jsonb_build_array('card declined for order ' || i),
               'traceback', %(traceback)s::text
           )::text AS error
    FROM generate_series(%(lo)s, %(hi)s) AS i
"""

INSERT_WORKFLOWS = f"""
    WITH w AS ({_WORKFLOWS})
    INSERT INTO {WF} (
        workflow_id, name, status, inputs, output, error, executor_id, application_version,
        queue_name, priority, detached, recovery_attempts, execution, waiting,
        created_at, updated_at, started_at
    )
    SELECT workflow_id, 'bench_order', CASE WHEN failed THEN 'ERROR' ELSE 'SUCCESS' END,
           jsonb_build_object(
               'args', jsonb_build_array(jsonb_build_object(
                   'order_id', i,
                   'customer', md5('customer-' || i),
                   'email', 'user' || i || '@example.com',
                   'total', (mod(i, 1000) + 0.99)::text
               )),
               'kwargs', '{{}}'::jsonb
           )::text,
           CASE WHEN failed THEN NULL ELSE jsonb_build_object(
               'order_id', i,
               'status', 'shipped',
               'carrier', 'carrier-' || mod(i, 5),
               'tracking', md5('tracking-' || i),
               'shipped_at', ended::text
           )::text END,
           CASE WHEN failed THEN error END,
           'bench-executor-' || mod(i, 4), 'testproject-1',
           CASE WHEN mod(i, 2) = 0 THEN 'orders' END, 0, false, 1, 1, '',
           ended - interval '300 ms', ended, ended - interval '290 ms'
    FROM w
"""

INSERT_STEPS = f"""
    WITH w AS ({_WORKFLOWS})
    INSERT INTO {OP} (
        workflow_id, function_id, function_name, output, error, started_at, completed_at
    )
    SELECT workflow_id, f, 'bench_step_' || f,
           CASE WHEN failed AND f = %(steps)s THEN NULL ELSE jsonb_build_object(
               'step', f,
               'sku', 'SKU-' || upper(substr(md5(i || '-' || f), 1, 12)),
               'qty', mod(i + f, 7) + 1,
               'warehouse', 'wh-' || mod(i, 13),
               'ref', md5(f || '-' || i)
           )::text END,
           CASE WHEN failed AND f = %(steps)s THEN error END,
           ended - make_interval(secs => 0.05 * (%(steps)s - f + 1)),
           ended - make_interval(secs => 0.05 * (%(steps)s - f)) - interval '1 ms'
    FROM w CROSS JOIN generate_series(1, %(steps)s) AS f
"""

FINISHED = "('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"


def scalar(sql: str, params: list[Any] | None = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def vacuum() -> float:
    """VACUUM ANALYZE of the two tables (autocommit); its duration."""
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {WF}, {OP}")
    return time.perf_counter() - t0


def ended_before(days: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(days=days)


def count_finished_before(cutoff: datetime.datetime) -> int:
    return int(
        scalar(
            f"SELECT count(*) FROM {WF} WHERE status IN {FINISHED} AND updated_at < %s", [cutoff]
        )
    )


def count_workflows() -> int:
    return int(scalar(f"SELECT count(*) FROM {WF}"))


def table_sizes() -> dict[str, dict[str, int]]:
    return {
        table: {
            "rows": int(scalar(f"SELECT count(*) FROM {table}")),
            "total_bytes": int(scalar("SELECT pg_total_relation_size(%s)", [table])),
        }
        for table in (WF, OP)
    }


def rss_mb(status: dict[str, int]) -> dict[str, float]:
    """/proc VmRSS and VmHWM (kB) -> MB."""
    return {key: status[key] / 1024 for key in ("VmRSS", "VmHWM") if key in status}


# Phases ------------------------------------------------------------------------------------


def populate(args: argparse.Namespace) -> dict[str, Any]:
    """Finished workflows and their steps, made by the database itself, a chunk at a time."""
    reset_database(os.environ["DATABASE_URL"])
    call_command("migrate", verbosity=0)
    params = {
        "now": timezone.now(),
        "span_s": args.days * 86400.0,
        "n": args.workflows,
        "steps": args.steps,
        "traceback": TRACEBACK,
    }
    t0 = time.perf_counter()
    for lo in range(1, args.workflows + 1, POPULATE_CHUNK):
        hi = min(args.workflows, lo + POPULATE_CHUNK - 1)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(INSERT_WORKFLOWS, {**params, "lo": lo, "hi": hi})
            cursor.execute(INSERT_STEPS, {**params, "lo": lo, "hi": hi})
    insert_s = time.perf_counter() - t0
    rows = args.workflows * (1 + args.steps)
    lengths = {
        "workflow_inputs": scalar(f"SELECT avg(length(inputs)) FROM {WF}"),
        "workflow_output": scalar(f"SELECT avg(length(output)) FROM {WF}"),
        "workflow_error": scalar(f"SELECT avg(length(error)) FROM {WF}"),
        "step_output": scalar(f"SELECT avg(length(output)) FROM {OP}"),
    }
    return {
        "workflows": args.workflows,
        "steps": args.steps,
        "days": args.days,
        "insert_s": insert_s,
        "insert_wf_per_s": args.workflows / insert_s,
        "insert_rows_per_s": rows / insert_s,
        "vacuum_analyze_s": vacuum(),
        "avg_payload_bytes": {key: float(value) for key, value in lengths.items()},
        "tables": table_sizes(),
    }


def gc(args: argparse.Namespace) -> dict[str, Any]:
    """DBOS.garbage_collect in this process: every finished workflow older than the cutoff."""
    vacuum()
    cutoff = ended_before(args.older_than_days)
    eligible = count_finished_before(cutoff)
    t0 = time.perf_counter()
    deleted = DBOS.garbage_collect(cutoff=cutoff)
    elapsed = time.perf_counter() - t0
    return {
        "older_than_days": args.older_than_days,
        "eligible": eligible,
        "deleted": deleted,
        "left": count_finished_before(cutoff),
        "elapsed_s": elapsed,
        "wf_per_s": deleted / elapsed,
        "rss_mb": rss_mb(proc_status()),
        "tables_after": table_sizes(),
    }


def retention_env(args: argparse.Namespace, interval: float) -> dict[str, str]:
    """A retention worker's environment: the policy, its log at INFO (the line it is ready
    on), and the archive's directory when archiving."""
    env = {
        **worker_env(),
        "DBOS_RETENTION_FINISHED_DAYS": str(args.finished_days),
        "DBOS_RETENTION_INTERVAL_SECONDS": str(interval),
        "DBOS_LOG_LEVEL": "INFO",
    }
    if args.archive_dir:
        env["BENCH_ARCHIVE_DIR"] = args.archive_dir
    return env


def retention_worker(
    args: argparse.Namespace, log_name: str, interval: float | None = None
) -> WorkerProcess:
    """A worker that applies the retention policy (every `interval`, by default --interval)
    and dispatches no queue of the bench."""
    env = retention_env(args, args.interval if interval is None else interval)
    return worker(Path(args.log_dir) / log_name, env, "--no-scheduler", "--queue", IDLE_QUEUE)


def archive_summary(archive_dir: str) -> dict[str, Any]:
    """The archive's files, bytes and records (JSON lines) under `archive_dir`."""
    files = sorted(Path(archive_dir).rglob("*.jsonl.gz"))
    records = 0
    for path in files:
        with gzip.open(path, "rb") as f:
            records += sum(1 for _ in f)
    size = sum(path.stat().st_size for path in files)
    return {
        "files": len(files),
        "bytes": size,
        "records": records,
        "bytes_per_workflow": size / records if records else None,
    }


def prune(args: argparse.Namespace) -> dict[str, Any]:
    """A retention worker until nothing older than FINISHED_DAYS (as of its start) is left:
    deleted per second from its start (ready) to the last count of that which changed.

    What it deleted is counted over the whole table: its own cutoff moves on with the clock,
    so it also deletes the few workflows that grow old enough meanwhile (and archives them).
    """
    vacuum()
    cutoff = ended_before(args.finished_days)
    eligible = count_finished_before(cutoff)
    total_before = count_workflows()
    kind = "archive" if args.archive_dir else "plain"
    with retention_worker(args, f"retention-prune-{kind}.log") as process:
        process.wait_ready(STARTED_MARKER)
        pid = process.proc.pid
        ready = proc_status(pid)
        t0 = t_last = time.perf_counter()
        left, peak_rss_kb = eligible, ready.get("VmRSS", 0)
        while left > 0 and time.perf_counter() - t0 < args.timeout:
            time.sleep(POLL_S)
            peak_rss_kb = max(peak_rss_kb, proc_status(pid).get("VmRSS", 0))
            now_left = count_finished_before(cutoff)
            if now_left != left:
                left, t_last = now_left, time.perf_counter()
        end = proc_status(pid)
        cpu_s = process.cpu_seconds()
    deleted = total_before - count_workflows()
    result: dict[str, Any] = {
        "finished_days": args.finished_days,
        "interval_s": args.interval,
        "archive": bool(args.archive_dir),
        "eligible": eligible,
        "deleted": deleted,
        "left": left,
        "timed_out": left > 0,
        "elapsed_s": t_last - t0,
        "wf_per_s": deleted / (t_last - t0) if deleted else 0.0,
        # The worker process's own CPU from its start (its share of the database's not counted).
        "worker_cpu_s": cpu_s,
        "worker_cpu_ms_per_wf": 1000 * cpu_s / deleted if cpu_s is not None and deleted else None,
        "rss_mb": {
            "ready": rss_mb(ready),
            "end": rss_mb(end),
            "peak_sampled_VmRSS": peak_rss_kb / 1024,
        },
        "log_file": str(process.log_path),
        "exit_code": process.proc.returncode,
    }
    if args.archive_dir:
        result["archive_files"] = archive_summary(args.archive_dir)
    return result


def idle(args: argparse.Namespace) -> dict[str, Any]:
    """A retention worker with nothing old enough to delete, for `args.seconds`: its RSS.
    Then: are there step rows whose workflow is gone (there must be none)?"""
    vacuum()
    with retention_worker(args, "retention-idle.log") as process:
        process.wait_ready(STARTED_MARKER)
        ready = proc_status(process.proc.pid)
        time.sleep(args.seconds)
        end = proc_status(process.proc.pid)
    orphans = scalar(
        f"SELECT count(*) FROM {OP} o WHERE NOT EXISTS "
        f"(SELECT 1 FROM {WF} w WHERE w.workflow_id = o.workflow_id)"
    )
    return {
        "finished_days": args.finished_days,
        "seconds": args.seconds,
        "eligible": count_finished_before(ended_before(args.finished_days)),
        "rss_mb": {"ready": rss_mb(ready), "end": rss_mb(end)},
        "orphan_step_rows": int(orphans),
        "tables": table_sizes(),
        "log_file": str(process.log_path),
    }


def queue_run(
    args: argparse.Namespace, db_url: str, round_: int, interval: float | None
) -> dict[str, Any]:
    """One queue_suite run with one fresh worker; with an `interval`, that same worker applies
    the retention policy with that INTERVAL_SECONDS meanwhile, as every worker of a project
    with RETENTION does (its first turn comes as it starts, so it is at work all along).

    A second worker beside the queue's, applying the policy alone, measures mostly a second
    dispatcher: it is woken by every enqueue and every end, and claims from its own queues
    each time (on this 2-vCPU machine, two workers already do worse than one).
    """
    from _bench_app.workflows import run_queue_suite  # an app of _bench_settings only

    tag = "without" if interval is None else f"with-retention-{interval:g}s"
    cutoff = ended_before(args.finished_days)
    env = worker_env() if interval is None else retention_env(args, interval)
    with ExitStack() as stack:
        backlog_before = count_finished_before(cutoff)
        t0 = time.perf_counter()
        queue_worker = stack.enter_context(
            worker(
                Path(args.log_dir) / f"retention-queues-{round_}-queue-worker-{tag}.log",
                env,
                "--no-scheduler",
            )
        )
        table = WorkflowTable.django_dbos(db_url)
        stack.callback(table.close)
        result = run_queue_suite(table, [queue_worker], args.queue_n, args.trials)
        elapsed = time.perf_counter() - t0
        backlog_after = count_finished_before(cutoff)
        result.update(
            round=round_, retention_interval_s=interval, log_file=str(queue_worker.log_path)
        )
        if interval is not None:
            result["retention"] = {
                "backlog_before": backlog_before,
                "backlog_after": backlog_after,
                "deleted": backlog_before - backlog_after,
                "wf_per_s": (backlog_before - backlog_after) / elapsed,
                "rss_mb": rss_mb(proc_status(queue_worker.proc.pid)),
            }
    return result


def queues(args: argparse.Namespace, db_url: str) -> dict[str, Any]:
    """`args.rounds` rounds of a run without retention and one with a retention worker of
    each of `args.beside_intervals`, in an order rotated by one each round."""
    vacuum()
    kinds: list[float | None] = [None, *args.beside_intervals]
    runs = []
    for round_ in range(args.rounds):
        shift = round_ % len(kinds)
        for interval in [*kinds[shift:], *kinds[:shift]]:
            runs.append(queue_run(args, db_url, round_, interval))
    return {"finished_days": args.finished_days, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("populate", "gc", "prune", "idle", "queues"), required=True)
    ap.add_argument("--workflows", type=int, default=20_000, help="populate: how many")
    ap.add_argument("--steps", type=int, default=5, help="populate: steps per workflow")
    ap.add_argument("--days", type=float, default=60.0, help="populate: ends spread over")
    ap.add_argument("--older-than-days", type=float, help="gc: the cutoff's age")
    ap.add_argument("--finished-days", type=float, help="RETENTION FINISHED_DAYS")
    ap.add_argument("--interval", type=float, default=0.05, help="RETENTION INTERVAL_SECONDS")
    ap.add_argument("--archive-dir", help="archive to a FileSystemStorage in this directory")
    ap.add_argument("--timeout", type=float, default=600.0, help="prune: give up after")
    ap.add_argument("--seconds", type=float, default=10.0, help="idle: how long")
    ap.add_argument("--rounds", type=int, default=3, help="queues: rounds of runs")
    ap.add_argument(
        "--beside-intervals",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.05],
        help="queues: INTERVAL_SECONDS of the retention worker beside, one run each per round",
    )
    ap.add_argument("--queue-n", type=int, default=1000, help="queues: workflows in the burst")
    ap.add_argument("--trials", type=int, default=10, help="queues: dispatch-latency trials")
    ap.add_argument("--log-dir", default="/tmp", help="worker logs")
    args = ap.parse_args()

    db_url = os.environ["DATABASE_URL"]
    phases = {
        "populate": lambda: populate(args),
        "gc": lambda: gc(args),
        "prune": lambda: prune(args),
        "idle": lambda: idle(args),
        "queues": lambda: queues(args, db_url),
    }
    try:
        result = phases[args.phase]()
    finally:
        DBOS.shutdown()
        connections.close_all()
    meta = {
        **base_meta(),
        "django": version("django"),
        "psycopg": version("psycopg"),
        "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
        "conn_health_checks": settings.DATABASES["default"].get("CONN_HEALTH_CHECKS"),
        "workflow_threads": settings.DBOS.get("WORKFLOW_THREADS"),
        "pg_settings": pg_settings(db_url),
        "autovacuum": scalar("SHOW autovacuum"),
    }
    emit({"meta": meta, args.phase: result})


if __name__ == "__main__":
    main()
