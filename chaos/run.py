#!/usr/bin/env python
"""A bounded, seeded chaos run of django-dbos on PostgreSQL (see chaos/README.md).

    python chaos/run.py --seed 1 --minutes 2 [--db-restarts 2] [--workers 3]

Makes a database, runs N `manage.py rundbosworker` processes and a load generator (chaos/web.py)
that starts and enqueues workflows using every primitive; meanwhile kills a random worker with
SIGKILL every few seconds (restarting it), restarts PostgreSQL and terminates the database's
backends. Then it stops the chaos, lets the work drain, checks the invariants from the database and
the steps' side-effect files, prints a report, and exits 1 if any invariant broke (2 if the
harness itself failed). Every child process is killed at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from chaos import checks, pg  # noqa: E402
from chaos import plan as plan_module  # noqa: E402

DBNAME = "chaos"
WORKER_READY_TIMEOUT_S = 90.0
QUERY_RETRY_S = 30.0
STOP_TIMEOUT_S = 15.0
TICK_S = 0.05
UNEXPECTED_RESTART_DELAY_S = 1.0
STARTUP_S = 15.0


class Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def fmt(value: float | None, unit: str = " s") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


CODE_DIRS = ("django_dbos", "chaos", "testproject")


def freeze_code(target: Path) -> Path:
    """Copy the code the processes run (the engine, the chaos app, the test project) into the
    run directory: workers restarted late in a run then run the code the run began with, even
    while someone edits the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "runs", "*.pyc")
    for name in CODE_DIRS:
        shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy2(ROOT / "manage.py", target / "manage.py")
    return target


