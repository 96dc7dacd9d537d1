"""Core overhead of django-dbos against DBOS Transact for Python and a raw-INSERT floor.

One run, one PostgreSQL server, four sides, each a fresh process on a fresh database:

* ``floor``       plain psycopg, one single-row INSERT per autocommit transaction
                  (``bench_floor``; the ``.venv`` interpreter);
* ``dbos``        DBOS Transact for Python, ``dbos==3.4.0`` from PyPI, launched in-process
                  (``bench_dbos``; the ``.venv-dbos`` interpreter, created here if missing);
* ``django-dbos`` this repository on ``testproject.settings`` with Django's default connection
                  settings (``CONN_MAX_AGE=0``; ``bench_django_dbos``; the ``.venv`` interpreter);
* ``django-dbos-tuned`` the same with ``CONN_MAX_AGE=600`` (on the same database, recreated;
                  ``--no-tuned`` leaves it out);
* ``django-dbos-instrumented`` the inline measure of the ``django-dbos`` side (which runs with
                  both off) in three modes, in one process: both off, the per-process
                  Prometheus series on (``DBOS["METRICS"]``), OpenTelemetry tracing on (an SDK
                  ``TracerProvider`` with no exporter: every span is made, then dropped).
                  Rounds of one block per mode, the order rotated each round, so that a busy
                  machine's drifts hit the modes alike (``--no-instrumented`` leaves it out).

Measured on both workflow sides, with the same trivial workflow (``n`` steps that return
their argument):

(a) inline: direct calls of a 0-step and a 10-step workflow, interleaved; p50 of each, the
    per-step overhead ``(p50(10) - p50(0)) / 10`` and the CPU of the calling thread;
(b) ``start_workflow``: 1,000 starts of a 3-step workflow from one thread, then every handle
    waited for; workflows per second.

The floor is the p50 of a few thousand INSERT commits. Every repetition runs the sides in a
rotated order; the table gives the median over repetitions [min .. max], and the ratios are
taken from those medians (per-repetition ratios are printed too): against DBOS and the floor
with the ``django-dbos`` side, and Django's defaults / tuned for the two django-dbos sides. The
instrumented side prints each mode's per-step overhead / both off (median of the blocks of every
repetition), against the targets: metrics at most 3% more, tracing at most 10%.

Usage, from the repository root (any Python 3.11+; the sides bring their own interpreters)::

    python3 bench/core.py                  # 3 repetitions, full sizes: under a minute here
    python3 bench/core.py --quick          # 1 repetition, small sizes: about 15 seconds
    python3 bench/core.py --repeats 5 --json-out /tmp/core.json

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``; the databases
``bench_floor``, ``bench_dbos`` and ``bench_django_dbos`` are dropped and recreated.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

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

SIDES = ("floor", "dbos", "django-dbos")
INSTRUMENTED = "django-dbos-instrumented"
# The most each mode of the instrumented side may add to the per-step overhead (both off: 1).
INSTRUMENT_TARGETS = {"metrics": 1.03, "tracing": 1.10}
LABELS = {
    "floor": "floor (psycopg)",
    "dbos": "DBOS 3.4.0",
    "django-dbos": "django-dbos",
    TUNED_SIDE: TUNED_LABEL,
    INSTRUMENTED: "instrumented",
}
DEFAULTS = {"repeats": 3, "pairs": 500, "start_n": 1000, "floor_inserts": 5000}
QUICK = {"repeats": 1, "pairs": 30, "start_n": 100, "floor_inserts": 500}


def side_commands(
    args: argparse.Namespace, dbos_python: Path, django_python: Path
) -> dict[str, Command]:
    sizes = [
        *("--pairs", str(args.pairs), "--steps", str(args.steps)),
        *("--start-n", str(args.start_n), "--start-steps", str(args.start_steps)),
    ]
    floor = [
        *(str(django_python), str(BENCH_DIR / "_floor_side.py")),
        *("--db", db_url(args, "bench_floor")),
    ]
    dbos = [str(dbos_python), str(BENCH_DIR / "_dbos_side.py"), "--db", db_url(args, "bench_dbos")]
    django = [str(django_python), str(BENCH_DIR / "_django_side.py")]
    django_off = {**django_env(args, "bench_django_dbos"), "DBOS_METRICS": "False"}
    commands = add_tuned_commands(
        {
            "floor": ([*floor, "--inserts", str(args.floor_inserts)], base_env()),
            "dbos": ([*dbos, *sizes], base_env()),
            "django-dbos": ([*django, *sizes], django_off),
        }
    )
    instrumented = [*django, "--suite", "instrumentation", "--rounds", str(args.rounds)]
    commands[INSTRUMENTED] = (
        [*instrumented, "--pairs", str(max(1, args.pairs // 5)), "--steps", str(args.steps)],
        {**django_off, "BENCH_TRACING": "1"},
    )
    return commands


# Figures -----------------------------------------------------------------------------------

Getter = Callable[[dict[str, Any]], float]


def figures(steps: int, start_n: int, start_steps: int) -> list[tuple[str, dict[str, Getter]]]:
    """Rows of the table: a label and, per side, how to read the figure from a result."""
    s = steps

    def both(get: Getter) -> dict[str, Getter]:
        """Both workflow sides (the tuned twin too)."""
        return {"dbos": get, "django-dbos": get, TUNED_SIDE: get}

    return [
        ("inline 0-step workflow, p50 (ms)", both(lambda r: r["inline"]["wf_0"]["p50_ms"])),
        (
            f"inline {s}-step workflow, p50 (ms)",
            both(lambda r: r["inline"][f"wf_{s}"]["p50_ms"]),
        ),
        (
            "per-step overhead (ms) [floor: INSERT p50]",
            {
                "floor": lambda r: r["per_insert_ms"],
                **both(lambda r: r["inline"]["per_step_ms"]),
            },
        ),
        ("floor: SELECT 1 round trip, p50 (ms)", {"floor": lambda r: r["select_1"]["p50_ms"]}),
        (
            "calling-thread CPU, 0-step workflow (ms)",
            both(lambda r: r["inline"]["thread_cpu_ms_wf_0"]),
        ),
        (
            f"calling-thread CPU, {s}-step workflow (ms)",
            both(lambda r: r["inline"][f"thread_cpu_ms_wf_{s}"]),
        ),
        (
            "calling-thread CPU per step (ms) [floor: INSERT]",
            {
                "floor": lambda r: r["thread_cpu_ms_per_insert"],
                **both(lambda r: r["inline"]["thread_cpu_ms_per_step"]),
            },
        ),
        (
            f"start_workflow x{start_n:,} ({start_steps} steps), wf/s",
            both(lambda r: r["start_workflow"]["wf_per_s"]),
        ),
        (
            "start_workflow: process CPU per workflow (ms)",
            both(lambda r: r["start_workflow"]["process_cpu_ms_per_wf"]),
        ),
    ]


def ratios(floor: dict[str, Any], dbos: dict[str, Any], dj: dict[str, Any]) -> dict[str, float]:
    """The three headline ratios, from one set of (possibly median) figures."""
    return {
        "django_dbos_per_step_over_floor": dj["per_step_ms"] / floor["per_insert_ms"],
        "dbos_per_step_over_django_dbos_per_step": dbos["per_step_ms"] / dj["per_step_ms"],
        "django_dbos_start_over_dbos_start": dj["wf_per_s"] / dbos["wf_per_s"],
    }


def headline(result: dict[str, Any], side: str) -> dict[str, float]:
    if side == "floor":
        return {"per_insert_ms": result["per_insert_ms"]}
    return {
        "per_step_ms": result["inline"]["per_step_ms"],
        "wf_per_s": result["start_workflow"]["wf_per_s"],
    }


# The figures compared between Django's defaults and the tuned setting.
TUNED_FIGURES: list[Figure] = [
    ("start_workflow wf/s", lambda r: headline(r, "django-dbos")["wf_per_s"]),
    ("per-step overhead, ms", lambda r: headline(r, "django-dbos")["per_step_ms"]),
]


# Main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--quick", action="store_true", help=f"small default sizes: {QUICK}")
    ap.add_argument("--repeats", type=int, help=f"repetitions (default: {DEFAULTS['repeats']})")
    ap.add_argument(
        "--pairs",
        type=int,
        help=f"interleaved inline (0-step, n-step) call pairs (default: {DEFAULTS['pairs']})",
    )
    ap.add_argument(
        "--steps", type=int, default=10, help="steps of the long inline workflow (default: 10)"
    )
    ap.add_argument(
        "--start-n", type=int, help=f"start_workflow calls (default: {DEFAULTS['start_n']})"
    )
    ap.add_argument(
        "--start-steps", type=int, default=3, help="steps per started workflow (default: 3)"
    )
    ap.add_argument(
        "--floor-inserts",
        type=int,
        help=f"timed INSERT commits of the floor (default: {DEFAULTS['floor_inserts']})",
    )
    add_tuned_arg(ap)
    ap.add_argument(
        "--no-instrumented",
        dest="instrumented",
        action="store_false",
        help="leave out the django-dbos side that measures metrics and tracing on",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="instrumented side: rounds of one block of pairs/5 inline pairs per mode (default: 5)",
    )
    add_venv_and_output_args(ap, "core.json")
    args = ap.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    if min(args.repeats, args.pairs, args.start_n, args.floor_inserts, args.steps) < 1:
        ap.error("sizes must be positive")
    return args


RATIO_NAMES = {
    "django_dbos_per_step_over_floor": "django-dbos per-step / floor per-INSERT",
    "dbos_per_step_over_django_dbos_per_step": "DBOS per-step / django-dbos per-step",
    "django_dbos_start_over_dbos_start": "django-dbos start wf/s / DBOS start wf/s",
}


def summarize_runs(args: argparse.Namespace, runs: list[Run], sides: list[str]) -> dict[str, Any]:
    table = {
        label: {
            side: spread([get(run[side]) for run in runs])
            for side, get in getters.items()
            if side in sides
        }
        for label, getters in figures(args.steps, args.start_n, args.start_steps)
    }
    medians = {
        side: {
            key: statistics.median(headline(run[side], side)[key] for run in runs)
            for key in headline(runs[0][side], side)
        }
        for side in sides
    }
    return {
        "table": table,
        "medians": medians,
        "ratios": ratios(*(medians[side] for side in SIDES)),
        "ratios_per_run": [ratios(*(headline(run[side], side) for side in SIDES)) for run in runs],
        "default_over_tuned": tuned_comparison(runs, sides, TUNED_FIGURES),
    }


def instrumented_comparison(runs: list[Run], sides: list[str]) -> dict[str, Any] | None:
    """Per mode of the instrumented side: the median over every block of every repetition of
    the per-step overhead and calling-thread CPU per step, and their ratio to both off."""
    if INSTRUMENTED not in sides:
        return None
    keys = ("per_step_ms", "thread_cpu_ms_per_step")
    medians = {
        mode: {
            key: statistics.median(
                block[key]
                for run in runs
                for block in run[INSTRUMENTED]["instrumentation"]["blocks"][mode]
            )
            for key in keys
        }
        for mode in ("off", *INSTRUMENT_TARGETS)
    }
    return {
        "medians": medians,
        "targets": INSTRUMENT_TARGETS,
        "ratios": {
            mode: {key: medians[mode][key] / medians["off"][key] for key in keys}
            for mode in INSTRUMENT_TARGETS
        },
    }


def print_instrumented(comparison: dict[str, Any] | None) -> None:
    if comparison is None:
        return
    medians = comparison["medians"]
    print(
        "\ninstrumented (one process, modes interleaved; median of every block): per-step "
        "overhead and calling-thread CPU per step, ms"
    )
    off = medians["off"]
    print(f"  {'both off':10s} {off['per_step_ms']:.4f}   CPU {off['thread_cpu_ms_per_step']:.4f}")
    for mode, target in comparison["targets"].items():
        ratio = comparison["ratios"][mode]
        added = (medians[mode]["per_step_ms"] - medians["off"]["per_step_ms"]) * 1000
        cpu_added = (
            medians[mode]["thread_cpu_ms_per_step"] - medians["off"]["thread_cpu_ms_per_step"]
        ) * 1000
        verdict = "met" if ratio["per_step_ms"] <= target else "MISSED"
        print(
            f"  {mode + ' on':10s} {medians[mode]['per_step_ms']:.4f}   CPU "
            f"{medians[mode]['thread_cpu_ms_per_step']:.4f}   / off: {ratio['per_step_ms']:.3f} "
            f"({added:+.1f} us; target <= {target:.2f}: {verdict}), CPU "
            f"{ratio['thread_cpu_ms_per_step']:.3f} ({cpu_added:+.1f} us)"
        )


def print_report(args: argparse.Namespace, summary: dict[str, Any], sides: list[str]) -> None:
    many = args.repeats > 1
    head = f"median of {args.repeats} runs [min .. max]" if many else "one run"
    width = max(22 if many else 14, *(len(LABELS[s]) + 2 for s in sides))
    print(
        f"\n{head}; inline: {args.pairs} pairs of 0-/{args.steps}-step calls; "
        f"floor: {args.floor_inserts:,} INSERTs"
    )
    print_connections_legend(args)
    print(f"{'figure':50s}" + "".join(f"{LABELS[s]:>{width}s}" for s in sides))
    for label, cells in summary["table"].items():
        line = f"{label:50s}"
        for side in sides:
            cell = cells.get(side)
            if cell is None:
                text = "-"
            elif many:
                text = f"{fmt(cell['median'])} [{fmt(cell['min'])}..{fmt(cell['max'])}]"
            else:
                text = fmt(cell["median"])
            line += f"{text:>{width}s}"
        print(line)
    print("\nratios (from the medians above):")
    for key, name in RATIO_NAMES.items():
        per_run = ", ".join(f"{r[key]:.2f}" for r in summary["ratios_per_run"])
        extra = f"   (per run: {per_run})" if many else ""
        print(f"  {name:45s} {summary['ratios'][key]:7.2f}{extra}")
    print_tuned_comparison(summary["default_over_tuned"], many)
    print_instrumented(summary["instrumented_over_off"])


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start, git_start = loadavg(), git_state()
    dbos_python, django_python = ensure_venvs(args)
    sides = with_tuned(args, SIDES)
    if args.instrumented:
        sides.append(INSTRUMENTED)
    runs = run_all(sides, args.repeats, side_commands(args, dbos_python, django_python))
    # The instrumented side has its own report (its result has no start_workflow figures).
    table_sides = [side for side in sides if side != INSTRUMENTED]
    summary = {
        **summarize_runs(args, runs, table_sides),
        "instrumented_over_off": instrumented_comparison(runs, sides),
    }
    print_report(args, summary, table_sides)

    last = runs[-1]
    meta = {
        **run_meta(args, started_at, load_start, git_start),
        "pg_settings": last["floor"]["meta"]["pg_settings"],
        "sides": {side: last[side]["meta"] for side in sides},
    }
    write_json(args.json_out, {"meta": meta, **summary, "runs": runs})


if __name__ == "__main__":
    main()
