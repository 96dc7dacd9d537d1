"""Messaging wake-up latency of django-dbos against DBOS Transact for Python.

One run, one PostgreSQL server, three sides, each a fresh process on a fresh database:

* ``dbos``        DBOS Transact for Python, ``dbos==3.4.0`` from PyPI, launched in-process
                  (``bench_dbos_messaging``; the ``.venv-dbos`` interpreter, created if missing);
* ``django-dbos`` this repository on ``testproject.settings`` with Django's default connection
                  settings (``CONN_MAX_AGE=0``; ``bench_django_dbos_messaging``; the ``.venv``
                  interpreter);
* ``django-dbos-tuned`` the same with ``CONN_MAX_AGE=600`` (on the same database, recreated;
                  ``--no-tuned`` leaves it out).

Both sides run the same code (``_common.Messaging``), in one process with one clock:

(1) send -> recv: a started workflow signals (in memory) that it is about to call
    ``DBOS.recv("bench", timeout_seconds=60)``; the driver waits 0.1 s so that recv really
    blocks, stamps, calls ``DBOS.send(workflow_id, "hello", "bench")`` and waits for the
    result. The latency runs to a stamp taken inside the workflow right after recv returns;
    the ``send`` call alone and send-to-``get_result`` are reported too.
(2) set_event -> get_event: a thread outside any workflow calls
    ``DBOS.get_event(workflow_id, "k", timeout_seconds=60)``; 0.1 s later the driver lets the
    workflow go, which stamps and calls ``DBOS.set_event("k", 1)``. The latency runs from that
    stamp to one taken in the waiting thread when get_event returns.

Each kind runs 50 trials after 3 warm-ups (``--quick``: 10 trials, one repetition). Every
repetition runs the sides in a rotated order; the table gives the median over repetitions
[min .. max] of each side's p50/p90/p99, and the ratios DBOS / django-dbos (the side on
Django's defaults) and, for the p50s, Django's defaults / tuned are taken from those medians
(per-repetition ratios are printed too), followed by percentiles over all trials of all
repetitions pooled.

Usage, from the repository root (any Python 3.11+; the sides bring their own interpreters)::

    python3 bench/messaging.py             # 3 repetitions of 50 trials: about a minute here
    python3 bench/messaging.py --quick     # 1 repetition of 10 trials
    python3 bench/messaging.py --repeats 5 --trials 100 --json-out /tmp/messaging.json

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``; the databases
``bench_dbos_messaging`` and ``bench_django_dbos_messaging`` are dropped and recreated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile
from _orchestrate import (
    BENCH_DIR,
    TUNED_LABEL,
    TUNED_SIDE,
    Command,
    Figure,
    Run,
    add_server_args,
    add_tuned_arg,
    add_tuned_commands,
    add_venv_and_output_args,
    base_env,
    db_url,
    django_env,
    ensure_venvs,
    fmt,
    git_state,
    loadavg,
    print_connections_legend,
    print_tuned_comparison,
    run_all,
    run_meta,
    spread,
    tuned_comparison,
    with_tuned,
    write_json,
)

SIDES = ("dbos", "django-dbos")
LABELS = {"dbos": "DBOS 3.4.0", "django-dbos": "django-dbos", TUNED_SIDE: TUNED_LABEL}
DEFAULTS = {"repeats": 3, "trials": 50}
QUICK = {"repeats": 1, "trials": 10}
# The goal for django-dbos, and DBOS's own p50s on its reference machine (for the printout).
TARGET_P50_MS = 5.0
DBOS_REFERENCE_P50_MS = {"send_to_recv": 18.9, "set_event_to_get_event": 22.3}

# (measurement, figure) -> where the figure lives in a side's "messaging" result.
LATENCIES = {
    "send_to_recv": ("send_recv", "send_to_recv"),
    "set_event_to_get_event": ("set_get_event", "set_event_to_get_event"),
}
ROWS = [
    ("send -> recv wake-up", "send_recv", "send_to_recv"),
    ("  send() call", "send_recv", "send_call"),
    ("  send -> get_result()", "send_recv", "send_to_result"),
    ("set_event -> get_event wake-up", "set_get_event", "set_event_to_get_event"),
    ("  set_event() call", "set_get_event", "set_event_call"),
]
PERCENTILES = ("p50", "p90", "p99")


def side_commands(
    args: argparse.Namespace, dbos_python: Path, django_python: Path
) -> dict[str, Command]:
    suite = ["--suite", "messaging", "--trials", str(args.trials)]
    dbos_db = db_url(args, "bench_dbos_messaging")
    dbos = [str(dbos_python), str(BENCH_DIR / "_dbos_side.py"), "--db", dbos_db, *suite]
    django = [str(django_python), str(BENCH_DIR / "_django_side.py"), *suite]
    return add_tuned_commands(
        {
            "dbos": (dbos, base_env()),
            "django-dbos": (django, django_env(args, "bench_django_dbos_messaging")),
        }
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--quick", action="store_true", help=f"small default sizes: {QUICK}")
    ap.add_argument("--repeats", type=int, help=f"repetitions (default: {DEFAULTS['repeats']})")
    ap.add_argument(
        "--trials",
        type=int,
        help=f"timed trials of each measurement, after 3 warm-ups (default: {DEFAULTS['trials']})",
    )
    add_tuned_arg(ap)
    add_venv_and_output_args(ap, "messaging.json")
    args = ap.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    if min(args.repeats, args.trials) < 1:
        ap.error("sizes must be positive")
    return args


# Figures -----------------------------------------------------------------------------------


def figure(result: dict[str, Any], group: str, name: str, pct: str) -> float:
    return float(result["messaging"][group][name][f"{pct}_ms"])


def ratios(runs_or_medians: dict[str, dict[str, float]]) -> dict[str, float]:
    """DBOS / django-dbos for each latency percentile."""
    dbos, dj = runs_or_medians["dbos"], runs_or_medians["django-dbos"]
    return {key: dbos[key] / dj[key] for key in dbos}


def latency_figures(result: dict[str, Any]) -> dict[str, float]:
    return {
        f"{latency}_{pct}": figure(result, group, name, pct)
        for latency, (group, name) in LATENCIES.items()
        for pct in PERCENTILES
    }


def pooled(runs: list[Run], side: str) -> dict[str, dict[str, float]]:
    """Percentiles over the trials of every repetition together."""
    out: dict[str, dict[str, float]] = {}
    for latency, (group, _name) in LATENCIES.items():
        samples = [s for run in runs for s in run[side]["messaging"][group]["samples_ms"]]
        out[latency] = {
            "n": len(samples),
            "p50_ms": statistics.median(samples),
            "p90_ms": percentile(samples, 90),
            "p99_ms": percentile(samples, 99),
            "max_ms": max(samples),
        }
    return out


RATIO_LABELS = {"send_to_recv": "send -> recv", "set_event_to_get_event": "set_event -> get_event"}


# The figures compared between Django's defaults and the tuned setting.
TUNED_FIGURES: list[Figure] = [
    (f"{RATIO_LABELS[latency]} p50, ms", lambda r, where=where: figure(r, *where, "p50"))
    for latency, where in LATENCIES.items()
]


def summarize_runs(runs: list[Run], sides: list[str]) -> dict[str, Any]:
    table = {
        f"{label} {pct}": {
            side: spread([figure(run[side], group, name, pct) for run in runs]) for side in sides
        }
        for label, group, name in ROWS
        for pct in (PERCENTILES if not label.startswith(" ") else ("p50",))
    }
    medians = {
        side: {
            key: statistics.median(latency_figures(run[side])[key] for run in runs)
            for key in latency_figures(runs[0][side])
        }
        for side in sides
    }
    dj = medians["django-dbos"]
    return {
        "table": table,
        "medians": medians,
        "ratios_dbos_over_django_dbos": ratios(medians),
        "ratios_per_run": [
            ratios({side: latency_figures(run[side]) for side in SIDES}) for run in runs
        ],
        "pooled": {side: pooled(runs, side) for side in sides},
        "target": {
            "p50_ms_at_most": TARGET_P50_MS,
            **{f"{k}_met": dj[f"{k}_p50"] <= TARGET_P50_MS for k in LATENCIES},
        },
        "dbos_reference_machine_p50_ms": DBOS_REFERENCE_P50_MS,
        "default_over_tuned": tuned_comparison(runs, sides, TUNED_FIGURES),
    }


def print_report(args: argparse.Namespace, summary: dict[str, Any], sides: list[str]) -> None:
    many = args.repeats > 1
    head = f"median of {args.repeats} runs [min .. max]" if many else "one run"
    width = max(24 if many else 14, *(len(LABELS[s]) + 2 for s in sides))
    print(f"\n{head}; {args.trials} trials of each kind per run (after 3 warm-ups); ms")
    print_connections_legend(args)
    print(f"{'figure':40s}" + "".join(f"{LABELS[s]:>{width}s}" for s in sides))
    for label, cells in summary["table"].items():
        line = f"{label:40s}"
        for side in sides:
            cell = cells[side]
            if many:
                text = f"{fmt(cell['median'])} [{fmt(cell['min'])}..{fmt(cell['max'])}]"
            else:
                text = fmt(cell["median"])
            line += f"{text:>{width}s}"
        print(line)

    print("\nratios DBOS / django-dbos (from the medians above):")
    for latency, name in RATIO_LABELS.items():
        for pct in PERCENTILES:
            key = f"{latency}_{pct}"
            per_run = ", ".join(f"{r[key]:.2f}" for r in summary["ratios_per_run"])
            extra = f"   (per run: {per_run})" if many else ""
            value = summary["ratios_dbos_over_django_dbos"][key]
            print(f"  {name + ' ' + pct:30s} {value:7.2f}{extra}")
    print_tuned_comparison(summary["default_over_tuned"], many)

    if many:
        heads = "".join(f"{k:>8s}" for k in ("p50", "p90", "p99", "max"))
        print(f"\n{'pooled over all runs, ms':40s}{heads}{'n':>6s}")
        for latency, name in RATIO_LABELS.items():
            for side in sides:
                p = summary["pooled"][side][latency]
                figs = "".join(f"{fmt(p[f'{k}_ms']):>8s}" for k in ("p50", "p90", "p99", "max"))
                print(f"  {name:24s}  {LABELS[side]:18s}{figs}{p['n']:>6d}")

    print(f"\ntarget: django-dbos p50 at most {fmt(TARGET_P50_MS)} ms")
    dj = summary["medians"]["django-dbos"]
    for latency, name in RATIO_LABELS.items():
        met = "met" if summary["target"][f"{latency}_met"] else "NOT MET"
        print(
            f"  {name:28s} {fmt(dj[f'{latency}_p50']):>6s} ms  {met}"
            f"   (DBOS on its reference machine: {DBOS_REFERENCE_P50_MS[latency]} ms)"
        )


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start, git_start = loadavg(), git_state()
    dbos_python, django_python = ensure_venvs(args)
    sides = with_tuned(args, SIDES)
    runs = run_all(sides, args.repeats, side_commands(args, dbos_python, django_python))
    summary = summarize_runs(runs, sides)
    print_report(args, summary, sides)

    last = runs[-1]
    meta = {
        **run_meta(args, started_at, load_start, git_start),
        "pg_settings": last["django-dbos"]["meta"]["pg_settings"],
        "sides": {side: last[side]["meta"] for side in sides},
    }
    write_json(args.json_out, {"meta": meta, **summary, "runs": runs})


if __name__ == "__main__":
    main()
