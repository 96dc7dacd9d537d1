"""Deleting old workflows on PostgreSQL: prune throughput, archiving, and the cost to the queue.

One run, one PostgreSQL server, one database (``bench_django_dbos_retention``), a fresh side
process (``_retention_side.py``, settings ``bench/_bench_settings.py``, Django's default
connection settings) per phase, in this order:

1. populate: ``--workflows`` finished workflows (1,000,000 by default) of 5 steps each, made with
   bulk SQL (``INSERT ... SELECT FROM generate_series`` into ``dbos_workflow_status`` and
   ``dbos_operation_output``, 50,000 workflows per transaction), not by running them: 1 in 50
   failed (its last step holds the error), payloads of 80-250 bytes (JSON, as django-dbos writes
   them), ends spread evenly over the last 60 days; then VACUUM ANALYZE. Timed.
2. prune throughput, each on its own tenth of the workflows (6 days of ends), from the oldest:
   ``DBOS.garbage_collect(cutoff=now - 54 days)`` in the side process; then a ``manage.py
   rundbosworker`` with ``DBOS["RETENTION"]`` = ``FINISHED_DAYS`` 48, ``INTERVAL_SECONDS``
   ``--interval`` (so that it works continuously: a batch of 500 per turn); then the same with
   ``FINISHED_DAYS`` 42 and ``ARCHIVE_STORAGE`` a ``FileSystemStorage`` in a temporary directory.
   Workflows deleted per second, from the worker's start (ready) to the last count of what is
   left that changed; the worker's CPU per workflow (its database backend's not counted); the
   archive's files, size and records (which must equal the deletes).
3. idle: the archiving worker again, where nothing is old enough, for 10 s: its RSS, against
   the pruning workers' peak RSS (``VmHWM`` of /proc/<pid>/status). Then a check that no step
   row is left without its workflow.
4. queue throughput: ``queues.py``'s measurement (``_workers.queue_suite``: warm-up, 1,000
   one-step workflows enqueued from one thread through one worker, then the idle dispatch
   latency), without and with the archiving retention policy applied by that same worker, as in
   a project with RETENTION (``FINISHED_DAYS`` 7, so that a backlog of more than half the
   workflows is there to delete): one with ``INTERVAL_SECONDS`` 1 (a batch of 500 a second, some
   43 million workflows a day: the target's; the default, 60 s, deletes 720,000 a day) and one
   with 0.05 s, deleting continuously (a stress figure; ``--queue-intervals``), ``--rounds``
   rounds of the three runs, in
   an order rotated by one each round.

Each phase but the first starts with VACUUM ANALYZE of the two tables, which stands in for
autovacuum (the server measured runs with ``autovacuum = off``).

Targets (issue 17): queue throughput with retention beside it at most 20% lower than without
(the ratio of the medians at least 0.8); the pruning worker's peak RSS within 50 MB of idle.

Usage, from the repository root (any Python 3.11+; the side brings its own interpreter)::

    python3 bench/retention.py --django-venv /work/main/.venv          # 1,000,000: about 5 min
    python3 bench/retention.py --quick                                 # 20,000: about 30 s
    python3 bench/retention.py --workflows 200000 --json-out /tmp/retention.json

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``; the database
``bench_django_dbos_retention`` is dropped and recreated (at 1,000,000 workflows it takes about
2.5 GB). Worker logs go to ``logs/`` next to ``--json-out``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _orchestrate import (
    BENCH_DIR,
    DJANGO_DEFAULT_CONNECTIONS,
    add_server_args,
    add_venv_and_output_args,
    django_env,
    ensure_venv,
    fmt,
    git_state,
    loadavg,
    run_meta,
    run_side,
    write_json,
)

DATABASE = "bench_django_dbos_retention"
DEFAULTS = {"workflows": 1_000_000, "rounds": 3, "queue_n": 1000, "trials": 10}
QUICK = {"workflows": 20_000, "rounds": 1, "queue_n": 200, "trials": 3}
STEPS = 5
DAYS = 60.0
# Each prune takes a tenth of the workflows, the oldest first: 6 days of their ends.
BAND_DAYS = DAYS / 10
GC_DAYS = DAYS - BAND_DAYS
PRUNE_DAYS = GC_DAYS - BAND_DAYS
ARCHIVE_DAYS = PRUNE_DAYS - BAND_DAYS
# The retention worker beside the queue: everything older than this is its backlog.
QUEUE_BACKLOG_DAYS = 7.0
IDLE_SECONDS = 10.0
PHASE_TIMEOUT_S = 3600.0
# The targets.
TARGET_QUEUE_RATIO = 0.8
TARGET_RSS_MB = 50.0

Phase = tuple[str, list[str]]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--quick", action="store_true", help=f"small default sizes: {QUICK}")
    ap.add_argument(
        "--workflows", type=int, help=f"workflows to make (default: {DEFAULTS['workflows']:,})"
    )
    ap.add_argument(
        "--rounds", type=int, help=f"rounds of queue runs (default: {DEFAULTS['rounds']})"
    )
    ap.add_argument(
        "--queue-n", type=int, help=f"workflows in the queue burst (default: {DEFAULTS['queue_n']})"
    )
    ap.add_argument(
        "--trials", type=int, help=f"dispatch-latency trials (default: {DEFAULTS['trials']})"
    )
    ap.add_argument(
        "--interval",
        type=float,
        default=0.05,
        help="the retention workers' INTERVAL_SECONDS (default: %(default)s)",
    )
    ap.add_argument(
        "--prune-timeout",
        type=float,
        default=900.0,
        help="seconds a retention worker may take for its tenth (default: %(default)s)",
    )
    ap.add_argument(
        "--queue-intervals",
        default=[1.0, 0.05],
        type=lambda text: [float(x) for x in text.split(",")],
        help="INTERVAL_SECONDS of the retention worker beside the queue, comma-separated: a "
        "run with each per round; the target is judged with the first (default: 1,0.05)",
    )
    add_venv_and_output_args(ap, "retention.json", dbos=False)
    args = ap.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    if (
        min(args.workflows, args.rounds, args.queue_n, args.trials) < 1
        or min(args.interval, *args.queue_intervals) <= 0
    ):
        ap.error("sizes and the interval must be positive")
    return args


def phase_commands(args: argparse.Namespace, python: Path, archive_dir: str) -> list[Phase]:
    """(name, command) of each phase, in order."""

    def phase(name: str, *options: str) -> Phase:
        kind = name.split("-")[0]
        side = [str(python), str(BENCH_DIR / "_retention_side.py"), "--phase", kind]
        return name, [*side, *options, "--log-dir", str(args.json_out.parent / "logs")]

    def policy(days: float, *options: str) -> list[str]:
        """A retention worker's options: FINISHED_DAYS, INTERVAL_SECONDS, and the others."""
        return ["--finished-days", str(days), "--interval", str(args.interval), *options]

    archive = ("--archive-dir", archive_dir)
    timeout = ("--timeout", str(args.prune_timeout))
    return [
        phase(
            "populate",
            *("--workflows", str(args.workflows), "--steps", str(STEPS), "--days", str(DAYS)),
        ),
        phase("gc", "--older-than-days", str(GC_DAYS)),
        phase("prune", *policy(PRUNE_DAYS, *timeout)),
        phase("prune-archive", *policy(ARCHIVE_DAYS, *archive, *timeout)),
        phase("idle", *policy(ARCHIVE_DAYS, *archive, "--seconds", str(IDLE_SECONDS))),
        phase(
            "queues",
            *policy(QUEUE_BACKLOG_DAYS, *archive, "--rounds", str(args.rounds)),
            *("--beside-intervals", ",".join(str(i) for i in args.queue_intervals)),
            *("--queue-n", str(args.queue_n), "--trials", str(args.trials)),
        ),
    ]


