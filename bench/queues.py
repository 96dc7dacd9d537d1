"""Queue throughput and idle-queue dispatch latency of django-dbos against DBOS Transact for Python.

One run, one PostgreSQL server; each side is a fresh process on a fresh database, with one
worker process and with two (``--workers``), in an order rotated by one each repetition:

* ``django-dbos/N``     this repository (``bench_django_dbos_queues``; the ``.venv``
                        interpreter, settings ``bench/_bench_settings.py``): the side process only
                        enqueues (it never dispatches); N ``manage.py rundbosworker
                        --no-scheduler`` processes run the workflows, with their default 16
                        workflow threads. The queue ``bench`` has no limits. The side and its
                        workers have Django's default connection settings (``CONN_MAX_AGE=0``).
* ``django-dbos-tuned/N`` the same with ``CONN_MAX_AGE=600`` (on the same database, recreated;
                        ``--no-tuned`` leaves it out).
* ``django-dbos-pgbouncer/N`` (with ``--pgbouncer``) the django-dbos side again with every Django
                        connection through PgBouncer in transaction mode (Debian's 1.18, started
                        here on a free port; ``DISABLE_SERVER_SIDE_CURSORS``, prepared statements
                        off) and the listener on its direct connection
                        (``DBOS["LISTEN_DATABASE"]``), on the same database, recreated.
* ``dbos-client/N``     DBOS Transact for Python, ``dbos==3.4.0`` (``bench_dbos_queues``; the
                        ``.venv-dbos`` interpreter), in the same shape: the side process enqueues
                        with a ``DBOSClient``; N processes that launch DBOS
                        (``_dbos_side.py --suite queue-worker``) dequeue and run the workflows.
* ``dbos-in-process/N`` DBOS as applications usually run it, and as
                        ``/work/shared/bench/dbos_anchor.py`` measured it: the side process
                        launches DBOS, enqueues with ``Queue.enqueue`` and runs workflows too; it
                        counts as one of the N processes (N - 1 more only dequeue).

DBOS's queue ``bench`` has its defaults (polled every second, no limits), each DBOS process its
default executor (no thread limit).

Both sides run the same workflows (``_workers.BenchWorkflows``) and the same measuring code
(``_workers.queue_suite``), after warm-up rounds through the queue until every worker has run
some workflows:

(1) throughput: 1,000 one-step workflows enqueued one by one from one thread; workflows/s from
    just before the first enqueue to the last completion recorded in the database. Also: the
    enqueue rate, the drain rate (first start to last completion) and the workers' CPU per
    workflow;
(2) idle-queue dispatch latency: 20 trials, each after a random pause of U(0, polling interval)
    (1 s on both sides; django-dbos is woken by NOTIFY and polls only as a safety net), of one
    ``bench_mark_start`` workflow, whose step returns ``time.time()``: the latency runs from just
    before the enqueue call to that stamp. Also: enqueue to the worker's claim (``started_at``).
    DBOS is measured besides on a queue polled every 50 ms, as in
    ``/work/shared/bench/dbos_anchor.py``.

Usage, from the repository root (any Python 3.11+; the sides bring their own interpreters)::

    python3 bench/queues.py                # 3 repetitions of 1 and 2 workers: about 9 minutes
    python3 bench/queues.py --quick        # 1 repetition, 100 workflows, 5 trials: under a minute
    python3 bench/queues.py --workers 2 --repeats 1 --json-out /tmp/queues.json
    python3 bench/queues.py --workers 1 --repeats 1 --pgbouncer --no-tuned --dbos ""

PostgreSQL must accept ``--user`` without a password on ``--host``:``--port``; the databases
``bench_dbos_queues`` and ``bench_django_dbos_queues`` are dropped and recreated. Worker logs go
to ``logs/`` next to ``--json-out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # tests.pgbouncer

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
    dig,
    django_env,
    ensure_venvs,
    figure_table,
    git_state,
    loadavg,
    print_connections_legend,
    print_table,
    print_tuned_comparison,
    run_all,
    run_meta,
    tuned_comparison,
    with_tuned,
    write_json,
)

from tests.pgbouncer import pgbouncer

DEFAULTS = {"repeats": 3, "n": 1000, "trials": 20}
QUICK = {"repeats": 1, "n": 100, "trials": 5}
# The targets, and DBOS's figures measured by /work/shared/bench/dbos_anchor.py
# (DBOS in one process that enqueues and runs, default 1 s polling).
TARGET_THROUGHPUT_RATIO = 3.0
TARGET_DISPATCH_P50_MS = 20.0
DBOS_ANCHOR = {"wf_per_s": 98, "dispatch_p50_ms": 534}
PGBOUNCER_SIDE = "django-dbos-pgbouncer"
# Side kinds -> (table label, the DBOS side's --enqueue); the DBOS kinds are --dbos's choices.
KINDS = {
    "dbos-in-process": ("DBOS in-process", "in-process"),
    "dbos-client": ("DBOS client", "client"),
    "django-dbos": ("django-dbos", None),
    TUNED_SIDE: (TUNED_LABEL, None),
    PGBOUNCER_SIDE: ("django-dbos via PgBouncer", None),
}
DBOS_KINDS = [kind for kind, (_label, enqueue) in KINDS.items() if enqueue]


def measured_sides(args: argparse.Namespace, n: int | None = None) -> list[str]:
    """``<kind>/<worker processes>``, for one worker count or all; without the tuned twins."""
    kinds = [*args.dbos, "django-dbos", *([PGBOUNCER_SIDE] if args.pgbouncer else [])]
    return [f"{kind}/{w}" for w in args.workers if n in (None, w) for kind in kinds]


def sides_of(args: argparse.Namespace, n: int | None = None) -> list[str]:
    """The same, with the tuned twin of each django-dbos side (unless ``--no-tuned``)."""
    return with_tuned(args, measured_sides(args, n))


def label(side: str) -> str:
    return KINDS[side.split("/")[0]][0]


def side_commands(
    args: argparse.Namespace, dbos_python: Path, django_python: Path, bouncer_port: int | None
) -> dict[str, Command]:
    logs = str(args.json_out.parent / "logs")
    dbos = [str(dbos_python), str(BENCH_DIR / "_dbos_side.py")]
    django = [str(django_python), str(BENCH_DIR / "_django_side.py")]
    django_side_env = django_env(args, "bench_django_dbos_queues", settings="_bench_settings")
    commands: dict[str, Command] = {}
    for side in measured_sides(args):
        kind, n = side.split("/")
        suite = [
            *("--suite", "queues", "--workers", n, "--queue-n", str(args.n)),
            *("--trials", str(args.trials), "--log-dir", logs),
        ]
        enqueue = KINDS[kind][1]
        if kind == PGBOUNCER_SIDE:
            commands[side] = ([*django, *suite], pooled_env(args, django_side_env, bouncer_port))
        elif enqueue is None:
            commands[side] = ([*django, *suite], django_side_env)
        else:
            db = db_url(args, "bench_dbos_queues")
            commands[side] = ([*dbos, "--db", db, *suite, "--enqueue", enqueue], base_env())
    return add_tuned_commands(commands)


def pooled_env(args: argparse.Namespace, env: dict[str, str], port: int | None) -> dict[str, str]:
    """A django-dbos side's environment with its connections through PgBouncer on ``port``,
    as docs/deploying.md ("Connection poolers") configures them."""
    assert port is not None, "--pgbouncer starts PgBouncer before the sides"
    direct = env["DATABASE_URL"]
    return {
        **env,
        "DATABASE_URL": direct.replace(f":{args.port}/", f":{port}/"),
        "DJANGO_TRANSACTION_POOLER": "1",
        "DBOS_PREPARED_STATEMENTS": "0",
        "DBOS_LISTEN_DATABASE": direct.replace("postgres://", "postgresql://", 1),
        "BENCH_DIRECT_URL": direct,
    }


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_server_args(ap)
    ap.add_argument("--quick", action="store_true", help=f"small default sizes: {QUICK}")
    ap.add_argument("--repeats", type=int, help=f"repetitions (default: {DEFAULTS['repeats']})")
    ap.add_argument(
        "--n", type=int, help=f"workflows in the throughput burst (default: {DEFAULTS['n']})"
    )
    ap.add_argument(
        "--trials", type=int, help=f"dispatch-latency trials (default: {DEFAULTS['trials']})"
    )
    ap.add_argument(
        "--workers",
        default="1,2",
        type=lambda text: [int(n) for n in text.split(",")],
        help="worker-process counts to measure, comma-separated (default: 1,2)",
    )
    ap.add_argument(
        "--dbos",
        default=",".join(DBOS_KINDS),
        type=lambda text: [kind for kind in text.split(",") if kind],
        help="DBOS shapes to measure, comma-separated, possibly none: dbos-in-process (the "
        "process that enqueues runs workflows too, and counts as a worker) and dbos-client "
        "(a DBOSClient enqueues; only the worker processes run workflows) (default: both)",
    )
    ap.add_argument(
        "--pgbouncer",
        action="store_true",
        help="also run the django-dbos side through PgBouncer in transaction mode (Debian's "
        "pgbouncer package), with its listener on a direct connection",
    )
    add_tuned_arg(ap)
    add_venv_and_output_args(ap, "queues.json")
    args = ap.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    if min(args.repeats, args.n, args.trials, *args.workers) < 1:
        ap.error("sizes must be positive")
    if unknown := set(args.dbos) - set(DBOS_KINDS):
        ap.error(f"unknown DBOS shapes: {', '.join(sorted(unknown))}")
    return args


# Figures -----------------------------------------------------------------------------------


def queues(result: dict[str, Any], *keys: str) -> Any:
    return dig(result, "queues", *keys)


FIGURES: list[Figure] = [
    ("enqueue rate, wf/s (driver, one thread)", lambda r: queues(r, "throughput", "enqueue_per_s")),
    ("throughput, wf/s (1st enqueue -> last done)", lambda r: queues(r, "throughput", "wf_per_s")),
    ("  drain, wf/s (1st start -> last done)", lambda r: queues(r, "throughput", "drain_per_s")),
    (
        "  CPU per wf of the running processes, ms",
        lambda r: queues(r, "throughput", "workers_cpu_ms_per_wf"),
    ),
    *(
        (
            f"dispatch: enqueue -> 1st step, {pct}, ms",
            lambda r, pct=pct: queues(r, "dispatch", "default", "to_first_step", f"{pct}_ms"),
        )
        for pct in ("p50", "p90", "p99")
    ),
    (
        "  enqueue -> claimed by a worker, p50, ms",
        lambda r: queues(r, "dispatch", "default", "to_claim", "p50_ms"),
    ),
    (
        "  enqueue call, p50, ms",
        lambda r: queues(r, "dispatch", "default", "enqueue_call", "p50_ms"),
    ),
    *(
        (
            f"DBOS polled every 50 ms: -> 1st step, {pct}",
            lambda r, pct=pct: queues(r, "dispatch", "poll_50ms", "to_first_step", f"{pct}_ms"),
        )
        for pct in ("p50", "p90", "p99")
    ),
]


def headline(result: dict[str, Any]) -> dict[str, float]:
    return {
        "wf_per_s": queues(result, "throughput", "wf_per_s"),
        "dispatch_p50_ms": queues(result, "dispatch", "default", "to_first_step", "p50_ms"),
    }


# The figures compared between Django's defaults and the tuned setting.
TUNED_FIGURES: list[Figure] = [
    ("throughput, wf/s", lambda r: headline(r)["wf_per_s"]),
    ("dispatch p50, ms", lambda r: headline(r)["dispatch_p50_ms"]),
]


def ratios(figures: dict[str, dict[str, float]], args: argparse.Namespace) -> dict[str, float]:
    """Per worker count and DBOS shape: throughput django-dbos / DBOS, and dispatch p50
    DBOS / django-dbos."""
    out = {}
    for n in args.workers:
        dj = figures[f"django-dbos/{n}"]
        for kind in args.dbos:
            dbos = figures[f"{kind}/{n}"]
            out[f"throughput_{n}w_django_dbos_over_{kind}"] = dj["wf_per_s"] / dbos["wf_per_s"]
            out[f"dispatch_p50_{n}w_{kind}_over_django_dbos"] = (
                dbos["dispatch_p50_ms"] / dj["dispatch_p50_ms"]
            )
        if args.pgbouncer:
            pooled = figures[f"{PGBOUNCER_SIDE}/{n}"]
            out[f"throughput_{n}w_pgbouncer_over_direct"] = pooled["wf_per_s"] / dj["wf_per_s"]
            out[f"dispatch_p50_{n}w_pgbouncer_over_direct"] = (
                pooled["dispatch_p50_ms"] / dj["dispatch_p50_ms"]
            )
    return out


def summarize_runs(args: argparse.Namespace, runs: list[Run]) -> dict[str, Any]:
    sides = sides_of(args)
    medians = {
        side: {
            key: statistics.median(headline(run[side])[key] for run in runs)
            for key in ("wf_per_s", "dispatch_p50_ms")
        }
        for side in sides
    }
    summary_ratios = ratios(medians, args)
    targets = {}
    for n in args.workers:
        for kind in args.dbos:
            targets[f"throughput_{n}w_at_least_{TARGET_THROUGHPUT_RATIO:g}x_{kind}"] = (
                summary_ratios[f"throughput_{n}w_django_dbos_over_{kind}"]
                >= TARGET_THROUGHPUT_RATIO
            )
        targets[f"dispatch_p50_{n}w_under_{TARGET_DISPATCH_P50_MS:g}ms"] = (
            medians[f"django-dbos/{n}"]["dispatch_p50_ms"] < TARGET_DISPATCH_P50_MS
        )
    return {
        "table": figure_table(runs, sides, FIGURES),
        "medians": medians,
        "ratios": summary_ratios,
        "ratios_per_run": [
            ratios({side: headline(run[side]) for side in sides}, args) for run in runs
        ],
        "targets_met": targets,
        "dbos_anchor": DBOS_ANCHOR,
        "default_over_tuned": tuned_comparison(runs, sides, TUNED_FIGURES),
        "by_executor": {
            side: [queues(run[side], "throughput", "by_executor") for run in runs] for side in sides
        },
    }


def print_report(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    many = args.repeats > 1
    head = f"median of {args.repeats} runs [min .. max]" if many else "one run"
    print(f"\n{head}; throughput: {args.n:,} one-step workflows; dispatch: {args.trials} trials")
    print_connections_legend(args)
    for n in args.workers:
        sides = sides_of(args, n)
        print(f"\n{n} worker process{'es' if n > 1 else ''}:")
        print_table(summary["table"], sides, {side: label(side) for side in sides}, many, 44)

    print("\nthe burst per executor (workflows each ran, per run):")
    for side, per_run in summary["by_executor"].items():
        shares = "; ".join(", ".join(str(v) for v in counts.values()) for counts in per_run)
        print(f"  {side:20s} {shares}")

    print("\nratios (from the medians above):")
    for key, value in summary["ratios"].items():
        per_run = ", ".join(f"{r[key]:.2f}" for r in summary["ratios_per_run"])
        extra = f"   (per run: {per_run})" if many else ""
        print(f"  {key:52s} {value:7.2f}{extra}")
    print_tuned_comparison(summary["default_over_tuned"], many)

    print(
        f"\ntargets: throughput at least {TARGET_THROUGHPUT_RATIO:g}x DBOS's, "
        f"dispatch p50 under {TARGET_DISPATCH_P50_MS:g} ms"
    )
    for key, met in summary["targets_met"].items():
        print(f"  {key:52s} {'met' if met else 'NOT MET'}")
    print(
        f"  (DBOS measured by /work/shared/bench/dbos_anchor.py, in one process: "
        f"{DBOS_ANCHOR['wf_per_s']} wf/s, dispatch p50 {DBOS_ANCHOR['dispatch_p50_ms']} ms)"
    )


def main() -> None:
    args = parse_args()
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start, git_start = loadavg(), git_state()
    dbos_python, django_python = ensure_venvs(args)
    sides = sides_of(args)
    with ExitStack() as stack:
        port = None
        if args.pgbouncer:
            port = stack.enter_context(pgbouncer(args.host, args.port, args.user)).port
        commands = side_commands(args, dbos_python, django_python, port)
        runs = run_all(sides, args.repeats, commands)
    summary = summarize_runs(args, runs)
    print_report(args, summary)

    last = runs[-1]
    meta = {
        **run_meta(args, started_at, load_start, git_start),
        "pg_settings": last[sides[-1]]["meta"]["pg_settings"],
        "sides": {side: last[side]["meta"] for side in sides},
    }
    write_json(args.json_out, {"meta": meta, **summary, "runs": runs})


if __name__ == "__main__":
    main()
