"""Server time of `GET /dbos/metrics/` with 1,000,000 workflows in the table (PostgreSQL).

    .venv/bin/python bench/metrics_endpoint.py [--rows 1000000] [--repeats 50] [--reuse]

It recreates the database ``bench_metrics`` on 127.0.0.1:5432 with admin_list.py's data set
(finished workflows of 10 names, 4 queues, 3 versions), adds some waiting and running work
(2,000 ENQUEUED on the 4 queues, 200 PENDING, of which 100 of a version no worker runs) and a live
worker's executor row, VACUUM ANALYZEs, and requests the endpoint through Django's test client in
the same process with the bearer token. It prints the first scrape (which counts the finished
workflows itself), then the median and p95 of the next ones (the finished counts come from the
process's cache, recounted in the background when older than
DBOS["METRICS_FINISHED_COUNTS_SECONDS"]), and the time of one recount. Target: under 50 ms.
``--reuse`` keeps a database filled by an earlier run; ``--explain`` prints the plan and time of
each query of a warm scrape and of the recount (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_metrics"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
TOKEN = "bench-token"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("DJANGO_DEBUG", "False")
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from _orchestrate import DJANGO_DEFAULT_CONNECTIONS  # noqa: E402 (bench/, the script's folder)
from admin_list import fill, recreate_database  # noqa: E402

os.environ.update(DJANGO_DEFAULT_CONNECTIONS)
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"


def add_active_work() -> None:
    """Waiting and running workflows, and a live worker serving the 4 queues (version v0)."""
    now = datetime.datetime.now(datetime.UTC)
    with psycopg.connect(URL) as connection, connection.cursor() as cursor:
        rows = [
            (
                f"active-{n:06d}",
                f"shop.workflows.job_{n % 10}",
                "ENQUEUED" if n < 2000 else "PENDING",
                None if n < 2000 else "worker-1",
                "v9" if n >= 2100 else "v0",
                f"queue-{n % 4}",
                now - datetime.timedelta(seconds=n),
            )
            for n in range(2200)
        ]
        cursor.executemany(
            "INSERT INTO dbos_workflow_status (workflow_id, name, status, inputs, executor_id, "
            "application_version, queue_name, priority, recovery_attempts, execution, detached, "
            "created_at, updated_at) VALUES (%s, %s, %s, '', %s, %s, %s, 0, 0, 0, false, %s, %s)",
            [(*row, row[-1]) for row in rows],
        )
        cursor.execute(
            "INSERT INTO dbos_executor (executor_id, hostname, pid, role, application_version, "
            "started_at, last_heartbeat, queues) VALUES ('worker-1', 'bench', 1, 'worker', 'v0', "
            "%s, %s, %s)",
            [now, now + datetime.timedelta(days=1), json.dumps([f"queue-{n}" for n in range(4)])],
        )
    with psycopg.connect(URL, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE dbos_workflow_status")


def explain(client: object) -> None:
    """EXPLAIN ANALYZE each query of one warm scrape, then of one recount."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_dbos import queries

    with CaptureQueriesContext(connection) as scrape:
        client.get("/dbos/metrics/")  # type: ignore[attr-defined]
    with CaptureQueriesContext(connection) as recount:
        queries.workflow_counts(queries.FINISHED)
    for label, captured in (("scrape", scrape), ("recount", recount)):
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            print(f"\n-- {label}: {sql}")
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}")
                for (line,) in cursor.fetchall():
                    print("   " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--reuse", action="store_true", help="Keep the database of a last run.")
    parser.add_argument(
        "--explain", action="store_true", help="Print EXPLAIN ANALYZE of each query of a scrape."
    )
    args = parser.parse_args()

    if not args.reuse:
        recreate_database(DATABASE)
    import django
    from django.test.utils import override_settings

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from django_dbos import queries

    if not args.reuse:
        call_command("migrate", verbosity=0)
        began = time.perf_counter()
        fill(args.rows, DATABASE)
        add_active_work()
        print(
            f"wrote {args.rows:,} workflows and 2,200 active ones in "
            f"{time.perf_counter() - began:.1f} s"
        )

    client = Client(headers={"authorization": f"Bearer {TOKEN}"})
    with override_settings(DBOS={**settings.DBOS, "METRICS_TOKEN": TOKEN}):
        began = time.perf_counter()
        first = client.get("/dbos/metrics/")
        print(
            f"first scrape (starts the count of finished workflows in the background): "
            f"{(time.perf_counter() - began) * 1000:.1f} ms"
        )
        assert first.status_code == 200, first.content
        # The next scrapes show the counts kept by the process: wait for the first count.
        while (
            b"dbos_workflows_finished_counts_age_seconds"
            not in client.get("/dbos/metrics/").content
        ):
            time.sleep(0.05)
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            response = client.get("/dbos/metrics/")
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        times.sort()
        p95 = times[max(0, int(len(times) * 0.95) - 1)]
        print(
            f"next {args.repeats} scrapes: p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms"
        )
        recounts = []
        for _ in range(5):
            began = time.perf_counter()
            queries.workflow_counts(queries.FINISHED)  # what the background recount runs
            recounts.append((time.perf_counter() - began) * 1000)
        print(
            f"one recount of the finished workflows (background): "
            f"p50 {statistics.median(recounts):.1f} ms"
        )
        if args.explain:
            explain(client)
        lines = first.content.decode().splitlines()
        print(f"{len(lines)} lines, for example:")
        for line in lines:
            if line.startswith(("dbos_queue_depth{", "dbos_workflows_stranded{")):
                print("  " + line)


if __name__ == "__main__":
    main()
