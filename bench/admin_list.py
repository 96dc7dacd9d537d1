"""Server time of the admin's workflow pages with 100,000 workflows in the table (PostgreSQL).

    .venv/bin/python bench/admin_list.py [--rows 100000] [--repeats 20]

It recreates the database ``bench_admin`` on 127.0.0.1:5432, migrates it, writes ``--rows``
finished workflows (10 names, 4 queues, 3 application versions, statuses mixed, spread over
30 days) with PostgreSQL's COPY, then requests each page through Django's test client in the
same process (so the figure is the server's time: URL resolution, queries, template rendering)
and prints p50 and p95 per page. Target: the workflow list under 200 ms. The connection has
Django's default settings (CONN_MAX_AGE=0), as in the other benches; Django's test client keeps
it open between requests whatever CONN_MAX_AGE says.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_admin"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("DJANGO_DEBUG", "False")
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from _orchestrate import DJANGO_DEFAULT_CONNECTIONS  # noqa: E402 (bench/, the script's folder)

os.environ.update(DJANGO_DEFAULT_CONNECTIONS)

PAGES = {
    "list": "/admin/django_dbos/workflowstatus/",
    "list, status filter": "/admin/django_dbos/workflowstatus/?status__exact=ERROR",
    "list, name filter": "/admin/django_dbos/workflowstatus/?name=shop.workflows.job_3",
    "list, search by id": "/admin/django_dbos/workflowstatus/?q=bench-000000042",
    "list, page 100": "/admin/django_dbos/workflowstatus/?p=100",
    "workflow page": "/admin/django_dbos/workflowstatus/bench-000000042/change/",
    "dashboard": "/admin/django_dbos/workflowstatus/dashboard/",
}
STATUSES = ["SUCCESS"] * 8 + ["ERROR", "CANCELLED"]


def recreate_database(database: str = DATABASE) -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{database}"')


def fill(
    rows: int,
    database: str = DATABASE,
    attributes: Callable[[int], str | None] = lambda n: None,
) -> None:
    """Write `rows` finished workflows with COPY, then ANALYZE (bench/metrics_endpoint.py and
    bench/attributes_filter.py too); `attributes(n)` gives the n-th one's attributes (JSON)."""
    now = datetime.datetime.now(datetime.UTC)
    columns = (
        "workflow_id, name, status, inputs, output, executor_id, application_version, queue_name, "
        "priority, recovery_attempts, execution, detached, created_at, updated_at, started_at, "
        "attributes"
    )
    url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY dbos_workflow_status ({columns}) FROM STDIN") as copy:
            for n in range(rows):
                created = now - datetime.timedelta(seconds=n * 26)
                copy.write_row(
                    (
                        f"bench-{n:09d}",
                        f"shop.workflows.job_{n % 10}",
                        STATUSES[n % len(STATUSES)],
                        '{"args":[1],"kwargs":{}}',
                        "1",
                        "worker-1",
                        f"v{n % 3}",
                        f"queue-{n % 4}" if n % 2 else None,
                        0,
                        0,
                        1,
                        False,
                        created,
                        created + datetime.timedelta(milliseconds=40),
                        created,
                        attributes(n),
                    )
                )
        cursor.execute("ANALYZE dbos_workflow_status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    recreate_database()
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    fill(args.rows)
    print(f"wrote {args.rows:,} workflows in {time.perf_counter() - began:.1f} s")

    client = Client()
    client.force_login(User.objects.create_superuser("bench", "bench@localhost", "bench"))
    print(f"{'page':28s} {'p50 ms':>8s} {'p95 ms':>8s}")
    for label, url in PAGES.items():
        assert client.get(url).status_code == 200, url  # warm-up, and a check
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200
        times.sort()
        p95 = times[max(0, int(len(times) * 0.95) - 1)]
        print(f"{label:28s} {statistics.median(times):8.1f} {p95:8.1f}")


if __name__ == "__main__":
    main()
