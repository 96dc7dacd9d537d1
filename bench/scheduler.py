"""Scheduler drift of django-dbos (and of DBOS Transact for Python) for a per-second schedule.

One run, one PostgreSQL server; each side is a fresh process on a fresh database that runs a
schedule of ``* * * * * *`` (every second) for ``--seconds`` (60 by default):

* ``django-dbos/create_schedule``  ``DBOS.create_schedule(workflow_fn=bench_tick, ...)`` in the
  side process, fired and run by one ``manage.py rundbosworker`` process
  (``bench_django_dbos_scheduler``; settings ``bench/_bench_settings.py``);
* ``django-dbos/scheduled``        the same, with ``@DBOS.scheduled`` on ``bench_code_tick``
  (declared in that worker only: ``BENCH_CODE_SCHEDULE``); the workflow records the
  ``actual_time`` the scheduler passes it;
* ``dbos/create_schedule``         DBOS 3.4.0, ``DBOS.create_schedule`` in a process that launched
  DBOS, which fires and runs the ticks itself (``bench_dbos_scheduler``). DBOS 3.4.0 has no
  ``@DBOS.scheduled``.

The clock starts when the first tick's workflow appears; ticks scheduled up to the end of the
window count, and get 3 s more to finish. For each tick, with the scheduled time read from the
workflow id (``sched-<schedule>-<ISO time>``, the same on both sides):

* start drift: the workflow's ``started_at`` (a worker claimed it) minus the scheduled time: the
  issue's figure (target: django-dbos p99 under 100 ms);
* fire drift: the row's ``created_at`` (the scheduler inserted it) minus the scheduled time;
* step drift: the ``time.time()`` returned by the workflow's first step minus the scheduled time;
* ``actual_time`` drift (``@DBOS.scheduled`` only).

Ticks missed (a whole second in the window without a run, after the first tick) and duplicated
(two runs for one scheduled time) are counted; both should be 0.

Usage, from the repository root (any Python 3.11+; the sides bring their own interpreters)::

    python3 bench/scheduler.py                       # three sides, 60 s each: about 4 minutes
    python3 bench/scheduler.py --quick               # 10 s each
    python3 bench/scheduler.py --sides django-dbos/create_schedule --seconds 300

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``; the databases
``bench_django_dbos_scheduler`` and ``bench_dbos_scheduler`` are dropped and recreated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _orchestrate import (
    BENCH_DIR,
    Command,
    Figure,
    Run,
    add_server_args,
    add_venv_and_output_args,
    base_env,
    db_url,
    dig,
    django_env,
    ensure_venvs,
    figure_table,
    git_state,
    loadavg,
    print_table,
    run_all,
    run_meta,
    write_json,
)

SIDES = ("django-dbos/create_schedule", "django-dbos/scheduled", "dbos/create_schedule")
LABELS = {
    "django-dbos/create_schedule": "django-dbos table",
    "django-dbos/scheduled": "django-dbos @scheduled",
    "dbos/create_schedule": "DBOS 3.4.0 table",
}
DEFAULTS = {"repeats": 1, "seconds": 60.0}
QUICK = {"repeats": 1, "seconds": 10.0}
TARGET_START_P99_MS = 100.0
# A side runs for its window, plus start-up, the wait for the first tick and the grace period.
SIDE_OVERHEAD_S = 120.0


def side_commands(
    args: argparse.Namespace, dbos_python: Path, django_python: Path
) -> dict[str, Command]:
    suite = ["--suite", "scheduler", "--seconds", str(args.seconds)]
    logs = ["--log-dir", str(args.json_out.parent / "logs")]
    django = [str(django_python), str(BENCH_DIR / "_django_side.py"), *suite, *logs]
    env = django_env(args, "bench_django_dbos_scheduler", settings="_bench_settings")
    dbos_db = db_url(args, "bench_dbos_scheduler")
    return {
        "django-dbos/create_schedule": ([*django, "--kind", "create_schedule"], env),
        "django-dbos/scheduled": ([*django, "--kind", "scheduled"], env),
        "dbos/create_schedule": (
            [str(dbos_python), str(BENCH_DIR / "_dbos_side.py"), "--db", dbos_db, *suite],
            base_env(),
        ),
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--quick", action="store_true", help=f"short default sizes: {QUICK}")
    ap.add_argument("--repeats", type=int, help=f"repetitions (default: {DEFAULTS['repeats']})")
    ap.add_argument(
        "--seconds",
        type=float,
        help=f"length of each side's window (default: {DEFAULTS['seconds']:g})",
    )
    ap.add_argument(
        "--sides",
        default=",".join(SIDES),
        type=lambda text: text.split(","),
        help=f"sides to run, comma-separated (default: {','.join(SIDES)})",
    )
    add_venv_and_output_args(ap, "scheduler.json")
    args = ap.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    if unknown := set(args.sides) - set(SIDES):
        ap.error(f"unknown sides: {', '.join(sorted(unknown))}")
    if min(args.repeats, args.seconds) <= 0:
        ap.error("sizes must be positive")
    return args


# Figures -----------------------------------------------------------------------------------


def sched(result: dict[str, Any], *keys: str) -> Any:
    return dig(result, "scheduler", *keys)


def count(key: str) -> Figure:
    return (f"ticks {key.replace('_', ' ')}", lambda r: len(sched(r, key)))


def drift(figure: str, name: str, percentiles: tuple[str, ...]) -> list[Figure]:
    return [
        (
            f"{name} drift, {pct}, ms",
            lambda r, pct=pct: sched(r, "drift", figure, f"{pct}_ms"),
        )
        for pct in percentiles
    ]


FIGURES: list[Figure] = [
    ("ticks in the window", lambda r: sched(r, "ticks_in_window")),
    ("ticks expected (one a second)", lambda r: sched(r, "expected")),
    count("missed"),
    count("duplicated"),
    count("not_succeeded"),
    *drift("start", "start (claimed)", ("p50", "p90", "p99", "max")),
    *drift("fire", "fire (row inserted)", ("p50", "p99", "max")),
    *drift("step", "first step", ("p50", "p99", "max")),
    *drift("actual_time", "actual_time", ("p50", "p99", "max")),
]


def summarize_runs(args: argparse.Namespace, runs: list[Run]) -> dict[str, Any]:
    django_sides = [side for side in args.sides if side.startswith("django-dbos")]
    p99 = {
        side: statistics.median(sched(run[side], "drift", "start", "p99_ms") for run in runs)
        for side in args.sides
    }
    clean = all(
        not sched(run[side], key)
        for run in runs
        for side in django_sides
        for key in ("missed", "duplicated", "not_succeeded")
    )
    return {
        "table": figure_table(runs, args.sides, FIGURES),
        "start_drift_p99_ms": p99,
        "target": {
            "start_p99_ms_under": TARGET_START_P99_MS,
            **{f"{side}_met": p99[side] < TARGET_START_P99_MS for side in django_sides},
            "django_dbos_no_missed_or_duplicated_ticks": clean,
        },
    }


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    many = args.repeats > 1
    head = f"median of {args.repeats} runs [min .. max]" if many else "one run"
    print(f"\n{head}; a per-second schedule for {args.seconds:g} s per side; drift = X - scheduled")
    print_table(summary["table"], args.sides, LABELS, many, 36)
    print(f"\ntarget: django-dbos start drift p99 under {TARGET_START_P99_MS:g} ms, no tick missed")
    for side in args.sides:
        if side.startswith("django-dbos"):
            met = "met" if summary["target"][f"{side}_met"] else "NOT MET"
            print(f"  {LABELS[side]:24s} p99 {summary['start_drift_p99_ms'][side]:7.1f} ms  {met}")
    clean = summary["target"]["django_dbos_no_missed_or_duplicated_ticks"]
    print(f"  {'missed/duplicated/failed ticks':24s} {'none' if clean else 'SOME'}")


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start, git_start = loadavg(), git_state()
    dbos_python, django_python = ensure_venvs(args)
    commands = side_commands(args, dbos_python, django_python)
    runs = run_all(args.sides, args.repeats, commands, timeout=args.seconds + SIDE_OVERHEAD_S)
    summary = summarize_runs(args, runs)
    print_report(args, summary)

    last = runs[-1]
    meta = {
        **run_meta(args, started_at, load_start, git_start),
        "pg_settings": last[args.sides[0]]["meta"]["pg_settings"],
        "sides": {side: last[side]["meta"] for side in args.sides},
    }
    write_json(args.json_out, {"meta": meta, **summary, "runs": runs})


if __name__ == "__main__":
    main()