def code_digest(code: Path) -> str:
    """A digest of the Python code the processes import from `code`."""
    digest = hashlib.sha256()
    for name in CODE_DIRS:
        for path in sorted((code / name).rglob("*.py")):
            if "runs" in path.relative_to(code).parts:
                continue
            digest.update(str(path.relative_to(code)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


class Child:
    """One long-running process of the run (a worker slot, or the load generator)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, code: Path):
        self.code = code
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.lives: list[list[Any]] = []  # [pid, started, ended or None, code digest]

    def start(self) -> None:
        self.starts += 1
        began = time.time()
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n=== {self.name}: start #{self.starts} at {time.time():.3f} ===\n".encode()
            )
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.code,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=pg.die_with_parent,
            )
            self.lives.append([self.process.pid, began, None, code_digest(self.code)])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ended(self) -> None:
        """Note the end of the current life (after the process is gone)."""
        if self.lives and self.lives[-1][2] is None:
            self.lives[-1][2] = time.time()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
        self.ended()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self.ended()

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])


class Harness:
    def __init__(self, args: argparse.Namespace, plan: dict[str, Any], run_dir: Path):
        self.args = args
        self.plan = plan
        self.run_dir = run_dir
        (run_dir / "logs").mkdir(parents=True)
        (run_dir / "markers").mkdir()
        if args.cluster:
            self.server: pg.Server = pg.ClusterServer(args.cluster)
        else:
            self.server = pg.PrivateServer(run_dir / "logs" / "postgres.log", port=args.port)
        self.conninfo = self.server.conninfo(DBNAME)
        self.code = freeze_code(run_dir / "code") if args.freeze_code else ROOT
        self.run = checks.Run(plan=plan)
        self.workers: list[Child] = []
        self.web: Child | None = None
        self.expected_down: set[int] = set()
        self.restart_due: dict[int, float] = {}
        self._next_sample = 0.0

    # Output ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
        line = f"[chaos {stamp}] {text}"
        print(line, flush=True)
        with open(self.run_dir / "harness.log", "a") as log:
            log.write(line + "\n")

    # Database -------------------------------------------------------------------------------

    def query(self, sql: str, params: list[Any] | None = None, dbname: str = DBNAME) -> list:
        """Run one statement on a fresh connection, retrying while the server is away."""
        deadline = time.monotonic() + QUERY_RETRY_S
        while True:
            try:
                with psycopg.connect(
                    self.server.conninfo(dbname), connect_timeout=3, autocommit=True
                ) as conn:
                    cursor = conn.execute(sql, params)
                    return cursor.fetchall() if cursor.description else []
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def setup_database(self) -> None:
        self.query(f"DROP DATABASE IF EXISTS {DBNAME} WITH (FORCE)", dbname="postgres")
        self.query(f"CREATE DATABASE {DBNAME}", dbname="postgres")
        with open(self.run_dir / "logs" / "migrate.log", "wb") as log:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=self.code,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=300,
            )
        checks.install_audit(self.conninfo)

    # Processes ------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=self.server.url(DBNAME),
            DJANGO_SETTINGS_MODULE="chaos.settings",
            PYTHONPATH=str(self.code),
            PYTHONUNBUFFERED="1",
            DBOS_HEARTBEAT_SECONDS=str(self.plan["heartbeat_s"]),
            DBOS_EXECUTOR_TIMEOUT_SECONDS=str(self.plan["executor_timeout_s"]),
            DBOS_LOG_LEVEL="INFO",
            CHAOS_MARKERS_DIR=str(self.run_dir / "markers"),
        )
        env.update(extra)
        return env

    def make_workers(self) -> None:
        for slot in range(self.args.workers):
            self.workers.append(
                Child(
                    f"worker-{slot}",
                    [sys.executable, "manage.py", "rundbosworker", "--shutdown-timeout", "10"],
                    self.env(DBOS_EXECUTOR_ID=self.executor_id(slot)),
                    self.run_dir / "logs" / f"worker-{slot}.log",
                    self.code,
                )
            )

    @staticmethod
    def executor_id(slot: int) -> str:
        return f"chaos-worker-{slot}"

    def wait_workers_ready(self) -> None:
        wanted = {self.executor_id(slot) for slot in range(len(self.workers))}
        deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            rows = self.query(
                "SELECT executor_id FROM dbos_executor WHERE role = 'worker' "
                "AND executor_id = ANY(%s)",
                [list(wanted)],
            )
            if {row[0] for row in rows} == wanted:
                return
            for worker in self.workers:
                if not worker.alive():
                    raise RuntimeError(f"{worker.name} exited at start: {worker.tail(10)}")
            time.sleep(0.2)
        raise RuntimeError(f"the workers did not start within {WORKER_READY_TIMEOUT_S} s")

    def watch(self) -> None:
        """Notice a process that ended without being killed by us; restart a worker."""
        for slot, worker in enumerate(self.workers):
            if slot in self.expected_down or worker.alive():
                continue
            code = worker.process.returncode if worker.process is not None else None
            self.run.unexpected_exits.append(
                {
                    "name": worker.name,
                    "pid": worker.pid,
                    "code": code,
                    "t": time.time(),
                    "log": worker.tail(),
                    "startup_outage": self.died_starting_in_outage(worker),
                }
            )
            worker.ended()
            self.say(f"UNEXPECTED: {worker.name} exited by itself (code {code}); restarting it")
            self.expected_down.add(slot)
            self.restart_due[slot] = time.time() + UNEXPECTED_RESTART_DELAY_S
        web = self.web
        if web is not None and web.process is not None and not web.alive():
            self.run.unexpected_exits.append(
                {
                    "name": web.name,
                    "pid": web.pid,
                    "code": web.process.returncode,
                    "t": time.time(),
                    "log": web.tail(),
                }
            )
            web.ended()
            self.say(f"UNEXPECTED: the load generator exited (code {web.process.returncode})")
            web.process = None

    def tick(self) -> None:
        """Between chaos events: notice exits, restart the workers whose time has come."""
        self.watch()
        self.sample_connections()
        now = time.time()
        for slot, due in sorted(self.restart_due.items(), key=lambda item: item[1]):
            if due <= now:
                self.restart_worker(slot)

    def died_starting_in_outage(self, child: Child) -> bool:
        """Did the process die while starting, with the database restarted or its backends
        terminated since it started? (Like DBOS's launch, a worker that cannot reach the
        database while it starts exits, for its supervisor to start it again.)"""
        if not child.lives:
            return False
        started, now = child.lives[-1][1], time.time()
        outages = [r["t_begin"] for r in self.run.db_restarts] + [
            t["t"] for t in self.run.terminations
        ]
        return now - started < STARTUP_S and any(started - 1 <= t <= now for t in outages)

    def sample_connections(self) -> None:
        if time.monotonic() < self._next_sample:
            return
        self._next_sample = time.monotonic() + 2.0
        try:
            with psycopg.connect(
                self.server.conninfo("postgres"), connect_timeout=2, autocommit=True
            ) as conn:
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [DBNAME]
                ).fetchone()
            self.run.peak_connections = max(self.run.peak_connections, count)
        except psycopg.Error:
            pass

    # Chaos ----------------------------------------------------------------------------------

    def kill(self, event: dict[str, Any]) -> None:
        slot = event["slot"]
        live = [s for s in range(len(self.workers)) if s not in self.expected_down]
        if not live:
            self.say("kill: every worker is down already; skipped")
            return
        if slot not in live:  # the planned victim is still dead: the next live one instead
            slot = min(live, key=lambda s: (s - event["slot"]) % len(self.workers))
        worker = self.workers[slot]
        pid = worker.pid
        t_kill = time.time()
        worker.kill()
        self.expected_down.add(slot)
        held = [
            row[0]
            for row in self.query(
                "SELECT workflow_id FROM dbos_workflow_status "
                "WHERE status = 'PENDING' AND executor_id = %s",
                [self.executor_id(slot)],
            )
        ]
        self.restart_due[slot] = t_kill + event["restart_after"]
        self.run.kills.append(
            {
                "slot": slot,
                "pid": pid,
                "t_kill": t_kill,
                "held": held,
                "restart_after": event["restart_after"],
            }
        )
        self.say(
            f"kill -9 {worker.name} (pid {pid}) holding {len(held)} workflows; restart in "
            f"{event['restart_after']:.1f} s"
        )

    def restart_worker(self, slot: int) -> None:
        self.restart_due.pop(slot, None)
        self.expected_down.discard(slot)
        self.workers[slot].start()
        for kill in reversed(self.run.kills):
            if kill["slot"] == slot:
                kill.setdefault("t_restarted", time.time())
                break
        self.say(f"restarted {self.workers[slot].name} (pid {self.workers[slot].pid})")

    def db_restart(self, event: dict[str, Any]) -> None:
        self.say(f"restarting PostgreSQL (extra downtime {event['downtime']:.1f} s)")
        began, up = self.server.restart(event["downtime"])
        self.run.db_restarts.append({"t_begin": began, "t_up": up, "down_s": up - began})
        self.say(f"PostgreSQL is back after {up - began:.2f} s")

    def terminate(self, event: dict[str, Any]) -> None:
        rows = self.query(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [DBNAME],
            dbname="postgres",
        )
        count = rows[0][0]
        self.run.terminations.append({"t": time.time(), "backends": count})
        self.say(f"terminated {count} backends of database {DBNAME}")

    # The run --------------------------------------------------------------------------------

    def execute(self) -> int:
        args, plan = self.args, self.plan
        self.say(
            f"seed {plan['seed']}, {plan['minutes']} min, {args.workers} workers, plan "
            f"{plan['digest']}: {len(plan['jobs'])} jobs, {len(plan['chaos'])} chaos events; "
            f"run directory {self.run_dir}"
        )
        self.server.start()
        self.say(f"database server: {self.server.description}")
        self.setup_database()
        self.make_workers()
        for worker in self.workers:
            worker.start()
        self.wait_workers_ready()
        self.say("workers ready")

        start = time.time() + 1.0
        self.run.load_started = start
        self.web = Child(
            "load-generator",
            [
                sys.executable,
                "-m",
                "chaos.web",
                "--plan",
                str(self.run_dir / "plan.json"),
                "--out",
                str(self.run_dir / "web.jsonl"),
                "--start",
                f"{start:.6f}",
            ],
            self.env(DBOS_EXECUTOR_ID="chaos-web"),
            self.run_dir / "logs" / "load-generator.log",
            self.code,
        )
        self.web.start()

        end = start + plan["duration"]
        events = list(plan["chaos"])
        actions = {"kill": self.kill, "db_restart": self.db_restart, "terminate": self.terminate}
        while events or time.time() < end:
            now = time.time()
            self.tick()
            if events and start + events[0]["at"] <= now:
                event = events.pop(0)
                actions[event["kind"]](event)
                continue
            time.sleep(TICK_S)
        self.run.chaos_ended = time.time()
        for slot in list(self.restart_due):
            self.restart_worker(slot)
        self.say("chaos over; draining")
        self.drain()
        return self.finish()

    def web_done(self) -> bool:
        path = self.run_dir / "web.jsonl"
        return path.exists() and '"k": "done"' in path.read_text()

    def drain(self) -> None:
        deadline = time.time() + self.args.drain_seconds
        last_report = 0.0
        while time.time() < deadline:
            self.tick()
            active = self.query(
                "SELECT count(*) FROM dbos_workflow_status WHERE status IN ('PENDING', 'ENQUEUED')"
            )[0][0]
            web_over = self.web_done() or self.web is None or self.web.process is None
            if active == 0 and web_over:
                self.run.drained_at = time.time()
                after = self.run.drained_at - self.run.chaos_ended
                self.say(f"drained {after:.1f} s after the chaos")
                return
            if time.time() - last_report > 10:
                last_report = time.time()
                self.say(f"draining: {active} workflows PENDING or ENQUEUED")
            time.sleep(0.5)
        self.run.drain_deadline_hit = True
        self.say(f"drain deadline ({self.args.drain_seconds:.0f} s) passed with work left")

    def stop_processes(self) -> None:
        for child in [*self.workers, self.web]:
            if child is not None and child.alive():
                child.process.terminate()
        for child in [*self.workers, self.web]:
            if child is not None:
                child.stop()

    def finish(self) -> int:
        self.stop_processes()
        for slot, worker in enumerate(self.workers):
            self.run.lives[self.executor_id(slot)] = worker.lives
        if self.web is not None:
            self.run.lives["chaos-web"] = self.web.lives
        checks.dump(self.conninfo, self.run_dir)
        data = checks.load(self.conninfo, self.run_dir)
        checks.save(data, self.run_dir)
        violations, stats = checks.check(data, self.run)
        violations += checks.thread_deaths(self.run_dir / "logs")
        stats["log_counts"] = checks.log_counts(self.run_dir / "logs")
        report = self.report(data, violations, stats)
        kills = self.kill_table(stats)
        (self.run_dir / "report.txt").write_text(report + "\n" + "\n".join(kills) + "\n")
        (self.run_dir / "report.json").write_text(
            json.dumps(
                {
                    "seed": self.plan["seed"],
                    "plan_digest": self.plan["digest"],
                    "stats": stats,
                    "violations": [v.__dict__ for v in violations],
                    "unexpected_exits": self.run.unexpected_exits,
                    "terminations": self.run.terminations,
                    "kills": self.run.kills,
                    "db_restarts": self.run.db_restarts,
                    "lives": self.run.lives,
                },
                indent=1,
                default=str,
            )
        )
        print(report, flush=True)
        if len(kills) <= 45:
            print("\n".join(kills), flush=True)
        else:
            print(f"(recovery after each of the {len(kills) - 1} kills: report.txt)", flush=True)
        return 1 if violations else 0

    def code_note(self) -> str:
        """Which code the processes ran; a warning when it changed during the run."""
        lives = sorted(
            (life for child in [*self.workers, self.web] if child for life in child.lives),
            key=lambda life: life[1],
        )
        digests = list(dict.fromkeys(life[3] for life in lives))
        where = "a copy made at the start" if self.code != ROOT else f"the checkout {ROOT}"
        if len(digests) <= 1:
            return f"{where}, digest {digests[0] if digests else '?'}"
        first_seen = {}
        for life in lives:
            first_seen.setdefault(life[3], life[1] - self.run.load_started)
        changes = ", ".join(f"{digest} from +{since:.0f} s" for digest, since in first_seen.items())
        return (
            f"WARNING: the code changed during the run ({changes}): processes started at "
            "different times ran different code"
        )

    def kill_table(self, stats: dict) -> list[str]:
        """One line per kill: when, which worker, what it held, how soon that progressed."""
        start = self.run.load_started
        lines = ["recovery after each kill (s from the SIGKILL; n/a: it held nothing):"]
        for kill in stats["per_kill"]:
            lines.append(
                f"  +{kill['t_kill'] - start:7.1f} s  worker-{kill['slot']}  held "
                f"{kill['held']:2d}  restarted after {kill['restart_after']:4.1f} s  takeover "
                f"{fmt(kill['takeover_s'])}  first progress {fmt(kill['first_progress_s'])}  "
                f"all held {fmt(kill['all_progressed_s'])}"
            )
        return lines

    def report(self, data: checks.Data, violations: list[checks.Violation], stats: dict) -> str:
        plan = self.plan
        by_status = stats["by_status"]
        firsts = stats["recovery_first_progress_s"]
        alls = stats["recovery_all_held_s"]
        takeovers = stats["takeover_s"]
        timeout = plan["executor_timeout_s"]
        quick = [
            kill["first_progress_s"]
            for kill in stats["per_kill"]
            if kill["first_progress_s"] is not None and kill["restart_after"] < timeout
        ]
        slow = [
            kill["first_progress_s"]
            for kill in stats["per_kill"]
            if kill["first_progress_s"] is not None and kill["restart_after"] >= timeout
        ]
        drained = (
            f"drained {self.run.drained_at - self.run.chaos_ended:.1f} s after the chaos"
            if self.run.drained_at
            else f"NOT drained within {self.args.drain_seconds:.0f} s"
        )
        lines = [
            "",
            "=" * 100,
            f"django-dbos chaos run: seed {plan['seed']}, {plan['minutes']} min of chaos, "
            f"{self.args.workers} workers, plan {plan['digest']}",
            f"server: {self.server.description}",
            f"code: {self.code_note()}",
            f"run directory: {self.run_dir}",
            "-" * 100,
            f"kills survived:             {stats['kills']} kill -9 of a worker "
            f"({stats['kills_holding_work']} holding work, {stats['kills_not_recovered']} whose "
            "work never progressed)",
            f"database restarts survived: {len(self.run.db_restarts)} "
            + ", ".join(
                f"[down {r['down_s']:.2f} s, first checkpoint {fmt(r['first_checkpoint_after_s'])}"
                " after]"
                for r in stats["db_restarts"]
            ),
            f"backend terminations:       {len(self.run.terminations)} "
            f"({sum(t['backends'] for t in self.run.terminations)} backends); at most "
            f"{self.run.peak_connections} connections to the database at once (sampled)",
            f"workflows checked:          {stats['workflows']} started = "
            f"{by_status.get('SUCCESS', 0)} SUCCESS ({stats['roots_planned']} roots planned, "
            f"{stats['roots_started']} started, the rest their children); by status: "
            + ", ".join(f"{status} {count}" for status, count in sorted(by_status.items())),
            f"                            {drained}; {stats['executions']} executions of "
            f"workflow bodies, {stats['takeovers']} takeovers; load generator: "
            f"{stats['load_generator_retries']} retries, at most "
            f"{stats['load_generator_max_late_s']:.1f} s behind its plan",
            f"steps:                      {stats['step_attempts']} attempts "
            f"({stats['step_attempts_failed_as_planned']} planned failures, "
            f"{stats['steps_completed_more_than_once']} steps completed twice before their "
            f"checkpoint); {stats['sleeps_checked']} durable sleeps checked",
            f"transactions:               {stats['transactions']} checkpointed, ledger rows "
            f"{len(data.ledger)}",
            f"messages:                   {stats['messages_planned']} planned, "
            f"{stats['messages_sent']} sent, {stats['messages_received']} received "
            f"({stats['external_sends']} from the load generator); "
            f"{stats['events_set']} events set",
            f"queues:                     {plan_module.LIMITED_QUEUE} peak "
            f"{stats['limited_queue_peak_pending']} PENDING / "
            f"{stats['limited_queue_peak_running_bodies']} bodies running (limit "
            f"{plan_module.LIMITED_CONCURRENCY}); {plan_module.RATED_QUEUE} peak "
            f"{stats['rated_queue_peak_per_window']} per {plan_module.RATE_PERIOD_S} s over "
            f"{stats['rated_queue_dispatches']} dispatches (limit {plan_module.RATE_LIMIT}); "
            f"{plan_module.MAIN_QUEUE} peak {stats['main_queue_peak_pending_per_worker']} per "
            f"worker (limit {plan_module.MAIN_WORKER_CONCURRENCY})",
            f"recovery after a kill:      first progress p50 {fmt(checks.percentile(firsts, 50))}"
            f", p99 {fmt(checks.percentile(firsts, 99))}, max "
            f"{fmt(max(firsts) if firsts else None)} (n={len(firsts)}); takeover p50 "
            f"{fmt(checks.percentile(takeovers, 50))}, p99 {fmt(checks.percentile(takeovers, 99))}"
            f"; all held progressed p50 {fmt(checks.percentile(alls, 50))}, p99 "
            f"{fmt(checks.percentile(alls, 99))}",
            f"                            restarted at once: first progress p50 "
            f"{fmt(checks.percentile(quick, 50))}, p99 {fmt(checks.percentile(quick, 99))} "
            f"(n={len(quick)}); left down past the executor timeout (the others take over): "
            f"p50 {fmt(checks.percentile(slow, 50))}, p99 {fmt(checks.percentile(slow, 99))} "
            f"(n={len(slow)})",
            f"process exits:              {len(self.run.unexpected_exits)} unexpected, of "
            f"which {sum(1 for e in self.run.unexpected_exits if e['startup_outage'])} while "
            "starting during an outage (not counted as violations)",
            "process logs:               "
            + ", ".join(f"{label} {count}" for label, count in stats["log_counts"].items()),
            "-" * 100,
            f"INVARIANT VIOLATIONS: {len(violations)}",
        ]
        groups: dict[str, list[checks.Violation]] = {}
        for violation in violations:
            groups.setdefault(violation.invariant, []).append(violation)
        for invariant, members in groups.items():
            lines.append(f"  {invariant}: {len(members)}")
            for violation in members[:5]:
                lines.append(f"    - {violation.detail}")
            if len(members) > 5:
                lines.append(f"    ... and {len(members) - 5} more (report.json)")
            first = next((v for v in members if v.workflows), None)
            if first is not None:
                lines.append(f"    timeline of {first.workflows[0]}:")
                lines.extend(f"      {line}" for line in checks.timeline(data, first.workflows[0]))
        if violations:
            lines.append(
                f"reproduce: python chaos/run.py --seed {plan['seed']} --minutes "
                f"{plan['minutes']} --workers {self.args.workers} --db-restarts "
                f"{self.args.db_restarts} --terminations {self.args.terminations} --rate "
                f"{self.args.rate}"
                + (f" --cluster {self.args.cluster}" if self.args.cluster else "")
                + f"   (same plan {plan['digest']}; the OS timing differs)"
            )
        lines.append("=" * 100)
        return "\n".join(lines)

    def cleanup(self) -> None:
        for child in [*self.workers, self.web]:
            if child is not None:
                child.kill()
        try:
            self.server.close()
        except Exception as exc:  # report, but let the run's own outcome stand
            print(f"[chaos] could not close the database server: {exc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the chaos phase")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--db-restarts", type=int, default=2)
    parser.add_argument("--terminations", type=int, default=2, help="pg_terminate_backend rounds")
    parser.add_argument("--rate", type=float, default=3.0, help="root workflows per second")
    parser.add_argument("--drain-seconds", type=float, default=90.0)
    parser.add_argument(
        "--cluster",
        metavar="VERSION/NAME",
        help="restart this Debian cluster (pg_ctlcluster) instead of a private server",
    )
    parser.add_argument("--port", type=int, help="port of the private server (default: a free one)")
    parser.add_argument("--run-dir", type=Path, help="default: chaos/runs/seed<N>-<time>")
    parser.add_argument(
        "--no-freeze-code",
        dest="freeze_code",
        action="store_false",
        help="run the checkout's code itself, not a copy made at the start (edits made during "
        "the run then reach the workers restarted after them)",
    )
    args = parser.parse_args(argv)

    plan = plan_module.make_plan(
        seed=args.seed,
        minutes=args.minutes,
        workers=args.workers,
        db_restarts=args.db_restarts,
        terminations=args.terminations,
        rate=args.rate,
    )
    run_dir = args.run_dir or (
        ROOT
        / "chaos"
        / "runs"
        / f"seed{args.seed}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "plan.json").write_text(json.dumps(plan, indent=1))

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGALRM, _interrupt)
    # A hard bound on the whole run, whatever hangs.
    signal.alarm(int(plan["duration"] + args.drain_seconds + 600))
    harness: Harness | None = None
    try:
        harness = Harness(args, plan, run_dir)
        return harness.execute()
    except (Exception, KeyboardInterrupt, Interrupted) as exc:
        print(f"[chaos] HARNESS FAILURE: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc()
        return 2
    finally:
        signal.alarm(0)
        if harness is not None:
            harness.cleanup()


if __name__ == "__main__":
    sys.exit(main())
