"""Core overhead of django-dbos against DBOS Transact for Python and a raw-INSERT floor.

One run, one PostgreSQL server, three sides, each a fresh process on a fresh database:

* ``floor``       plain psycopg, one single-row INSERT per autocommit transaction
                  (``bench_floor``; the ``.venv`` interpreter);
* ``dbos``        DBOS Transact for Python, ``dbos==3.4.0`` from PyPI, launched in-process
                  (``bench_dbos``; the ``.venv-dbos`` interpreter, created here if missing);
* ``django-dbos`` this repository on ``testproject.settings``
                  (``bench_django_dbos``; the ``.venv`` interpreter).

Measured on both workflow sides, with the same trivial workflow (``n`` steps that return
their argument):

(a) inline: direct calls of a 0-step and a 10-step workflow, interleaved; p50 of each, the
    per-step overhead ``(p50(10) - p50(0)) / 10`` and the CPU of the calling thread;
(b) ``start_workflow``: 1,000 starts of a 3-step workflow from one thread, then every handle
    waited for; workflows per second.

The floor is the p50 of a few thousand INSERT commits. Every repetition runs the three sides
in a rotated order; the table gives the median over repetitions [min .. max], and the ratios
are taken from those medians (per-repetition ratios are printed too).

Usage, from the repository root (any Python 3.11+; the sides bring their own interpreters)::

    python3 bench/core.py                  # 3 repetitions, full sizes: under a minute here
    python3 bench/core.py --quick          # 1 repetition, small sizes: 5 to 10 seconds
    python3 bench/core.py --repeats 5 --json-out /tmp/core.json

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``; the databases
``bench_floor``, ``bench_dbos`` and ``bench_django_dbos`` are dropped and recreated.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from _common import RESULT_MARKER  # noqa: E402

SIDES = ("floor", "dbos", "django-dbos")
LABELS = {"floor": "floor (psycopg)", "dbos": "DBOS 3.4.0", "django-dbos": "django-dbos"}
DEFAULTS = {"repeats": 3, "pairs": 500, "start_n": 1000, "floor_inserts": 5000}
QUICK = {"repeats": 1, "pairs": 30, "start_n": 100, "floor_inserts": 500}
SIDE_TIMEOUT_S = 600


# Environment -------------------------------------------------------------------------------


def run_checked(cmd: list[str], **kwargs: Any) -> None:
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)


def ensure_venv(venv: Path, packages: list[str]) -> Path:
    """Return the venv's interpreter, creating the venv (and installing) if it is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} ...", flush=True)
        run_checked([sys.executable, "-m", "venv", str(venv)])
        run_checked([str(venv / "bin" / "pip"), "install", "-q", *packages], cwd=ROOT)
    return python


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the engine had uncommitted changes."""

    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "django_dbos").splitlines()
    return {"head": git("rev-parse", "HEAD"), "django_dbos_uncommitted": changed}


def host_cpu_jiffies() -> list[int] | None:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq
    steal), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None


def run_side(name: str, cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one side process; return its result line, plus wall time and host CPU use."""
    j0, t0 = host_cpu_jiffies(), time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=SIDE_TIMEOUT_S
    )
    elapsed, j1 = time.perf_counter() - t0, host_cpu_jiffies()
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"side {name!r} failed (exit code {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARKER) :])
    result["process_wall_s"] = elapsed
    if j0 is not None and j1 is not None:
        delta = [b - a for a, b in zip(j0, j1, strict=True)]
        total = max(1, sum(delta))
        result["host"] = {
            "busy_pct": 100.0 * (total - delta[3] - delta[4]) / total,
            "steal_pct": 100.0 * delta[7] / total,
        }
    return result


def side_commands(
    args: argparse.Namespace, dbos_python: Path, django_python: Path
) -> dict[str, tuple[list[str], dict[str, str]]]:
    def url(db: str, scheme: str = "postgresql") -> str:
        return f"{scheme}://{args.user}@{args.host}:{args.port}/{db}"

    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    sizes = [
        *("--pairs", str(args.pairs), "--steps", str(args.steps)),
        *("--start-n", str(args.start_n), "--start-steps", str(args.start_steps)),
    ]
    django_env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DATABASE_URL": url("bench_django_dbos", "postgres"),
        "PYTHONPATH": str(ROOT),
        "CONN_MAX_AGE": "600",
        # As in production: with DEBUG on, Django would also keep a log of every query.
        "DJANGO_DEBUG": "False",
        "DBOS_LOG_LEVEL": "WARNING",
    }
    floor = [str(django_python), str(BENCH_DIR / "_floor_side.py"), "--db", url("bench_floor")]
    dbos = [str(dbos_python), str(BENCH_DIR / "_dbos_side.py"), "--db", url("bench_dbos")]
    django = [str(django_python), str(BENCH_DIR / "_django_side.py")]
    return {
        "floor": ([*floor, "--inserts", str(args.floor_inserts)], base_env),
        "dbos": ([*dbos, *sizes], base_env),
        "django-dbos": ([*django, *sizes], django_env),
    }