def run_phases(args: argparse.Namespace, python: Path) -> dict[str, dict[str, Any]]:
    """Each phase in a fresh side process, in order; the archive in a temporary directory."""
    env = django_env(args, DATABASE, settings="_bench_settings")
    archive_dir = tempfile.mkdtemp(prefix="bench-retention-archive-")
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, cmd in phase_commands(args, python, archive_dir):
            print(f"[{name}] ...", end=" ", flush=True)
            results[name] = run_side(name, cmd, env, PHASE_TIMEOUT_S)
            print(f"{results[name]['process_wall_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(archive_dir, ignore_errors=True)
    return results


# Summary -----------------------------------------------------------------------------------


def values(runs: list[dict[str, Any]], interval: float | None, get: Any) -> list[float]:
    """A figure of the queue runs with a retention worker of this interval beside (None:
    without one), by round."""
    chosen = sorted(
        (r for r in runs if r["retention_interval_s"] == interval), key=lambda r: r["round"]
    )
    return [get(r) for r in chosen]


def throughput(run: dict[str, Any]) -> float:
    return run["throughput"]["wf_per_s"]


def dispatch_p50(run: dict[str, Any]) -> float:
    return run["dispatch"]["default"]["to_first_step"]["p50_ms"]


def queue_summary(runs: list[dict[str, Any]], intervals: list[float]) -> dict[str, Any]:
    """Queue throughput and dispatch p50 without retention, and with each retention worker
    beside: the ratio with / without of the medians, and per round."""
    without = values(runs, None, throughput)
    beside = {}
    for interval in intervals:
        wf_per_s = values(runs, interval, throughput)
        beside[f"{interval:g}"] = {
            "interval_s": interval,
            "wf_per_s": wf_per_s,
            "ratio_with_over_without": statistics.median(wf_per_s) / statistics.median(without),
            "ratio_per_round": [b / w for b, w in zip(wf_per_s, without, strict=True)],
            "dispatch_p50_ms": values(runs, interval, dispatch_p50),
            "retention": values(runs, interval, lambda r: r["retention"]),
        }
    return {
        "without": {"wf_per_s": without, "dispatch_p50_ms": values(runs, None, dispatch_p50)},
        "with_retention": beside,
    }


def summarize(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    populate = results["populate"]["populate"]
    gc = results["gc"]["gc"]
    prune, prune_archive = results["prune"]["prune"], results["prune-archive"]["prune"]
    idle = results["idle"]["idle"]
    queues = queue_summary(results["queues"]["queues"]["runs"], args.queue_intervals)
    # The target is judged with the first interval: a batch a second (the default is a minute).
    queue_ratio = next(iter(queues["with_retention"].values()))["ratio_with_over_without"]
    idle_hwm = idle["rss_mb"]["end"]["VmHWM"]
    prune_hwm = max(p["rss_mb"]["end"]["VmHWM"] for p in (prune, prune_archive))
    archive = prune_archive["archive_files"]
    beside = [r for q in queues["with_retention"].values() for r in q["retention"]]
    checks = {
        "every_prune_finished": not (prune["timed_out"] or prune_archive["timed_out"]),
        "gc_deleted_all_eligible": gc["left"] == 0 and gc["deleted"] == gc["eligible"],
        "archive_holds_every_deleted": archive["records"] == prune_archive["deleted"],
        "no_orphan_step_rows": idle["orphan_step_rows"] == 0,
        "retention_worked_through_every_queue_run": all(
            r["deleted"] > 0 and r["backlog_after"] > 0 for r in beside
        ),
    }
    return {
        "populate": populate,
        "prune": {
            "garbage_collect": gc,
            "retention": prune,
            "retention_archive": prune_archive,
            "archive_over_plain_retention": prune_archive["wf_per_s"] / prune["wf_per_s"],
            "plain_retention_over_gc": prune["wf_per_s"] / gc["wf_per_s"],
        },
        "rss": {
            "idle_VmHWM_mb": idle_hwm,
            "idle": idle["rss_mb"],
            "prune_VmHWM_mb": prune_hwm,
            "prune_over_idle_mb": prune_hwm - idle_hwm,
        },
        "queues": queues,
        "targets_met": {
            f"queue_throughput_at_most_{100 * (1 - TARGET_QUEUE_RATIO):.0f}pct_lower": (
                queue_ratio >= TARGET_QUEUE_RATIO
            ),
            f"prune_peak_rss_within_{TARGET_RSS_MB:.0f}mb_of_idle": (
                prune_hwm - idle_hwm <= TARGET_RSS_MB
            ),
        },
        "checks": checks,
    }


def mb(n_bytes: float) -> str:
    return fmt(n_bytes / 1e6)


def print_populate(p: dict[str, Any]) -> None:
    print(
        f"\npopulate: {p['workflows']:,} finished workflows x {p['steps']} steps, ends over "
        f"{p['days']:g} days: INSERT {p['insert_s']:.1f} s ({fmt(p['insert_wf_per_s'])} wf/s, "
        f"{fmt(p['insert_rows_per_s'])} rows/s); VACUUM ANALYZE {p['vacuum_analyze_s']:.1f} s"
    )
    for table, size in p["tables"].items():
        print(f"  {table:24s} {size['rows']:>11,} rows {mb(size['total_bytes']):>8s} MB")
    lengths = ", ".join(f"{k} {v:.0f}" for k, v in p["avg_payload_bytes"].items() if v)
    print(f"  average payload bytes: {lengths}")


def print_prune(args: argparse.Namespace, prune: dict[str, Any], rss: dict[str, Any]) -> None:
    print(f"\nprune, each of a tenth of the workflows ({BAND_DAYS:g} days of ends):")
    print(
        f"{'':44s}{'deleted':>10s}{'seconds':>10s}{'wf/s':>10s}{'peak RSS MB':>13s}"
        f"{'CPU ms/wf':>11s}"
    )
    rows = (
        ("DBOS.garbage_collect (side process)", prune["garbage_collect"]),
        (f"RETENTION worker, interval {args.interval:g} s", prune["retention"]),
        ("  the same, archiving (FileSystemStorage)", prune["retention_archive"]),
    )
    for label, r in rows:
        # The side process's own peak, or the worker's (read just before it was stopped).
        peak = r["rss_mb"]["VmHWM"] if "VmHWM" in r["rss_mb"] else r["rss_mb"]["end"]["VmHWM"]
        cpu = r.get("worker_cpu_ms_per_wf")
        print(
            f"{label:44s}{r['deleted']:>10,}{r['elapsed_s']:>10.1f}{fmt(r['wf_per_s']):>10s}"
            f"{fmt(peak):>13s}{'-' if cpu is None else fmt(cpu):>11s}"
        )
    archive = prune["retention_archive"]["archive_files"]
    print(
        f"  archive: {archive['files']} files, {mb(archive['bytes'])} MB, "
        f"{archive['records']:,} records, "
        f"{archive['bytes_per_workflow'] or 0:.0f} bytes per workflow"
    )
    print(
        f"  archiving / not archiving (retention wf/s): {prune['archive_over_plain_retention']:.2f}"
    )
    print(f"  retention / garbage_collect (wf/s):        {prune['plain_retention_over_gc']:.2f}")
    print(
        f"\nretention worker RSS: idle {fmt(rss['idle_VmHWM_mb'])} MB (VmHWM after "
        f"{IDLE_SECONDS:g} s; VmRSS {fmt(rss['idle']['end']['VmRSS'])} MB), pruning "
        f"{fmt(rss['prune_VmHWM_mb'])} MB (VmHWM): +{fmt(rss['prune_over_idle_mb'])} MB"
    )


def print_queues(args: argparse.Namespace, q: dict[str, Any]) -> None:
    def listed(numbers: list[float]) -> str:
        return ", ".join(fmt(v) for v in numbers)

    print(
        f"\nqueue throughput ({args.queue_n:,} one-step workflows, 1 worker), by round, "
        "without and with the archiving retention policy applied by that worker:"
    )
    without = q["without"]
    print(
        f"  {'without':28s} wf/s {listed(without['wf_per_s']):28s} median "
        f"{fmt(statistics.median(without['wf_per_s']))}"
    )
    for key, w in q["with_retention"].items():
        label = f"with, INTERVAL_SECONDS {key}"
        print(
            f"  {label:28s} wf/s {listed(w['wf_per_s']):28s} median "
            f"{fmt(statistics.median(w['wf_per_s']))}: with / without "
            f"{w['ratio_with_over_without']:.2f} (by round: "
            f"{', '.join(f'{r:.2f}' for r in w['ratio_per_round'])})"
        )
    print(f"  dispatch p50, ms: without {listed(without['dispatch_p50_ms'])}")
    for key, w in q["with_retention"].items():
        print(f"    with, INTERVAL_SECONDS {key}: {listed(w['dispatch_p50_ms'])}")
        for r in w["retention"]:
            print(
                f"    meanwhile: deleted {r['deleted']:,} ({fmt(r['wf_per_s'])} wf/s), backlog "
                f"left {r['backlog_after']:,}, the worker's RSS {fmt(r['rss_mb']['VmRSS'])} MB"
            )


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    print(
        f"\ndjango-dbos on Django's default connection settings "
        f"({', '.join(f'{k}={v}' for k, v in DJANGO_DEFAULT_CONNECTIONS.items())})"
    )
    print_populate(summary["populate"])
    print_prune(args, summary["prune"], summary["rss"])
    print_queues(args, summary["queues"])
    print(
        f"\ntargets: queue throughput with retention (INTERVAL_SECONDS "
        f"{args.queue_intervals[0]:g}) at least {TARGET_QUEUE_RATIO:g}x without; pruning "
        f"worker's peak RSS within {TARGET_RSS_MB:g} MB of idle"
    )
    for key, met in summary["targets_met"].items():
        print(f"  {key:52s} {'met' if met else 'NOT MET'}")
    print("checks:")
    for key, ok in summary["checks"].items():
        print(f"  {key:52s} {'ok' if ok else 'FAILED'}")


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start, git_start = loadavg(), git_state()
    python = ensure_venv(args.django_venv, ["-e", ".[dev]"])
    results = run_phases(args, python)
    summary = summarize(args, results)
    print_report(args, summary)
    meta = {
        **run_meta(args, started_at, load_start, git_start),
        "pg_settings": results["populate"]["meta"]["pg_settings"],
        "autovacuum": results["populate"]["meta"]["autovacuum"],
        "side": results["populate"]["meta"],
        "bands_days": {"gc": GC_DAYS, "prune": PRUNE_DAYS, "archive": ARCHIVE_DAYS},
    }
    write_json(args.json_out, {"meta": meta, **summary, "phases": results})


if __name__ == "__main__":
    main()
