"""The invariants of a chaos run, computed after the drain from the database and the side-effect
files, and the figures of the report.

Sources (all written during the run, none by the harness's own guesses):

- the system tables (dbos_workflow_status, dbos_operation_output, dbos_notification,
  dbos_workflow_event_history) and the app rows (chaos_ledger);
- chaos_wf_audit / chaos_op_audit: rows written by triggers the harness installs, one per change
  of a workflow's status, executor or execution, and one per checkpoint inserted, each with the
  database clock at the statement (clock_timestamp()). They give every dispatch of a queued
  workflow (the engine overwrites started_at), every takeover, and when each checkpoint landed;
- the markers the steps append (chaos/chaos_app/workflows.py);
- what the load generator and the harness did (web.jsonl, the kills, restarts, terminations).

All the clocks compared are the same machine's wall clock (time.time() in the processes,
clock_timestamp() in PostgreSQL on the same host).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from chaos import plan as plan_module

TERMINAL = {"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}
LOG_PATTERNS = {
    "Traceback": "Traceback (most recent call last)",
    "notifier reconnects": "notifier lost its connection",
    "dispatch failures": "Queue dispatch failed",
    "heartbeat failures": "DBOS heartbeat failed",
    "recovery check failures": "Recovery check failed",
    "workflows recovered": "Recovering workflow",
    "superseded executions": "is now run by another execution",
    "queued workflows ended by an exception": "finished in",
}

AUDIT_SQL = """
CREATE TABLE chaos_wf_audit (
    id bigserial PRIMARY KEY,
    workflow_id text NOT NULL,
    queue_name text,
    old_status text,
    new_status text NOT NULL,
    old_executor text,
    new_executor text,
    old_execution integer,
    new_execution integer,
    started_at timestamptz,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX chaos_wf_audit_wf ON chaos_wf_audit (workflow_id);
CREATE FUNCTION chaos_wf_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO chaos_wf_audit (workflow_id, queue_name, new_status, new_executor,
            new_execution, started_at)
        VALUES (NEW.workflow_id, NEW.queue_name, NEW.status, NEW.executor_id, NEW.execution,
            NEW.started_at);
    ELSIF NEW.status IS DISTINCT FROM OLD.status
            OR NEW.executor_id IS DISTINCT FROM OLD.executor_id
            OR NEW.execution IS DISTINCT FROM OLD.execution THEN
        INSERT INTO chaos_wf_audit (workflow_id, queue_name, old_status, new_status,
            old_executor, new_executor, old_execution, new_execution, started_at)
        VALUES (NEW.workflow_id, NEW.queue_name, OLD.status, NEW.status, OLD.executor_id,
            NEW.executor_id, OLD.execution, NEW.execution, NEW.started_at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_wf_audit AFTER INSERT OR UPDATE ON dbos_workflow_status
    FOR EACH ROW EXECUTE FUNCTION chaos_wf_audit();
CREATE TABLE chaos_op_audit (
    id bigserial PRIMARY KEY,
    workflow_id text NOT NULL,
    function_id integer NOT NULL,
    function_name text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos_op_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_op_audit (workflow_id, function_id, function_name)
    VALUES (NEW.workflow_id, NEW.function_id, NEW.function_name);
    RETURN NULL;
END $$;
CREATE TRIGGER chaos_op_audit AFTER INSERT ON dbos_operation_output
    FOR EACH ROW EXECUTE FUNCTION chaos_op_audit();
"""

# Tables copied into the run directory at the end (the database itself is dropped).
DUMPED_TABLES = [
    "dbos_workflow_status",
    "dbos_operation_output",
    "dbos_notification",
    "dbos_workflow_event_history",
    "dbos_executor",
    "chaos_ledger",
    "chaos_wf_audit",
    "chaos_op_audit",
]


@dataclass
class Violation:
    invariant: str
    detail: str
    workflows: list[str] = field(default_factory=list)


@dataclass
class Run:
    """What the harness recorded while the chaos went on."""

    plan: dict[str, Any]
    kills: list[dict[str, Any]] = field(default_factory=list)
    db_restarts: list[dict[str, Any]] = field(default_factory=list)
    terminations: list[dict[str, Any]] = field(default_factory=list)
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    # Per executor id, the lives of its processes: [pid, started, ended or None].
    lives: dict[str, list[list[Any]]] = field(default_factory=dict)
    load_started: float = 0.0
    chaos_ended: float = 0.0
    drained_at: float | None = None
    drain_deadline_hit: bool = False
    peak_connections: int = 0


@dataclass
class Data:
    workflows: dict[str, dict[str, Any]]
    ops: dict[tuple[str, int], dict[str, Any]]
    audit: list[dict[str, Any]]
    ledger: list[tuple[str, int, int]]
    notifications: list[dict[str, Any]]
    event_history: list[tuple[str, int, str]]
    markers: list[dict[str, Any]]
    web: list[dict[str, Any]]


def install_audit(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(AUDIT_SQL)


def load(conninfo: str, run_dir: Path) -> Data:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        workflows = {
            row[0]: {
                "id": row[0],
                "name": row[1],
                "status": row[2],
                "output": row[3],
                "error": row[4],
                "queue": row[5],
                "executor": row[6],
                "recovery_attempts": row[7],
                "parent": row[8],
            }
            for row in conn.execute(
                "SELECT workflow_id, name, status, output, error, queue_name, executor_id, "
                "recovery_attempts, parent_workflow_id FROM dbos_workflow_status"
            )
        }
        ops = {
            (row[0], row[1]): {
                "wf": row[0],
                "fid": row[1],
                "name": row[2],
                "output": row[3],
                "error": row[4],
                "child": row[5],
                "completed_at": float(row[6]),
                "at": float(row[7]) if row[7] is not None else float(row[6]),
            }
            for row in conn.execute(
                """
                SELECT o.workflow_id, o.function_id, o.function_name, o.output, o.error,
                    o.child_workflow_id, extract(epoch FROM o.completed_at), a.at
                FROM dbos_operation_output o LEFT JOIN (
                    SELECT workflow_id, function_id, min(extract(epoch FROM at)) AS at
                    FROM chaos_op_audit GROUP BY 1, 2
                ) a ON a.workflow_id = o.workflow_id AND a.function_id = o.function_id
                """
            )
        }
        audit = [
            {
                "id": row[0],
                "wf": row[1],
                "queue": row[2],
                "old": row[3],
                "new": row[4],
                "old_ex": row[5],
                "new_ex": row[6],
                "old_exec": row[7],
                "new_exec": row[8],
                "started_at": float(row[9]) if row[9] is not None else None,
                "at": float(row[10]),
            }
            for row in conn.execute(
                "SELECT id, workflow_id, queue_name, old_status, new_status, old_executor, "
                "new_executor, old_execution, new_execution, extract(epoch FROM started_at), "
                "extract(epoch FROM at) FROM chaos_wf_audit ORDER BY at, id"
            )
        ]
        ledger = list(conn.execute("SELECT workflow_id, function_id, amount FROM chaos_ledger"))
        notifications = [
            {"id": row[0], "dest": row[1], "topic": row[2], "message": row[3], "consumed": row[4]}
            for row in conn.execute(
                "SELECT id, destination_id, topic, message, consumed_at IS NOT NULL "
                "FROM dbos_notification"
            )
        ]
        event_history = list(
            conn.execute("SELECT workflow_id, function_id, key FROM dbos_workflow_event_history")
        )
    markers = []
    for path in sorted((run_dir / "markers").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                markers.append(json.loads(line))
    web = []
    web_log = run_dir / "web.jsonl"
    if web_log.exists():
        web = [json.loads(line) for line in web_log.read_text().splitlines() if line.strip()]
    return Data(workflows, ops, audit, ledger, notifications, event_history, markers, web)


def save(data: Data, run_dir: Path) -> None:
    """Keep what the checks read (RUN/data.json.gz), for chaos/explain.py."""
    body = dict(data.__dict__)
    body["ops"] = list(data.ops.values())
    with gzip.open(run_dir / "data.json.gz", "wt") as file:
        json.dump(body, file)


def restore(run_dir: Path) -> Data:
    with gzip.open(run_dir / "data.json.gz", "rt") as file:
        body = json.load(file)
    body["ops"] = {(op["wf"], op["fid"]): op for op in body["ops"]}
    return Data(**body)


def dump(conninfo: str, run_dir: Path) -> None:
    """Copy the tables into RUN/db/*.csv: the evidence outlives the database."""
    target = run_dir / "db"
    target.mkdir(exist_ok=True)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in DUMPED_TABLES:
            with (
                open(target / f"{table}.csv", "wb") as file,
                conn.cursor().copy(f"COPY {table} TO STDOUT WITH CSV HEADER") as copy,
            ):
                for chunk in copy:
                    file.write(chunk)


# Helpers --------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def max_overlap(intervals: list[tuple[float, float, str]]) -> tuple[int, float, list[str]]:
    """The most intervals open at one moment, when, and which (ends sort before starts)."""
    edges = sorted(
        [(start, 1, label) for start, _, label in intervals]
        + [(end, -1, label) for _, end, label in intervals]
    )
    open_now: set[str] = set()
    peak, when, members = 0, 0.0, []
    for moment, change, label in edges:
        if change > 0:
            open_now.add(label)
        else:
            open_now.discard(label)
        if len(open_now) > peak:
            peak, when, members = len(open_now), moment, sorted(open_now)
    return peak, when, members


def pending_intervals(
    audit: list[dict[str, Any]], queue: str, horizon: float
) -> dict[str, list[tuple[float, float, str]]]:
    """Per executor, the intervals in which a workflow of `queue` was PENDING on it (from the
    audit trail; still PENDING at the end: open until `horizon`)."""
    open_at: dict[str, tuple[float, str]] = {}
    spans: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for row in audit:
        if row["queue"] != queue:
            continue
        wf = row["wf"]
        if row["new"] == "PENDING" and row["old"] != "PENDING":
            open_at[wf] = (row["at"], row["new_ex"] or "")
        elif row["old"] == "PENDING" and row["new"] != "PENDING" and wf in open_at:
            began, executor = open_at.pop(wf)
            spans[executor].append((began, row["at"], wf))
    for wf, (began, executor) in open_at.items():
        spans[executor].append((began, horizon, wf))
    return spans


def timeline(data: Data, workflow_id: str, limit: int = 40) -> list[str]:
    """A workflow's history (audit rows, checkpoints, markers), for the report's evidence."""
    events: list[tuple[float, str]] = []
    for row in data.audit:
        if row["wf"] == workflow_id:
            events.append(
                (
                    row["at"],
                    f"status {row['old'] or '-'} -> {row['new']}  executor "
                    f"{row['old_ex'] or '-'} -> {row['new_ex'] or '-'}  execution "
                    f"{row['old_exec']} -> {row['new_exec']}",
                )
            )
    for (wf, fid), op in data.ops.items():
        if wf == workflow_id:
            outcome = "error" if op["error"] else f"output {str(op['output'])[:60]}"
            events.append((op["at"], f"checkpoint #{fid} {op['name']} {outcome}"))
    for marker in data.markers:
        if marker.get("wf") != workflow_id:
            continue
        if marker["k"] == "step":
            events.append(
                (
                    marker["t0"],
                    f"step body #{marker['fid']} {marker['name']} started (attempt "
                    f"{marker['attempt']}, {'ok' if marker['ok'] else 'failed'}, ended "
                    f"{marker['t1']:.3f}) in pid {marker['pid']} {marker['ex']}",
                )
            )
        else:
            events.append((marker["t"], f"body started in pid {marker['pid']} {marker['ex']}"))
    events.sort()
    return [f"{moment:.3f}  {text}" for moment, text in events[:limit]]


# The checks -----------------------------------------------------------------------------------


def check(data: Data, run: Run) -> tuple[list[Violation], dict[str, Any]]:
    plan = run.plan
    violations: list[Violation] = []
    stats: dict[str, Any] = {}
    roots = [job for job in plan["jobs"] if not job.get("send")]
    sends = [job for job in plan["jobs"] if job.get("send")]
    horizon = max([row["at"] for row in data.audit] + [run.chaos_ended]) + 1

    # 1. Every workflow started finished, with SUCCESS; none lost.
    by_status = Counter(wf["status"] for wf in data.workflows.values())
    stats["workflows"] = len(data.workflows)
    stats["by_status"] = dict(by_status)
    stats["roots_planned"] = len(roots)
    started_ids = {entry["id"] for entry in data.web if entry["k"] == "started"}
    stats["roots_started"] = len(started_ids)
    for entry in data.web:
        if entry["k"] == "gave_up":
            violations.append(
                Violation(
                    "load generator could not start/send",
                    f"{entry.get('id') or entry.get('mid')} after {entry['attempts']} attempts: "
                    f"{entry['errors'][-1:]}",
                    [entry.get("id") or entry.get("dest")],
                )
            )
    escaped: Counter[tuple[str, str]] = Counter()
    for entry in data.web:
        for name in entry.get("base_errors", []):
            escaped[(entry["call"], name)] += 1
    for (call, name), count in sorted(escaped.items()):
        violations.append(
            Violation(
                "web process survives: API errors are Exceptions",
                f"{call} raised {name}, not an Exception subclass, {count} times while the "
                "database was away (a view's `except Exception`, or Django's and the WSGI "
                "server's error handling, does not catch it)",
                [],
            )
        )
    stats["load_generator_retries"] = sum(entry.get("attempts", 1) - 1 for entry in data.web)
    stats["load_generator_max_late_s"] = max([entry.get("late", 0.0) for entry in data.web] + [0.0])
    for job in roots:
        if job["id"] not in data.workflows:
            violations.append(
                Violation(
                    "none lost", f"planned workflow {job['id']} is not in the database", [job["id"]]
                )
            )
    for wf in data.workflows.values():
        if wf["status"] != "SUCCESS":
            error = (wf["error"] or "").strip().splitlines()
            violations.append(
                Violation(
                    "every workflow SUCCESS (none stuck)",
                    f"{wf['id']} ({wf['name']}) is {wf['status']} on executor {wf['executor']}"
                    + (f": {error[-1][:200]}" if error else ""),
                    [wf["id"]],
                )
            )

    # 2. Outputs are what the plan says.
    for job in roots:
        wf = data.workflows.get(job["id"])
        if wf is None or wf["status"] != "SUCCESS":
            continue
        output = json.loads(wf["output"]) if wf["output"] is not None else None
        if output != job["expect"]:
            violations.append(
                Violation(
                    "outputs as planned",
                    f"{job['id']} returned {str(output)[:200]} instead of "
                    f"{str(job['expect'])[:200]}",
                    [job["id"]],
                )
            )

    # 3. Transactions: one ledger row per checkpointed transaction, and none without one.
    books = {key: op for key, op in data.ops.items() if op["name"] == "chaos.book"}
    ledger = Counter((wf, fid) for wf, fid, _ in data.ledger)
    amounts = {(wf, fid): amount for wf, fid, amount in data.ledger}
    stats["transactions"] = len(books)
    for key, op in books.items():
        if op["error"] is not None:
            continue
        if ledger[key] != 1:
            violations.append(
                Violation(
                    "transaction rows exactly once",
                    f"transaction {key[0]} #{key[1]} has {ledger[key]} ledger rows",
                    [key[0]],
                )
            )
        elif json.loads(op["output"]) != amounts[key]:
            violations.append(
                Violation(
                    "transaction rows exactly once",
                    f"transaction {key[0]} #{key[1]} recorded {op['output']} but wrote "
                    f"{amounts[key]}",
                    [key[0]],
                )
            )
    for key, count in ledger.items():
        if key not in books or books[key]["error"] is not None:
            violations.append(
                Violation(
                    "transaction rows exactly once",
                    f"{count} ledger rows for {key[0]} #{key[1]}, which has no successful "
                    "transaction checkpoint",
                    [key[0]],
                )
            )

    # 4. Messages: each planned message sent once, consumed once, by one recv.
    planned_mids: dict[str, str] = {}
    for job in roots:
        if job["workflow"] == "wf_chat":
            for mid in job["args"][0] + job["args"][1]:
                planned_mids[mid] = plan_module.receiver_id(job["id"])
    stats["messages_planned"] = len(planned_mids)
    sent = Counter()
    for note in data.notifications:
        try:
            mid = json.loads(note["message"])["mid"]
        except (ValueError, KeyError, TypeError):
            mid = note["message"]
        sent[mid] += 1
        if not note["consumed"]:
            violations.append(
                Violation(
                    "every message consumed exactly once",
                    f"message {mid} to {note['dest']} was never consumed",
                    [note["dest"]],
                )
            )
    received = Counter()
    for op in data.ops.values():
        if op["name"] == "DBOS.recv" and op["output"] not in (None, "null"):
            received[json.loads(op["output"])["mid"]] += 1
    for mid, receiver in planned_mids.items():
        if sent[mid] != 1:
            violations.append(
                Violation(
                    "every message consumed exactly once",
                    f"message {mid} exists {sent[mid]} times",
                    [receiver],
                )
            )
        if received[mid] != 1:
            violations.append(
                Violation(
                    "every message consumed exactly once",
                    f"message {mid} was received by {received[mid]} recv checkpoints",
                    [receiver],
                )
            )
    for mid in set(sent) | set(received):
        if mid not in planned_mids:
            violations.append(
                Violation("every message consumed exactly once", f"unplanned message {mid}", [])
            )
    stats["messages_sent"] = sum(sent.values())
    stats["messages_received"] = sum(received.values())
    stats["external_sends"] = len(sends)

    # 5. Events: one history row per set_event checkpoint, and none without one.
    set_events = {key for key, op in data.ops.items() if op["name"] == "DBOS.setEvent"}
    history = Counter((wf, fid) for wf, fid, _ in data.event_history)
    for key in set_events:
        if history[key] != 1:
            violations.append(
                Violation(
                    "events exactly once",
                    f"set_event {key[0]} #{key[1]} has {history[key]} history rows",
                    [key[0]],
                )
            )
    for key in history:
        if key not in set_events:
            violations.append(
                Violation(
                    "events exactly once",
                    f"event history row {key[0]} #{key[1]} without its checkpoint",
                    [key[0]],
                )
            )
    stats["events_set"] = len(set_events)

    # 6. No step body started after its output was checkpointed.
    steps = [marker for marker in data.markers if marker["k"] == "step"]
    stats["step_attempts"] = len(steps)
    stats["step_attempts_failed_as_planned"] = sum(1 for m in steps if not m["ok"])
    reruns = Counter()
    for marker in steps:
        op = data.ops.get((marker["wf"], marker["fid"]))
        if op is None:
            continue
        if marker["t0"] > op["at"]:
            violations.append(
                Violation(
                    "no step ran after its output was recorded",
                    f"step {marker['wf']} #{marker['fid']} ({marker['name']}) started at "
                    f"{marker['t0']:.3f} in pid {marker['pid']} ({marker['ex']}), "
                    f"{(marker['t0'] - op['at']) * 1000:.1f} ms after its checkpoint",
                    [marker["wf"]],
                )
            )
    ok_runs = Counter((m["wf"], m["fid"]) for m in steps if m["ok"])
    reruns.update(key for key, count in ok_runs.items() if count > 1)
    stats["steps_completed_more_than_once"] = len(reruns)  # at-least-once, before a checkpoint

    # 7. Durable sleep: the step after a sleep never starts before the recorded wake-up time.
    sleeps_checked = 0
    markers_of: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for marker in steps:
        markers_of[(marker["wf"], marker["fid"])].append(marker)
    for (wf, fid), op in data.ops.items():
        following = data.ops.get((wf, fid + 1))
        if op["name"] != "DBOS.sleep" or following is None or following["name"] != "chaos.wake":
            continue
        wake_at = float(json.loads(op["output"]))
        sleeps_checked += 1
        for marker in markers_of[(wf, fid + 1)]:
            if marker["t0"] < wake_at:
                violations.append(
                    Violation(
                        "durable sleep never ends early",
                        f"{wf}: the step after sleep #{fid} started {wake_at - marker['t0']:.3f} "
                        "s before the recorded wake-up time",
                        [wf],
                    )
                )
    stats["sleeps_checked"] = sleeps_checked

    # 8. Queue limits.
    limited = pending_intervals(data.audit, plan_module.LIMITED_QUEUE, horizon)
    spans = [span for per_executor in limited.values() for span in per_executor]
    peak, when, members = max_overlap(spans)
    stats["limited_queue_peak_pending"] = peak
    if peak > plan_module.LIMITED_CONCURRENCY:
        violations.append(
            Violation(
                "global concurrency never exceeded",
                f"{peak} workflows of {plan_module.LIMITED_QUEUE} PENDING at {when:.3f} "
                f"(limit {plan_module.LIMITED_CONCURRENCY})",
                members,
            )
        )
    queue_of = {wf["id"]: wf["queue"] for wf in data.workflows.values()}
    bodies = [
        (m["t0"], m["t1"], f"{m['wf']}@{m['pid']}")
        for m in steps
        if m["name"] == "chaos.hold" and queue_of.get(m["wf"]) == plan_module.LIMITED_QUEUE
    ]
    peak, when, members = max_overlap(bodies)
    stats["limited_queue_peak_running_bodies"] = peak
    if peak > plan_module.LIMITED_CONCURRENCY:
        violations.append(
            Violation(
                "global concurrency never exceeded",
                f"{peak} bodies of {plan_module.LIMITED_QUEUE} running at {when:.3f} "
                f"(limit {plan_module.LIMITED_CONCURRENCY})",
                [member.split("@")[0] for member in members],
            )
        )
    main = pending_intervals(data.audit, plan_module.MAIN_QUEUE, horizon)
    worst = 0
    for executor, per_executor in main.items():
        peak, when, members = max_overlap(per_executor)
        worst = max(worst, peak)
        if peak > plan_module.MAIN_WORKER_CONCURRENCY:
            violations.append(
                Violation(
                    "worker concurrency never exceeded",
                    f"{peak} workflows of {plan_module.MAIN_QUEUE} PENDING on {executor} at "
                    f"{when:.3f} (limit {plan_module.MAIN_WORKER_CONCURRENCY})",
                    members,
                )
            )
    stats["main_queue_peak_pending_per_worker"] = worst
    dispatches = sorted(
        (row["started_at"], row["wf"])
        for row in data.audit
        if row["queue"] == plan_module.RATED_QUEUE
        and row["old"] == "ENQUEUED"
        and row["new"] == "PENDING"
        and row["started_at"] is not None
    )
    worst = 0
    reported = False
    first = 0
    for index, (moment, _) in enumerate(dispatches):
        while dispatches[first][0] <= moment - plan_module.RATE_PERIOD_S:
            first += 1
        window = {wf for _, wf in dispatches[first : index + 1]}
        # Dispatches at the very same moment (one claim of several) all belong to the window.
        later = index + 1
        while later < len(dispatches) and dispatches[later][0] == moment:
            window.add(dispatches[later][1])
            later += 1
        worst = max(worst, len(window))
        if len(window) > plan_module.RATE_LIMIT and not reported:
            reported = True
            violations.append(
                Violation(
                    "rate limit never exceeded",
                    f"{len(window)} workflows of {plan_module.RATED_QUEUE} dispatched in the "
                    f"{plan_module.RATE_PERIOD_S} s before {moment:.3f} (limit "
                    f"{plan_module.RATE_LIMIT})",
                    sorted(window),
                )
            )
    stats["rated_queue_dispatches"] = len(dispatches)
    stats["rated_queue_peak_per_window"] = worst

    # 9. Workflows are only taken from executors whose process is dead.
    takeovers = 0
    claimed_at: dict[str, tuple[float, str]] = {}
    for row in data.audit:
        wf = row["wf"]
        if row["new"] == "PENDING" and (
            row["old"] != "PENDING" or row["new_exec"] != row["old_exec"]
        ):
            previous = claimed_at.get(wf)
            if row["old"] == "PENDING" and previous is not None:
                takeovers += 1
                check_takeover(run, row, previous, violations)
            claimed_at[wf] = (row["at"], row["new_ex"] or "")
        elif row["old"] == "PENDING" and row["new"] == "ENQUEUED":
            previous = claimed_at.pop(wf, None)
            if previous is not None:
                takeovers += 1
                check_takeover(run, row, previous, violations)
        elif row["new"] in TERMINAL:
            claimed_at.pop(wf, None)
    stats["takeovers"] = takeovers

    # 10. The processes survived (only the harness's kills ended them).
    for exit_ in run.unexpected_exits:
        if exit_.get("startup_outage"):
            continue  # reported, not a violation: see Harness.died_starting_in_outage
        violations.append(
            Violation(
                "processes survive database restarts",
                f"{exit_['name']} (pid {exit_['pid']}) exited by itself with code "
                f"{exit_['code']} at {exit_['t']:.3f}; log: {exit_['log']}",
                [],
            )
        )

    stats.update(recovery_figures(data, run))
    stats["executions"] = sum(1 for marker in data.markers if marker["k"] == "body")
    return violations, stats


def life_of(run: Run, executor: str, moment: float) -> list[Any] | None:
    """The process life of `executor` that was running at `moment`."""
    for life in run.lives.get(executor, []):
        if life[1] <= moment and (life[2] is None or moment < life[2]):
            return life
    return None


def check_takeover(
    run: Run, row: dict[str, Any], previous: tuple[float, str], violations: list[Violation]
) -> None:
    """A takeover (a PENDING workflow given a new execution, or put back on its queue) is right
    only if the process that was running it had died by then."""
    claimed, executor = previous
    if executor not in run.lives:
        return  # not a process of ours
    life = life_of(run, executor, claimed)
    if life is None or (life[2] is not None and life[2] <= row["at"]):
        return
    taker = row["new_ex"] or "its queue (ENQUEUED)"
    violations.append(
        Violation(
            "workflows are only taken from dead executors",
            f"{row['wf']} was taken from {executor} (pid {life[0]}, alive from "
            f"{life[1]:.3f} to {'the end' if life[2] is None else f'{life[2]:.3f}'}) by {taker}"
            f" at {row['at']:.3f}",
            [row["wf"]],
        )
    )


def recovery_figures(data: Data, run: Run) -> dict[str, Any]:
    """Per kill: takeover and first progress of the workflows the killed worker held.

    - held: the workflows PENDING on the killed worker's executor id right after it died;
    - taken over: the first audit row after the kill that moves a held workflow to a new
      execution, or back to ENQUEUED (a queued one);
    - progress: the first checkpoint (operation output, or the final status) a held workflow
      records after it was taken over;
    - recovery time of a kill: from the SIGKILL to the first progress of any held workflow;
      "all held" is to the last of them (it includes what they then wait for: sleeps, children).
    """
    audit_by_wf: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in data.audit:
        audit_by_wf[row["wf"]].append(row)
    ops_by_wf: dict[str, list[float]] = defaultdict(list)
    for op in data.ops.values():
        ops_by_wf[op["wf"]].append(op["at"])
    firsts, alls, takeovers = [], [], []
    unrecovered = 0
    per_kill = []
    for kill in run.kills:
        moment = kill["t_kill"]
        progress_times, takeover_times = [], []
        for wf in kill["held"]:
            rows = audit_by_wf.get(wf, [])
            before = [row for row in rows if row["at"] <= moment]
            execution = before[-1]["new_exec"] if before else None
            taken = next(
                (
                    row
                    for row in rows
                    if row["at"] > moment
                    and (row["new"] == "ENQUEUED" or row["new_exec"] != execution)
                ),
                None,
            )
            if taken is None:
                continue
            takeover_times.append(taken["at"])
            candidates = [at for at in ops_by_wf.get(wf, []) if at > taken["at"]]
            candidates += [
                row["at"] for row in rows if row["at"] > taken["at"] and row["new"] in TERMINAL
            ]
            if candidates:
                progress_times.append(min(candidates))
        entry = {
            "slot": kill["slot"],
            "t_kill": moment,
            "held": len(kill["held"]),
            "restart_after": kill["restart_after"],
            "takeover_s": min(takeover_times) - moment if takeover_times else None,
            "first_progress_s": min(progress_times) - moment if progress_times else None,
            "all_progressed_s": (
                max(progress_times) - moment
                if progress_times and len(progress_times) == len(kill["held"])
                else None
            ),
        }
        per_kill.append(entry)
        if not kill["held"]:
            continue
        if entry["takeover_s"] is not None:
            takeovers.append(entry["takeover_s"])
        if entry["first_progress_s"] is not None:
            firsts.append(entry["first_progress_s"])
        else:
            unrecovered += 1
        if entry["all_progressed_s"] is not None:
            alls.append(entry["all_progressed_s"])
    restarts = []
    for restart in run.db_restarts:
        after = [op["at"] for op in data.ops.values() if op["at"] > restart["t_up"]]
        restart["first_checkpoint_after_s"] = min(after) - restart["t_up"] if after else None
        restarts.append(restart)
    return {
        "kills": len(run.kills),
        "kills_holding_work": sum(1 for kill in run.kills if kill["held"]),
        "kills_not_recovered": unrecovered,
        "recovery_first_progress_s": firsts,
        "recovery_all_held_s": alls,
        "takeover_s": takeovers,
        "per_kill": per_kill,
        "db_restarts": restarts,
    }


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Unavailable|Exit|Interrupt)\b")


def thread_deaths(log_dir: Path) -> list[Violation]:
    """Engine threads that died of an exception (Python prints "Exception in thread NAME")."""
    found = []
    for path in sorted(log_dir.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()
        for index, line in enumerate(lines):
            if line.startswith("Exception in thread "):
                # The exception that ended the thread: the first "Type: message" line after the
                # thread's own frames (other threads' log lines may be interleaved).
                error = "?"
                window = lines[index + 1 : index + 300]
                begin = next(
                    (i for i, text in enumerate(window) if "_bootstrap_inner" in text), None
                )
                for candidate in window[begin or 0 :] if begin is not None else []:
                    if EXCEPTION_LINE.match(candidate):
                        error = candidate
                        break
                found.append(
                    Violation(
                        "engine threads survive database restarts",
                        f"{path.name}: {line.strip()} {error.strip()[:160]}",
                    )
                )
    return found


def log_counts(log_dir: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for path in log_dir.glob("*.log"):
        text = path.read_text(errors="replace")
        for label, pattern in LOG_PATTERNS.items():
            if label == "queued workflows ended by an exception":
                counts[label] += sum(
                    1 for line in text.splitlines() if pattern in line and "ms: SUCCESS" not in line
                )
            else:
                counts[label] += text.count(pattern)
    return dict(counts)
