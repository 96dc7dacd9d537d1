"""Django's Tasks framework: DBOSTaskBackend against django-tasks-db's DatabaseBackend.

One run on PostgreSQL, each side on a fresh database, with one worker process:
- enqueue rate: 1,000 trivial tasks enqueued one by one from one thread, in autocommit, with no
  worker running (the first 20 untimed);
- end to end: then one worker process starts (`manage.py rundbosworker` with 16 workflow
  threads, see --dbos-threads, or `manage.py db_worker`, which runs one task at a time), and the
  clock runs until every task has finished (the side polls the database every 20 ms). The
  worker's start-up is included; "drain" is the rate after the first task finished.

Both sides run in one venv, .venv-bench-tasks (Django 5.2, the django-tasks backport,
django-tasks-db, this repository), made if missing, with the environment of the other benches'
django-dbos sides (``_orchestrate.django_env``: Django's default connection settings,
CONN_MAX_AGE=0). Standard library only here; the sides are bench/_tasks_side.py, with
bench/_tasks_settings.py.

    python3 bench/tasks_bench.py [--tasks 1000] [--repeat 1] [--json-out bench/results/tasks.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _orchestrate import BENCH_DIR, DJANGO_DEFAULT_CONNECTIONS, ROOT, add_server_args, django_env

RESULT_MARKER = "@@TASKS-BENCH@@ "
PACKAGES = ["-e", ".", "django>=5.2,<6", "django-environ", "django-tasks>=0.12", "django-tasks-db"]
SIDES = {"dbos": "django-dbos DBOSTaskBackend", "db": "django-tasks-db DatabaseBackend"}
METRICS = {  # key: label
    "enqueue_per_s": "enqueue (tasks/s, one thread)",
    "enqueue_cpu_ms_per_task": "enqueue CPU (ms/task)",
    "end_to_end_per_s": "end to end (tasks/s)",
    "end_to_end_s": "end to end (s)",
    "first_finished_s": "first task finished after (s)",
    "drain_per_s": "drain after the first (tasks/s)",
    "worker_cpu_ms_per_task": "worker CPU (ms/task)",
}


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True, cwd=ROOT)
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "('django', 'django-tasks', 'django-tasks-db', 'psycopg')}))"
    )
    return json.loads(subprocess.run([python, "-c", code], capture_output=True, text=True).stdout)


def run_side(python: Path, side: str, args: argparse.Namespace) -> dict[str, Any]:
    log = args.json_out.parent / f"tasks-worker-{side}.log"
    env = {
        **django_env(args, f"bench_tasks_{side}", settings="_tasks_settings"),
        "PYTHONPATH": os.pathsep.join((str(BENCH_DIR), str(ROOT))),
        "BENCH_TASKS_SIDE": side,
        "BENCH_TASKS": str(args.tasks),
        "BENCH_TASKS_WARMUP": str(args.warmup),
        "BENCH_TASKS_LOG": str(log),
        "DBOS_WORKFLOW_THREADS": str(args.dbos_threads),
    }
    code = "import _tasks_side; _tasks_side.main()"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"side {side!r} failed (exit code {proc.returncode})")
    return json.loads(lines[-1][len(RESULT_MARKER) :])


def report(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Print the medians of each side and the ratios; return the medians."""
    medians = {
        side: {key: statistics.median(run[side][key] for run in runs) for key in METRICS}
        for side in SIDES
    }
    print(f"\n{'':34}{'django-dbos':>14}{'django-tasks-db':>18}{'dbos/db':>10}")
    for key, label in METRICS.items():
        dbos, db = medians["dbos"][key], medians["db"][key]
        print(f"{label:34}{dbos:>14.2f}{db:>18.2f}{dbos / db:>10.2f}")
    for key in ("enqueue_per_s", "end_to_end_per_s"):
        ratio = medians["dbos"][key] / medians["db"][key]
        faster = "faster" if ratio >= 1 else "slower"
        print(f"{METRICS[key]}: django-dbos is {max(ratio, 1 / ratio):.2f}x {faster}")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=20, help="untimed enqueues (of --tasks)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of both sides (median)")
    parser.add_argument("--dbos-threads", type=int, default=16, help="DBOS WORKFLOW_THREADS")
    add_server_args(parser)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-bench-tasks")
    parser.add_argument("--json-out", type=Path, default=BENCH_DIR / "results" / "tasks.json")
    args = parser.parse_args()
    args.json_out.parent.mkdir(parents=True, exist_ok=True)

    python = ensure_venv(args.venv)
    runs = []
    for rep in range(args.repeat):
        run = {}
        for side in list(SIDES)[rep % 2 :] + list(SIDES)[: rep % 2]:
            print(f"[{rep + 1}/{args.repeat}] {SIDES[side]} ...", end=" ", flush=True)
            run[side] = run_side(python, side, args)
            print(f"{run[side]['end_to_end_s']:.1f} s end to end", flush=True)
        runs.append(run)
    medians = report(runs)
    output = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"machine": platform.machine(), "python": platform.python_version()},
        "versions": versions(python),
        "settings": vars(args) | {"venv": str(args.venv), "json_out": str(args.json_out)},
        "connections": DJANGO_DEFAULT_CONNECTIONS,
        "medians": medians,
        "runs": runs,
    }
    args.json_out.write_text(json.dumps(output, indent=2, default=str))
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
