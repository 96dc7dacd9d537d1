"""Helpers shared by the orchestrators (``core.py``, ``messaging.py``, ``queues.py``,
``scheduler.py``, ``waiting.py``); standard library only.

An orchestrator runs each side as a fresh subprocess under its own interpreter, collects the
one ``RESULT_MARKER + json`` line the side prints, and reports. This module holds what every
orchestrator needs for that: the venvs, the side environments, running a side, rotating the
side order over repetitions, and the run's metadata.

Every django-dbos side runs with Django's default connection settings (``CONN_MAX_AGE=0``,
``CONN_HEALTH_CHECKS=False``). ``core.py``, ``messaging.py`` and ``queues.py`` run beside each
one its tuned twin (``CONN_MAX_AGE=600``) and report Django's defaults / tuned.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import RESULT_MARKER, proc_status

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SIDE_TIMEOUT_S = 600

Command = tuple[list[str], dict[str, str]]
Run = dict[str, dict[str, Any]]


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


def ensure_venvs(args: argparse.Namespace) -> tuple[Path, Path]:
    """The interpreters of the DBOS side and the django-dbos side."""
    dbos_python = ensure_venv(args.dbos_venv, ["dbos==3.4.0", "psycopg[binary]"])
    django_python = ensure_venv(args.django_venv, ["-e", ".[dev]"])
    return dbos_python, django_python


def git_state() -> dict[str, Any]:
    """The commit measured, and whether the engine had uncommitted changes."""

    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "django_dbos").splitlines()
    return {"head": git("rev-parse", "HEAD"), "django_dbos_uncommitted": changed}


def db_url(args: argparse.Namespace, db: str, scheme: str = "postgresql") -> str:
    return f"{scheme}://{args.user}@{args.host}:{args.port}/{db}"


def base_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH (the DBOS side must not see the repo)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


# Django's default connection settings, which every figure is taken with; and the tuned
# setting shown beside them (each thread keeps its connection for ten minutes). The test
# project reads both from the environment.
DJANGO_DEFAULT_CONNECTIONS = {"CONN_MAX_AGE": "0", "CONN_HEALTH_CHECKS": "False"}
TUNED_CONNECTIONS = {**DJANGO_DEFAULT_CONNECTIONS, "CONN_MAX_AGE": "600"}


def django_env(
    args: argparse.Namespace,
    db: str,
    settings: str = "testproject.settings",
    connections: dict[str, str] = DJANGO_DEFAULT_CONNECTIONS,
) -> dict[str, str]:
    """The environment of a django-dbos side process on database ``db``, with the connection
    settings ``connections`` (Django's defaults unless told otherwise)."""
    return {
        **base_env(),
        "DJANGO_SETTINGS_MODULE": settings,
        "DATABASE_URL": db_url(args, db, "postgres"),
        "PYTHONPATH": str(ROOT),
        **connections,
        # As in production: with DEBUG on, Django would also keep a log of every query.
        "DJANGO_DEBUG": "False",
        "DBOS_LOG_LEVEL": "WARNING",
    }


def host_cpu_jiffies() -> list[int] | None:
    """The aggregate ``cpu`` line of /proc/stat (user nice system idle iowait irq softirq
    steal), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None


def loadavg() -> tuple[float, float, float] | None:
    return os.getloadavg() if hasattr(os, "getloadavg") else None


# Running sides -----------------------------------------------------------------------------


def result_line(output: str) -> dict[str, Any] | None:
    """The last ``RESULT_MARKER`` line of a side's output, parsed; None if there is none."""
    lines = [line for line in output.splitlines() if line.startswith(RESULT_MARKER)]
    return json.loads(lines[-1][len(RESULT_MARKER) :]) if lines else None


def host_use(j0: list[int] | None, j1: list[int] | None) -> dict[str, float] | None:
    """Host CPU busy and steal % between two ``host_cpu_jiffies()`` readings."""
    if j0 is None or j1 is None:
        return None
    delta = [b - a for a, b in zip(j0, j1, strict=True)]
    total = max(1, sum(delta))
    return {
        "busy_pct": 100.0 * (total - delta[3] - delta[4]) / total,
        "steal_pct": 100.0 * delta[7] / total,
    }


def run_side(
    name: str, cmd: list[str], env: dict[str, str], timeout: float = SIDE_TIMEOUT_S
) -> dict[str, Any]:
    """Run one side process; return its result line, plus wall time and host CPU use."""
    j0, t0 = host_cpu_jiffies(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    elapsed, j1 = time.perf_counter() - t0, host_cpu_jiffies()
    result = result_line(proc.stdout)
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"side {name!r} failed (exit code {proc.returncode})")
    result["process_wall_s"] = elapsed
    host = host_use(j0, j1)
    if host is not None:
        result["host"] = host
    return result


def run_side_watched(
    cmd: list[str],
    env: dict[str, str],
    log_path: Path,
    timeout: float,
    rss_cap_mb: float,
    thread_cap: int,
    every_s: float = 0.5,
) -> dict[str, Any]:
    """Run a side that may not survive (one pushed to its limits), never raising for it.

    Its stdout and stderr go to ``log_path``. It is sampled every ``every_s`` and killed when
    it runs past ``timeout``, above ``rss_cap_mb`` or above ``thread_cap`` threads, so that it
    cannot take the machine's memory or task ids from everything else running there. Returns
    its result line (or None), exit code, why it was killed (or None), the peaks seen from
    outside, wall time and host CPU use.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    j0, t0 = host_cpu_jiffies(), time.perf_counter()
    peak_rss_kb = peak_threads = 0
    killed = None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        while proc.poll() is None:
            status = proc_status(proc.pid)
            peak_rss_kb = max(peak_rss_kb, status.get("VmRSS", 0))
            peak_threads = max(peak_threads, status.get("Threads", 0))
            if time.perf_counter() - t0 > timeout:
                killed = f"timeout after {timeout:.0f} s"
            elif peak_rss_kb > rss_cap_mb * 1024:
                killed = f"RSS above {rss_cap_mb:.0f} MB"
            elif peak_threads > thread_cap:
                killed = f"more than {thread_cap} threads"
            if killed is not None:
                proc.kill()
                proc.wait()
                break
            time.sleep(every_s)
    return {
        "result": result_line(log_path.read_text(errors="replace")),
        "exit_code": proc.returncode,
        "killed": killed,
        "outside_peak_rss_mb": peak_rss_kb / 1024,
        "outside_peak_threads": peak_threads,
        "process_wall_s": time.perf_counter() - t0,
        "host": host_use(j0, host_cpu_jiffies()),
        "log_file": str(log_path),
    }


def run_all(
    sides: Sequence[str],
    repeats: int,
    commands: dict[str, Command],
    timeout: float = SIDE_TIMEOUT_S,
) -> list[Run]:
    """Every repetition runs every side once, in an order rotated by one each time.

    Sides whose name starts with ``django-dbos`` record the commit they ran."""
    runs: list[Run] = []
    for rep in range(repeats):
        shift = rep % len(sides)
        order = [*sides[shift:], *sides[:shift]]
        run: Run = {}
        for side in order:
            print(f"[{rep + 1}/{repeats}] {side} ...", end=" ", flush=True)
            cmd, env = commands[side]
            head = git_state()["head"] if side.startswith("django-dbos") else None
            run[side] = run_side(side, cmd, env, timeout)
            if head is not None:  # the engine may change between runs while it is developed
                run[side]["git_head"] = head
            host = run[side].get("host")
            busy = f", host CPU {host['busy_pct']:.0f}% busy" if host else ""
            print(f"{run[side]['process_wall_s']:.1f} s{busy}", flush=True)
        runs.append(run)
    return runs


# Options and output ------------------------------------------------------------------------


def add_server_args(ap: argparse.ArgumentParser) -> None:
    """The PostgreSQL server, the same for every orchestrator."""
    ap.add_argument("--host", default="127.0.0.1", help="PostgreSQL host (default: %(default)s)")
    ap.add_argument("--port", type=int, default=5432, help="(default: %(default)s)")
    ap.add_argument("--user", default="postgres", help="trusted role (default: %(default)s)")


def add_venv_and_output_args(
    ap: argparse.ArgumentParser, json_name: str, dbos: bool = True
) -> None:
    """The two venvs (without ``dbos``, only django-dbos's) and --json-out, the same for every
    orchestrator."""
    if dbos:
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
        default=BENCH_DIR / "results" / json_name,
        help=f"where to write the results (default: bench/results/{json_name})",
    )


def run_meta(
    args: argparse.Namespace, started_at: str, load_start: Any, git_start: dict[str, Any]
) -> dict[str, Any]:
    """What every results file records about the run itself."""
    return {
        "started_at": started_at,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": sys.argv,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": loadavg(),
        },
        "git_start": git_start,
        "git_end": git_state(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {path}")


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


# Tables of figures (queues.py, scheduler.py) -------------------------------------------------

Getter = Callable[[dict[str, Any]], float | None]
Figure = tuple[str, Getter]


def dig(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a key is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def figure_table(
    runs: list[Run], sides: Sequence[str], figures: Sequence[Figure]
) -> dict[str, dict[str, dict[str, Any]]]:
    """label -> side -> spread over the runs; a side without the figure has no cell."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for label, get in figures:
        cells = {}
        for side in sides:
            values = [get(run[side]) for run in runs]
            if all(v is not None for v in values):
                cells[side] = spread([float(v) for v in values if v is not None])
        table[label] = cells
    return table


def print_table(
    table: dict[str, dict[str, dict[str, Any]]],
    sides: Sequence[str],
    labels: dict[str, str],
    many: bool,
    label_width: int = 48,
) -> None:
    """One row per figure: the value of one run, or the median [min..max] of several."""

    def text(value: float) -> str:
        return str(int(value)) if value.is_integer() else fmt(value)  # counts as integers

    width = max(22 if many else 12, *(len(labels[side]) + 2 for side in sides))
    print(f"{'figure':{label_width}s}" + "".join(f"{labels[s]:>{width}s}" for s in sides))
    for label, cells in table.items():
        line = f"{label:{label_width}s}"
        for side in sides:
            cell = cells.get(side)
            if cell is None:
                shown = "-"
            elif many:
                shown = f"{text(cell['median'])} [{text(cell['min'])}..{text(cell['max'])}]"
            else:
                shown = text(cell["median"])
            line += f"{shown:>{width}s}"
        print(line)


# The tuned twin of the django-dbos sides (core.py, messaging.py, queues.py) ----------------

DEFAULT_SIDE = "django-dbos"
TUNED_SIDE = "django-dbos-tuned"
TUNED_LABEL = "django-dbos tuned"


def add_tuned_arg(ap: argparse.ArgumentParser) -> None:
    """--no-tuned, the same for every orchestrator with a tuned twin."""
    ap.add_argument(
        "--no-tuned",
        dest="tuned",
        action="store_false",
        help="leave out the tuned django-dbos side (CONN_MAX_AGE=600), which otherwise runs "
        "beside the one on Django's default settings",
    )


def tuned_twin(side: str) -> str:
    """``django-dbos`` -> ``django-dbos-tuned``, ``django-dbos/1`` -> ``django-dbos-tuned/1``."""
    return side.replace(DEFAULT_SIDE, TUNED_SIDE, 1)


def is_default_side(side: str) -> bool:
    """A django-dbos side on Django's default settings (``django-dbos``, ``django-dbos/1``)."""
    return side.partition("/")[0] == DEFAULT_SIDE


def with_tuned(args: argparse.Namespace, sides: Sequence[str]) -> list[str]:
    """The sides, each django-dbos one followed by its tuned twin unless ``--no-tuned``; the
    twins are rotated with the others by ``run_all``."""
    out: list[str] = []
    for side in sides:
        out.append(side)
        if args.tuned and is_default_side(side):
            out.append(tuned_twin(side))
    return out


def add_tuned_commands(commands: dict[str, Command]) -> dict[str, Command]:
    """The commands, plus the tuned twin of each django-dbos side: the same command and
    database, with ``TUNED_CONNECTIONS`` in its environment (which its worker processes
    inherit)."""
    twins = {
        tuned_twin(side): (cmd, {**env, **TUNED_CONNECTIONS})
        for side, (cmd, env) in commands.items()
        if is_default_side(side)
    }
    return {**commands, **twins}


def print_connections_legend(args: argparse.Namespace) -> None:
    """Which connection settings the django-dbos columns ran with."""

    def text(connections: dict[str, str]) -> str:
        return ", ".join(f"{name}={value}" for name, value in connections.items())

    print(f"{DEFAULT_SIDE}: Django's default settings ({text(DJANGO_DEFAULT_CONNECTIONS)})")
    if args.tuned:
        print(f"{TUNED_LABEL}: tuned ({text(TUNED_CONNECTIONS)})")


def tuned_comparison(
    runs: list[Run], sides: Sequence[str], figures: Sequence[Figure]
) -> dict[str, Any] | None:
    """Default / tuned for each headline figure of each django-dbos side that has its twin in
    ``sides``: from the medians over the runs, and per run. None without twins."""
    pairs = [
        (side, tuned_twin(side))
        for side in sides
        if is_default_side(side) and tuned_twin(side) in sides
    ]
    if not pairs:
        return None

    def default_over_tuned(value: Callable[[str, Getter], float]) -> dict[str, dict[str, float]]:
        return {
            side: {label: value(side, get) / value(twin, get) for label, get in figures}
            for side, twin in pairs
        }

    def median(side: str, get: Getter) -> float:
        return statistics.median(get(run[side]) for run in runs)

    return {
        "connections": {"default": DJANGO_DEFAULT_CONNECTIONS, "tuned": TUNED_CONNECTIONS},
        "ratios": default_over_tuned(median),
        "ratios_per_run": [
            default_over_tuned(lambda side, get, run=run: get(run[side])) for run in runs
        ],
    }


def print_tuned_comparison(comparison: dict[str, Any] | None, many: bool) -> None:
    if comparison is None:
        return
    print(
        "\nDjango's defaults / tuned (from the medians; a rate below 1, or a time above 1, "
        "is slower on the defaults):"
    )
    for side, figures in comparison["ratios"].items():
        for label, value in figures.items():
            per_run = ", ".join(f"{r[side][label]:.2f}" for r in comparison["ratios_per_run"])
            extra = f"   (per run: {per_run})" if many else ""
            print(f"  {side + ': ' + label:52s} {value:7.2f}{extra}")
