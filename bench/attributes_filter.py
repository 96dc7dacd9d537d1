"""`DBOS.list_workflows(attributes=...)` with 1,000,000 workflows in the table (PostgreSQL).

    .venv/bin/python bench/attributes_filter.py [--rows 1000000] [--repeats 30] [--reuse]

It recreates the database ``bench_attributes`` on 127.0.0.1:5432 with admin_list.py's data set,
each workflow with attributes ``{"tenant": "tenant-<n % 1000>", "order": n, "region": ...}``,
VACUUM ANALYZEs, and times three lookups in this process (the newest 50 of one tenant, 1,000
rows match; the one workflow of an order; the newest 50 of one tenant in one region, nested in
a list), each with the GIN index of migration 0011 and again with the index dropped (what the
same query costs without it), and prints p50 and p95, and the plan of each lookup. Target: the
tenant page under 50 ms with the index. ``--reuse`` keeps a database filled by an earlier run.
The connection has Django's default settings (CONN_MAX_AGE=0), as in the other benches.
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

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "bench_attributes"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
os.environ.setdefault("DJANGO_DEBUG", "False")
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from _orchestrate import DJANGO_DEFAULT_CONNECTIONS  # noqa: E402 (bench/, the script's folder)
from admin_list import fill, recreate_database  # noqa: E402

os.environ.update(DJANGO_DEFAULT_CONNECTIONS)
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"

INDEX = "dbos_wf_attributes_idx"
REGIONS = ["eu", "us", "ap"]
LOOKUPS: dict[str, dict[str, Any]] = {
    "newest 50 of a tenant (1,000 match)": {
        "attributes": {"tenant": "tenant-7"},
        "limit": 50,
        "sort_desc": True,
    },
    "one order (1 matches)": {"attributes": {"order": 123_456}},
    "newest 50 of a tenant in a region": {
        "attributes": {"tenant": "tenant-7", "regions": ["eu"]},
        "limit": 50,
        "sort_desc": True,
    },
}


def attributes(n: int) -> str:
    return json.dumps(
        {"tenant": f"tenant-{n % 1000}", "order": n, "regions": [REGIONS[n % 3], "global"]}
    )


def timed(filters: dict[str, Any], repeats: int) -> tuple[float, float, int]:
    from django_dbos import DBOS

    found = len(DBOS.list_workflows(**filters, load_input=False, load_output=False))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        DBOS.list_workflows(**filters, load_input=False, load_output=False)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], found


def plan(filters: dict[str, Any]) -> str:
    """The plan's first lines, from the queryset list_workflows runs."""
    from django_dbos.engine.system_db.workflows import matching_workflows

    rows = matching_workflows(attributes=filters["attributes"])
    rows = rows.order_by("-created_at" if filters.get("sort_desc") else "created_at")
    if "limit" in filters:
        rows = rows[: filters["limit"]]
    return "\n".join("    " + line for line in rows.explain().splitlines()[:4])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()

    if not args.reuse:
        recreate_database(DATABASE)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not args.reuse:
        began = time.perf_counter()
        fill(args.rows, DATABASE, attributes)
        with psycopg.connect(URL, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE dbos_workflow_status")
        print(f"wrote {args.rows:,} workflows in {time.perf_counter() - began:.1f} s")

    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    for with_index in (True, False):
        if not with_index:
            with psycopg.connect(URL, autocommit=True) as connection:
                connection.execute(f"DROP INDEX {INDEX}")
        for label, filters in LOOKUPS.items():
            results.setdefault(label, {})["with" if with_index else "without"] = timed(
                filters, args.repeats
            )
            print(f"{label}, {'with' if with_index else 'without'} the index:\n{plan(filters)}")
    call_command("migrate", "django_dbos", "0010", verbosity=0)  # 0011 builds the index again
    call_command("migrate", "django_dbos", verbosity=0)

    print(f"\n{'lookup':40s} {'rows':>5s} {'p50 ms':>8s} {'p95 ms':>8s} {'no index p50':>13s}")
    for label, by_index in results.items():
        p50, p95, found = by_index["with"]
        print(f"{label:40s} {found:5d} {p50:8.1f} {p95:8.1f} {by_index['without'][0]:13.1f}")


if __name__ == "__main__":
    main()
