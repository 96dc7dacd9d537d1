"""Replay-checked upgrades on PostgreSQL: stranded workflows checked and moved per second, and
the cost to a running queue of a worker that upgrades (AUTO_UPGRADE) while it serves the queue.

Run with the Django venv's interpreter, from the repository root (it sets
``DJANGO_SETTINGS_MODULE=_bench_settings`` and puts ``bench/`` on the path itself)::

    /work/main/.venv/bin/python bench/upgrade.py                      # 10,000: about 2 min
    /work/main/.venv/bin/python bench/upgrade.py --workflows 2000 --rounds 1 --queue-n 200

The database ``bench_django_dbos_upgrade`` (``--database-url``) is dropped and recreated.
Django's default connection settings (``CONN_MAX_AGE = 0``).

1. rate: ``--workflows`` stranded workflows (``ENQUEUED`` on the version ``bench-old``, which no
   worker runs, each with the 10 recorded steps of ``bench_upgrade_ten_steps``, as a queued
   workflow of a dead worker is left once recovery put it back on its queue) are made with bulk
   SQL; then ``upgrade()`` (what ``dbos workflow upgrade`` and an AUTO_UPGRADE turn run) replays
   and moves them all, in this process: workflows checked and moved per second. The same again
   where every record diverges at its first step: checked and recorded blocked per second.
2. queue: ``queues.py``'s measurement (``run_queue_suite``: warm-up, ``--queue-n`` one-step
   workflows enqueued from this process through one ``rundbosworker``, then the idle dispatch
   latency), with the worker's AUTO_UPGRADE off, and on with ``--workflows`` stranded workflows to
   move (put back before each run), ``--rounds`` rounds in an order rotated each round. The
   stranded workflows wait on a queue the worker does not serve, so that once moved they do not
   run: what is measured is the upgrade. ``HEARTBEAT_SECONDS`` is 1 in both, so the upgrade turn
   starts within a second of the worker's start, during the warm-up.

Target (issue 19): the queue's throughput with the upgrade beside it at most 20% lower than
without (the ratio of the medians at least 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(BENCH.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_bench_settings")
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench_django_dbos_upgrade"

OLD = "bench-old"
PARKED_QUEUE = "bench-upgrade-parked"  # no worker serves it
WF, OP = "dbos_workflow_status", "dbos_operation_output"

INSERT_WORKFLOWS = f"""
INSERT INTO {WF} (workflow_id, name, status, inputs, executor_id, application_version,
    queue_name, priority, detached, recovery_attempts, execution, waiting, created_at, updated_at)
SELECT 'stranded-' || lpad(i::text, 7, '0'), 'bench_upgrade_ten_steps', 'ENQUEUED',
    '{{"args": [' || i || '], "kwargs": {{}}}}', NULL, %(version)s, %(queue)s, 0, false, 1, 1,
    '', now(), now()
FROM generate_series(1, %(n)s) AS i
"""
INSERT_STEPS = f"""
INSERT INTO {OP} (workflow_id, function_id, function_name, output, started_at, completed_at)
SELECT 'stranded-' || lpad(i::text, 7, '0'), f, %(step)s, (i * 10 + f)::text, now(), now()
FROM generate_series(1, %(n)s) AS i CROSS JOIN generate_series(1, 10) AS f
"""
STRAND_AGAIN = f"""
UPDATE {WF} SET application_version = %(version)s, upgrade_blocked_at = NULL,
    upgrade_checked_version = NULL WHERE workflow_id LIKE 'stranded-%%'
"""


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_URL))
    ap.add_argument("--workflows", type=int, default=10_000, help="stranded workflows")
    ap.add_argument("--rounds", type=int, default=3, help="queue: rounds of the two runs")
    ap.add_argument("--queue-n", type=int, default=1000, help="queue: workflows in the burst")
    ap.add_argument("--trials", type=int, default=10, help="queue: dispatch-latency trials")
    ap.add_argument("--log-dir", default="/tmp", help="worker logs")
    ap.add_argument("--json-out", help="write the results here too")
    return ap.parse_args()


def populate(n: int, step: str) -> None:
    """`n` stranded workflows with 10 recorded steps named `step` (ours: they replay)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {OP} WHERE workflow_id LIKE 'stranded-%%'")
        cursor.execute(f"DELETE FROM {WF} WHERE workflow_id LIKE 'stranded-%%'")
        cursor.execute(INSERT_WORKFLOWS, {"n": n, "version": OLD, "queue": PARKED_QUEUE})
        cursor.execute(INSERT_STEPS, {"n": n, "step": step})
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {WF}")
        cursor.execute(f"VACUUM ANALYZE {OP}")


