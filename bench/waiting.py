"""100,000 workflows waiting at once in one worker, in recv or in sleep, then woken: vs DBOS.

One django-dbos worker holds them all, waiting in ``recv`` (and, in another run, in ``sleep``);
DBOS Transact for Python runs the same at the sizes it survives.

Each run is one side process on a fresh database (``bench_django_dbos_waiting``,
``bench_dbos_waiting``) that starts N workflows with ``DBOS.start_workflow``, waits until all
of them wait, wakes them (``recv``: one ``DBOS.send`` each; ``sleep``: all were given the same
wake time) and waits until all have finished. Reported per run: the time to start them, to wake
and finish them all, the process's peak RSS and threads, the database's peak connections, CPU,
and how many finished. django-dbos runs at ``--n``; DBOS 3.4.0, which holds one thread per
waiting workflow, runs at increasing ``--dbos-sizes`` until one fails (an error, a stall, or a
cap reached: every side is killed past its time budget, ``--rss-cap-mb`` or ``--thread-cap``),
and the largest size it survived gives the ratios. Targets for django-dbos: peak RSS under
500 MB, under 100 threads, all finished.

Usage, from the repository root (any Python 3.11+; the sides bring their own interpreters)::

    python3 bench/waiting.py                       # 100,000 each way, DBOS up to what it survives
    python3 bench/waiting.py --quick               # 2,000 workflows, DBOS at 1,000
    python3 bench/waiting.py --modes recv --n 20000 --dbos-sizes 1000,5000

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``. The side logs go
to ``bench/results/logs/``, everything else to ``--json-out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _orchestrate import (
    BENCH_DIR,
    add_server_args,
    add_venv_and_output_args,
    base_env,
    db_url,
    django_env,
    ensure_venvs,
    fmt,
    git_state,
    loadavg,
    run_meta,
    run_side_watched,
    write_json,
)

LABELS = {"django-dbos": "django-dbos", "dbos": "DBOS 3.4.0"}
DATABASES = {"django-dbos": "bench_django_dbos_waiting", "dbos": "bench_dbos_waiting"}
DEFAULTS: dict[str, Any] = {"n": 100_000, "dbos_sizes": "1000,5000,20000,100000"}
QUICK: dict[str, Any] = {"n": 2000, "dbos_sizes": "1000"}
TARGETS = {"rss_mb": 500, "threads": 100}
# After its budget a side still reports and shuts down; it is killed if it takes longer.
GRACE_S = 120


def budget_s(args: argparse.Namespace, n: int) -> float:
    """How long a side may wait for its workflows: generous, since a stall ends it earlier.
    At 5,000, DBOS 3.4.0 started 57 and woke 30 workflows/s here, slower as N grows."""
    return args.budget_s if args.budget_s is not None else 300 + n / 20


def sleep_s(args: argparse.Namespace, recv_run: dict[str, Any] | None, n: int) -> float:
    """The sleep run's common wake time, from its first start: all must be asleep before it.
    1.5 times what the recv run of the same side and size took to start them, plus 15 s; or,
    without one, a guess at 100 starts/s."""
    if args.sleep_s is not None:
        return args.sleep_s
    started = (recv_run or {}).get("result") or {}
    start_s = started.get("waiting", {}).get("start", {}).get("s")
    return 15 + 1.5 * (start_s if start_s is not None else n / 100)


def default_thread_cap() -> int:
    """75% of kernel.pid_max: threads take task ids from the whole machine (and a shared one),
    so the rest of it must still be able to start processes."""
    try:
        return int(0.75 * int(Path("/proc/sys/kernel/pid_max").read_text()))
    except (OSError, ValueError):
        return 20_000


# Running -----------------------------------------------------------------------------------


def failure(watched: dict[str, Any], n: int) -> str | None:
    """Why a run did not survive, or None."""
    result = watched["result"]
    if watched["killed"]:
        return f"killed: {watched['killed']}" + (" (after reporting)" if result else "")
    if result is None:
        return f"crashed (exit code {watched['exit_code']})"
    if watched["exit_code"] != 0:
        return f"exit code {watched['exit_code']} after reporting"
    w = result["waiting"]
    for phase, what in (("waiting", "waiting at once"), ("finished", "finished")):
        if not w[phase]["reached"]:
            return f"{what}: {w[phase]['count']:,} / {n:,} ({w[phase]['gave_up']})"
    if w["spot_check"]["wrong"]:
        return f"wrong results: {w['spot_check']['wrong']}"
    return None


def run_one(
    args: argparse.Namespace, side: str, mode: str, n: int, python: Path, sleep: float
) -> dict[str, Any]:
    """One side process at one size; never raises for the side's failure."""
    budget = budget_s(args, n)
    options = [
        *("--mode", mode, "--n", str(n), "--budget-s", str(budget)),
        *("--stall-s", str(args.stall_s), "--sleep-s", f"{sleep:.1f}"),
    ]
    if side == "dbos":
        script, env = "_waiting_dbos.py", base_env()
        options += ["--db", db_url(args, DATABASES[side])]
    else:
        script, env = "_waiting_django.py", django_env(args, DATABASES[side])
    extra = f", sleep {sleep:.0f} s" if mode == "sleep" else ""
    print(
        f"[{mode}] {LABELS[side]} n={n:,} (budget {budget:.0f} s{extra}) ...", end=" ", flush=True
    )
    head = git_state()["head"] if side == "django-dbos" else None
    watched = run_side_watched(
        [str(python), str(BENCH_DIR / script), *options],
        env,
        BENCH_DIR / "results" / "logs" / f"waiting-{side}-{mode}-{n}.log",
        timeout=budget + GRACE_S,
        rss_cap_mb=args.rss_cap_mb,
        thread_cap=args.thread_cap,
    )
    reason = failure(watched, n)
    print(f"{watched['process_wall_s']:.0f} s, {reason or 'ok'}", flush=True)
    if reason is not None and watched["result"] is None:
        log = Path(watched["log_file"]).read_text(errors="replace")
        sys.stderr.write(log[-3000:])
    return {
        "side": side,
        "mode": mode,
        "n": n,
        "ok": reason is None,
        "failure": reason,
        "git_head": head,
        **watched,
    }