# Figures -----------------------------------------------------------------------------------

Getter = Callable[[dict[str, Any]], float]


def figures(steps: int, start_n: int, start_steps: int) -> list[tuple[str, dict[str, Getter]]]:
    """Rows of the table: a label and, per side, how to read the figure from a result."""
    s = steps

    def both(get: Getter) -> dict[str, Getter]:
        return {"dbos": get, "django-dbos": get}

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


def fmt(value: float) -> str:
    for limit, spec in ((100, ".0f"), (10, ".1f"), (1, ".2f")):
        if abs(value) >= limit:
            return format(value, spec)
    return format(value, ".3f")


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


# Main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1", help="PostgreSQL host (default: %(default)s)")
    ap.add_argument("--port", type=int, default=5432, help="(default: %(default)s)")
    ap.add_argument("--user", default="postgres", help="trusted role (default: %(default)s)")
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
    ap.add_argument(
        "--dbos-venv",
        type=Path,
        default=ROOT / ".venv-dbos",
        help="venv for dbos==3.4.0, created if missing (default: <repo>/.venv-dbos)",
    )
    ap.add_argument(
        "--django-venv",
        type=Path,
        default=ROOT / ".venv",
        help="venv with django-dbos installed, created if missing (default: <repo>/.venv)",
    )
    ap.add_argument(
        "--json-out",
        type=Path,
        default=BENCH_DIR / "results" / "core.json",
        help="where to write the results (default: bench/results/core.json)",
    )
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

Run = dict[str, dict[str, Any]]


def run_all(
    args: argparse.Namespace, commands: dict[str, tuple[list[str], dict[str, str]]]
) -> list[Run]:
    """Every repetition runs every side once, in an order rotated by one each time."""
    runs: list[Run] = []
    for rep in range(args.repeats):
        order = SIDES[rep % len(SIDES) :] + SIDES[: rep % len(SIDES)]
        run: Run = {}
        for side in order:
            print(f"[{rep + 1}/{args.repeats}] {side} ...", end=" ", flush=True)
            cmd, env = commands[side]
            head = git_state()["head"] if side == "django-dbos" else None
            run[side] = run_side(side, cmd, env)
            if head is not None:  # the engine may change between runs while it is developed
                run[side]["git_head"] = head
            host = run[side].get("host")
            busy = f", host CPU {host['busy_pct']:.0f}% busy" if host else ""
            print(f"{run[side]['process_wall_s']:.1f} s{busy}", flush=True)
        runs.append(run)
    return runs


def summarize_runs(args: argparse.Namespace, runs: list[Run]) -> dict[str, Any]:
    table = {
        label: {side: spread([get(run[side]) for run in runs]) for side, get in getters.items()}
        for label, getters in figures(args.steps, args.start_n, args.start_steps)
    }
    keys = {"floor": ["per_insert_ms"], "dbos": ["per_step_ms", "wf_per_s"]}
    keys["django-dbos"] = keys["dbos"]
    medians = {
        side: {k: statistics.median(headline(run[side], side)[k] for run in runs) for k in ks}
        for side, ks in keys.items()
    }
    return {
        "table": table,
        "medians": medians,
        "ratios": ratios(*(medians[side] for side in SIDES)),
        "ratios_per_run": [ratios(*(headline(run[side], side) for side in SIDES)) for run in runs],
    }


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    many = args.repeats > 1
    head = f"median of {args.repeats} runs [min .. max]" if many else "one run"
    width = 22 if many else 14
    print(
        f"\n{head}; inline: {args.pairs} pairs of 0-/{args.steps}-step calls; "
        f"floor: {args.floor_inserts:,} INSERTs"
    )
    print(f"{'figure':50s}" + "".join(f"{LABELS[s]:>{width}s}" for s in SIDES))
    for label, cells in summary["table"].items():
        line = f"{label:50s}"
        for side in SIDES:
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


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    loadavg_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    git_start = git_state()
    dbos_python = ensure_venv(args.dbos_venv, ["dbos==3.4.0", "psycopg[binary]"])
    django_python = ensure_venv(args.django_venv, ["-e", ".[dev]"])
    runs = run_all(args, side_commands(args, dbos_python, django_python))
    summary = summarize_runs(args, runs)
    print_report(args, summary)

    last = runs[-1]
    meta = {
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": loadavg_start,
            "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "git_start": git_start,
        "git_end": git_state(),
        "pg_settings": last["floor"]["meta"]["pg_settings"],
        "sides": {side: last[side]["meta"] for side in SIDES},
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"meta": meta, **summary, "runs": runs}, indent=1) + "\n")
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()