def strand_again() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(STRAND_AGAIN, {"version": OLD})
        cursor.execute(f"VACUUM ANALYZE {WF}")


def rate(n: int, step: str) -> dict[str, Any]:
    """Populate, then one upgrade() of them all, timed."""
    from django_dbos.engine import upgrade

    populate(n, step)
    t0, c0 = time.perf_counter(), time.process_time()
    done = upgrade.upgrade(recheck=False)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(done.checked) == n, f"checked {len(done.checked)} of {n}"
    return {
        "n": n,
        "moved": len(done.moved),
        "blocked": len(done.blocked),
        "elapsed_s": elapsed,
        "per_s": n / elapsed,
        "cpu_ms_per_wf": cpu / n * 1000,
    }


def moved_count() -> int:
    from django_dbos.models import WorkflowStatus

    return (
        WorkflowStatus.objects.filter(workflow_id__startswith="stranded-")
        .exclude(application_version=OLD)
        .count()
    )


def queue_run(args: argparse.Namespace, round_: int, upgrading: bool) -> dict[str, Any]:
    """One queue suite through one fresh worker, upgrading the stranded workflows or not."""
    from _bench_app.workflows import run_queue_suite
    from _workers import QUEUE, WorkflowTable, worker, worker_env

    strand_again()
    tag = "with-upgrade" if upgrading else "without"
    env = {**worker_env(), "DBOS_HEARTBEAT_SECONDS": "1"}
    if upgrading:
        env["DBOS_AUTO_UPGRADE"] = "true"
    log = Path(args.log_dir) / f"upgrade-{round_}-{tag}.log"
    t0 = time.perf_counter()
    with worker(log, env, "--no-scheduler", "--queue", QUEUE) as queue_worker:
        table = WorkflowTable.django_dbos(args.database_url)
        try:
            result = run_queue_suite(table, [queue_worker], args.queue_n, args.trials)
        finally:
            table.close()
        moved_during = moved_count()
    result.update(
        round=round_,
        upgrading=upgrading,
        suite_s=time.perf_counter() - t0,
        moved_during_suite=moved_during,
        log_file=str(log),
    )
    return result


def throughput(run: dict[str, Any]) -> float:
    return float(run["throughput"]["n"] / run["throughput"]["elapsed_s"])


def main() -> None:
    args = parse_args()
    os.environ["DATABASE_URL"] = args.database_url
    from _common import reset_database

    reset_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command

    from django_dbos import DBOS

    call_command("migrate", verbosity=0)
    results: dict[str, Any] = {
        "rate": rate(args.workflows, "bench_upgrade_step"),
        "rate_blocked": rate(args.workflows, "bench_other_step"),
    }
    populate(args.workflows, "bench_upgrade_step")
    runs = []
    for round_ in range(args.rounds):
        order = [False, True] if round_ % 2 == 0 else [True, False]
        runs += [queue_run(args, round_, upgrading) for upgrading in order]
    without = [throughput(run) for run in runs if not run["upgrading"]]
    beside = [throughput(run) for run in runs if run["upgrading"]]
    results["queue"] = {
        "runs": runs,
        "without_wf_per_s": without,
        "with_upgrade_wf_per_s": beside,
        "ratio_of_medians": statistics.median(beside) / statistics.median(without),
    }
    DBOS.shutdown()

    r, b, q = results["rate"], results["rate_blocked"], results["queue"]
    print(f"stranded workflows of 10 steps: {r['n']:,}")
    print(
        f"checked and moved:   {r['per_s']:,.0f} workflows/s ({r['elapsed_s']:.1f} s, "
        f"{r['cpu_ms_per_wf']:.2f} ms CPU each, {r['moved']:,} moved)"
    )
    print(
        f"checked and blocked: {b['per_s']:,.0f} workflows/s ({b['elapsed_s']:.1f} s, "
        f"{b['blocked']:,} blocked)"
    )
    print("queue throughput (workflows/s), without:", ", ".join(f"{x:.0f}" for x in without))
    print("                 with the upgrade beside:", ", ".join(f"{x:.0f}" for x in beside))
    print(
        "moved while each upgrading run's suite ran:",
        ", ".join(f"{run['moved_during_suite']:,}" for run in runs if run["upgrading"]),
    )
    print(f"ratio of the medians: {q['ratio_of_medians']:.2f} (target: at least 0.80)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
