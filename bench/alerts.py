"""Time of one check of the five alert rules with 1,000,000 workflows in the table (PostgreSQL).

    .venv/bin/python bench/alerts.py [--rows 1000000] [--repeats 20]

It recreates the database ``bench_alerts`` on 127.0.0.1:5432 and fills it as
``bench/admin_list.py`` does (finished workflows of 10 names over months), then makes the newest
2,000 of one queue ENQUEUED, and times a turn of the alert checker (a rule of each kind, one
per queue of the data set for the queue's age) in this process; it prints p50 and p95, and the
plans of the two queries over the finished rows. Target: a turn in well under a second, so
that checking every 30 s costs the database nothing to speak of.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import admin_list  # bench/, the script's folder: its data set

# admin_list points Django at its own database; this bench writes to one of its own.
admin_list.DATABASE = "bench_alerts"
os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{admin_list.DATABASE}"

RULES = [
    {
        "name": "job-8-failing",
        "kind": "workflow_failures",
        "workflow_name": "shop.workflows.job_8",
        "threshold": 5,
        "window_seconds": 600,
    },
    *(
        {
            "name": f"queue-{n}-late",
            "kind": "queue_oldest_enqueued",
            "queue": f"queue-{n}",
            "threshold_seconds": 300,
        }
        for n in range(4)
    ),
    {"name": "no-worker", "kind": "no_live_executor"},
    {"name": "gave-up", "kind": "max_recovery_attempts"},
    {"name": "stranded", "kind": "stranded_workflows"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    admin_list.recreate_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings
    from django.utils import timezone

    from django_dbos.engine import system_db
    from django_dbos.engine.alerts import Alerts

    call_command("migrate", verbosity=0)
    began = time.perf_counter()
    admin_list.fill(args.rows)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE dbos_workflow_status SET status = 'ENQUEUED' WHERE workflow_id IN ("
            "SELECT workflow_id FROM dbos_workflow_status WHERE queue_name = 'queue-1' "
            "ORDER BY created_at DESC LIMIT 2000)"
        )
        cursor.execute("ANALYZE dbos_workflow_status")
    print(f"wrote {args.rows:,} workflows in {time.perf_counter() - began:.1f} s")

    checker = Alerts("bench")
    settings = {"ALERTS": {"RULES": RULES, "MAIL_ADMINS": False}}
    with override_settings(DBOS=settings):
        fired = checker.check() or []
        print("fired:", ", ".join(alert.name for alert in fired))
        times = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            checker.check()
            times.append((time.perf_counter() - began) * 1000)
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    print(f"a turn of {len(RULES)} rules: p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms")

    since = timezone.now() - datetime.timedelta(seconds=600)
    rows = system_db.workflow_rows()
    failures = rows.filter(status="ERROR", name="shop.workflows.job_8", updated_at__gte=since)
    print(failures.explain(analyze=True))
    print(rows.filter(status="MAX_RECOVERY_ATTEMPTS_EXCEEDED").explain(analyze=True))


if __name__ == "__main__":
    main()
