"""One side of tasks_bench.py, in a Django process set up with bench/_tasks_settings.py.

On a fresh database: enqueue the tasks one by one from this thread (autocommit, no worker
running), then start one worker process and poll the database until every task has finished.
Prints one line, RESULT_MARKER + JSON. Started as `python -c "import _tasks_side; ..."` with
bench/ on the path, so that the task's module path is `_tasks_side.trivial`: the worker imports it
from there.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    from django.tasks import task  # Django 6
except ImportError:
    from django_tasks import task  # Django 5.2: the django-tasks backport

RESULT_MARKER = "@@TASKS-BENCH@@ "
ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.02
TIMEOUT_S = 600.0
# side -> (worker command, the task table's "finished" statuses, its "successful" status)
SIDES: dict[str, tuple[list[str], tuple[str, str], str]] = {
    "dbos": (["rundbosworker", "--no-scheduler"], ("SUCCESS", "ERROR"), "SUCCESS"),
    "db": (
        ["db_worker", "--no-startup-delay", "--no-reload", "--verbosity", "0"],
        ("SUCCESSFUL", "FAILED"),
        "SUCCESSFUL",
    ),
}


@task()
def trivial(i: int) -> int:
    return i


def recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name.startswith("bench_"):
        raise SystemExit(f"refusing to drop database {name!r}")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def counts(side: str) -> dict[str, int]:
    """The number of tasks by status."""
    from django.db.models import Count

    if side == "dbos":
        from django_dbos.models import WorkflowStatus
        from django_dbos.task_runner import TASK_WORKFLOW

        rows = WorkflowStatus.objects.filter(name=TASK_WORKFLOW)
    else:
        from django_tasks_db.models import DBTaskResult

        rows = DBTaskResult.objects.all()
    return {row["status"]: row["n"] for row in rows.values("status").annotate(n=Count("pk"))}


def main() -> None:
    side = os.environ["BENCH_TASKS_SIDE"]
    tasks, warmup = int(os.environ["BENCH_TASKS"]), int(os.environ["BENCH_TASKS_WARMUP"])
    command, finished_statuses, successful = SIDES[side]
    recreate_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", verbosity=0)

    for i in range(warmup):
        trivial.enqueue(i)
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(warmup, tasks):
        trivial.enqueue(i)
    enqueue_s, enqueue_cpu_s = time.perf_counter() - began, time.process_time() - cpu
    connections.close_all()

    log_path = Path(os.environ["BENCH_TASKS_LOG"])
    children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        first_s = None
        while True:
            by_status = counts(side)
            now = time.perf_counter() - began
            finished = sum(by_status.get(status, 0) for status in finished_statuses)
            if finished and first_s is None:
                first_s = now
            if finished >= tasks:
                break
            if worker.poll() is not None or now > TIMEOUT_S:
                raise SystemExit(f"the worker stopped or timed out; see {log_path}")
            time.sleep(POLL_S)
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu_s = (after.ru_utime + after.ru_stime) - (
        children_cpu.ru_utime + children_cpu.ru_stime
    )

    result: dict[str, Any] = {
        "side": side,
        "tasks": tasks,
        "timed_enqueues": tasks - warmup,
        "enqueue_s": enqueue_s,
        "enqueue_per_s": (tasks - warmup) / enqueue_s,
        "enqueue_cpu_ms_per_task": enqueue_cpu_s * 1000 / (tasks - warmup),
        "end_to_end_s": now,
        "end_to_end_per_s": tasks / now,
        "first_finished_s": first_s,
        "drain_per_s": (tasks - 1) / (now - first_s) if now > first_s else None,
        "worker_cpu_ms_per_task": worker_cpu_s * 1000 / tasks,
        "successful": by_status.get(successful, 0),
        "worker": " ".join(["manage.py", *command]),
        "worker_threads": os.environ.get("DBOS_WORKFLOW_THREADS") if side == "dbos" else 1,
        "django": django.__version__,
    }
    print(RESULT_MARKER + json.dumps(result), flush=True)