def run_mode(
    args: argparse.Namespace,
    mode: str,
    pythons: dict[str, Path],
    recv_runs: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """django-dbos at ``--n``, then DBOS at increasing sizes until one fails."""

    def recv_run(side: str, n: int) -> dict[str, Any] | None:
        return next((r for r in recv_runs if (r["side"], r["n"]) == (side, n)), None)

    runs = [
        run_one(
            args,
            "django-dbos",
            mode,
            args.n,
            pythons["django-dbos"],
            sleep_s(args, recv_run("django-dbos", args.n), args.n),
        )
    ]
    if not args.skip_dbos:
        for n in args.dbos_sizes:
            run = run_one(
                args, "dbos", mode, n, pythons["dbos"], sleep_s(args, recv_run("dbos", n), n)
            )
            runs.append(run)
            if not run["ok"]:
                break
    return runs


# Report ------------------------------------------------------------------------------------

# (label, key, ratio): the ratio is DBOS / django-dbos for costs, django-dbos / DBOS for rates,
# so that above 1 is better for django-dbos either way.
ROWS: list[tuple[str, str, str | None]] = [
    ("workflows started", "n", None),
    ("waiting at once (deadline recorded)", "waiting", None),
    ("finished (SUCCESS)", "finished", None),
    ("start all, s", "start_s", None),
    ("start rate, wf/s", "start_wf_per_s", "rate"),
    ("send all messages (recv), s", "send_s", None),
    ("**wake -> all finished, s**", "wake_to_finish_s", None),
    ("wake -> all finished, wf/s", "wake_to_finish_wf_per_s", "rate"),
    ("**peak RSS, MB**", "peak_rss_mb", "cost"),
    ("RSS added per waiting workflow, KB", "rss_kb_per_wf", "cost"),
    ("**peak threads**", "peak_threads", "cost"),
    ("**peak database connections**", "peak_connections", "cost"),
    ("process CPU, s", "cpu_s", None),
    ("process CPU per workflow, ms", "cpu_ms_per_wf", "cost"),
]


def figures(run: dict[str, Any]) -> dict[str, float | None]:
    """The table's figures of one run (None where it has no result)."""
    w = (run["result"] or {}).get("waiting")
    if w is None:
        return {key: None for _, key, _ in ROWS}
    return {
        "n": w["n"],
        "waiting": w["waiting"]["count"],
        "finished": w["finished"]["count"],
        "start_s": w["start"]["s"],
        "start_wf_per_s": w["start"]["wf_per_s"],
        "send_s": w["send"]["s"] if "send" in w else None,
        "wake_to_finish_s": w["wake_to_finish_s"],
        "wake_to_finish_wf_per_s": w["wake_to_finish_wf_per_s"],
        "peak_rss_mb": w["peak"]["rss_mb"],
        "rss_kb_per_wf": w["rss_kb_per_wf"],
        "peak_threads": w["peak"]["threads"],
        "peak_connections": w["peak"]["connections"],
        "cpu_s": w["cpu_s"],
        "cpu_ms_per_wf": w["cpu_ms_per_wf"],
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """django-dbos's figures, DBOS's at the largest size it survived, the ratios and the
    check against the targets."""
    django = next(r for r in runs if r["side"] == "django-dbos")
    dbos_runs = [r for r in runs if r["side"] == "dbos"]
    survived = [r for r in dbos_runs if r["ok"]]
    dj = figures(django)
    db = figures(survived[-1]) if survived else None
    ratios: dict[str, float] = {}
    for _, key, kind in ROWS:
        a, b = dj[key], db[key] if db else None
        if kind is None or a is None or b is None or a <= 0 or b <= 0:
            continue
        ratios[key] = b / a if kind == "cost" else a / b
    n = django["n"]
    checks = {
        f"peak RSS under {TARGETS['rss_mb']} MB": (dj["peak_rss_mb"], TARGETS["rss_mb"]),
        f"peak threads under {TARGETS['threads']}": (dj["peak_threads"], TARGETS["threads"]),
    }
    targets = {name: value is not None and value < limit for name, (value, limit) in checks.items()}
    targets[f"all {n:,} finished"] = dj["finished"] == n
    targets[f"all {n:,} waiting at once"] = dj["waiting"] == n
    return {
        "django-dbos": {"n": n, "ok": django["ok"], "failure": django["failure"], **dj},
        "dbos": {"largest_survived": survived[-1]["n"] if survived else None, **(db or {})},
        "dbos_ladder": [{"n": r["n"], "ok": r["ok"], "failure": r["failure"]} for r in dbos_runs],
        "ratios": ratios,
        "targets": targets,
    }


def text(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if float(value).is_integer() else fmt(value)


def print_mode(mode: str, summary: dict[str, Any], skip_dbos: bool) -> None:
    dj, db = summary["django-dbos"], summary["dbos"]
    largest = db["largest_survived"]
    dbos_head = (
        "DBOS 3.4.0 (skipped)"
        if skip_dbos
        else f"DBOS 3.4.0 at {largest:,}"
        if largest
        else "DBOS 3.4.0 (none survived)"
    )
    print(f"\n### {mode}\n")
    print(
        f"| figure | django-dbos at {dj['n']:,} | {dbos_head} | ratio (> 1: django-dbos better) |"
    )
    print("| --- | --- | --- | --- |")
    for label, key, _ in ROWS:
        ratio = summary["ratios"].get(key)
        cells = [text(dj.get(key)), text(db.get(key)), f"{ratio:.2f}" if ratio else ""]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if not skip_dbos:
        ladder = ", ".join(
            f"{r['n']:,} {'ok' if r['ok'] else 'FAILED: ' + r['failure']}"
            for r in summary["dbos_ladder"]
        )
        print(f"\nDBOS sizes tried: {ladder}")
    if dj["failure"]:
        print(f"django-dbos: {dj['failure']}")
    print("\nTargets (django-dbos):")
    for name, met in summary["targets"].items():
        print(f"  {'PASS' if met else 'FAIL'}  {name}")


# Main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--quick", action="store_true", help=f"small default sizes: {QUICK}")
    ap.add_argument("--n", type=int, help=f"django-dbos workflows (default: {DEFAULTS['n']:,})")
    ap.add_argument(
        "--modes", default="recv,sleep", help="recv, sleep or both (default: %(default)s)"
    )
    ap.add_argument(
        "--dbos-sizes",
        help=f"DBOS sizes, tried in order until one fails (default: {DEFAULTS['dbos_sizes']})",
    )
    ap.add_argument("--skip-dbos", action="store_true", help="run django-dbos only")
    ap.add_argument(
        "--budget-s",
        type=float,
        help="how long a side may wait for its workflows (default: 300 + n / 20 seconds)",
    )
    ap.add_argument(
        "--stall-s",
        type=float,
        default=60.0,
        help="a side gives up waiting after this long without progress (default: %(default)s)",
    )
    ap.add_argument(
        "--sleep-s",
        type=float,
        help="sleep mode: first start -> wake time (default: from the recv run's start time)",
    )
    ap.add_argument(
        "--rss-cap-mb",
        type=float,
        default=8192,
        help="kill a side above this RSS (default: %(default)s)",
    )
    ap.add_argument(
        "--thread-cap",
        type=int,
        default=default_thread_cap(),
        help="kill a side above this many threads (default: 75%% of kernel.pid_max, %(default)s)",
    )
    add_venv_and_output_args(ap, "waiting.json")
    args = ap.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.dbos_sizes = sorted(int(s) for s in str(args.dbos_sizes).split(","))
    if not args.modes or any(m not in ("recv", "sleep") for m in args.modes):
        ap.error("--modes: recv, sleep or both")
    if min(args.n, *args.dbos_sizes) < 1:
        ap.error("sizes must be positive")
    return args


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start, git_start = loadavg(), git_state()
    dbos_python, django_python = ensure_venvs(args)
    pythons = {"dbos": dbos_python, "django-dbos": django_python}
    if "DBOS_WORKFLOW_THREADS" in os.environ:
        print(
            f"note: DBOS_WORKFLOW_THREADS={os.environ['DBOS_WORKFLOW_THREADS']} is set here, "
            "so the django-dbos side does not run with the default"
        )
    runs: list[dict[str, Any]] = []
    summaries = {}
    for mode in args.modes:
        recv_runs = [r for r in runs if r["mode"] == "recv"]
        mode_runs = run_mode(args, mode, pythons, recv_runs)
        runs += mode_runs
        summaries[mode] = summarize(mode_runs)
    for mode, summary in summaries.items():
        print_mode(mode, summary, args.skip_dbos)
    metas = {r["side"]: r["result"]["meta"] for r in runs if r["result"]}
    meta = {
        **run_meta(args, started_at, load_start, git_start),
        "thread_cap": args.thread_cap,
        "rss_cap_mb": args.rss_cap_mb,
        "sides": metas,
    }
    write_json(args.json_out, {"meta": meta, "summary": summaries, "runs": runs})


if __name__ == "__main__":
    main()
