"""The seeded plan of a chaos run: what the load generator starts, and when the chaos strikes.

Everything random in a run is drawn here from `random.Random(seed)`, before anything runs: the
workflows (kinds, ids, arguments, arrival times), the kills (when, which worker, how long it stays
dead), the database restarts (when, how long the server stays down) and the backend
terminations. Two runs with one seed and the same options get the same plan (`plan_digest`); only
the operating system's timing differs. Also here: the output each workflow must end with.

Standard library only: the harness and the workflows (in Django processes) both import it.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

# The queues of chaos/chaos_app/workflows.py, and their limits (checked at the end).
MAIN_QUEUE = "chaos-main"
MAIN_WORKER_CONCURRENCY = 3
LIMITED_QUEUE = "chaos-limited"
LIMITED_CONCURRENCY = 2
RATED_QUEUE = "chaos-rated"
RATE_LIMIT = 4
RATE_PERIOD_S = 1.0

CHAT_TOPIC = "chat"
# A worker's liveness, as its environment sets it (DBOS_HEARTBEAT_SECONDS, ..._TIMEOUT_...).
HEARTBEAT_S = 0.5
EXECUTOR_TIMEOUT_S = 8.0

# The shares of the kinds of root workflows, and where they run.
KINDS = [
    ("steps", "enqueue", 30),
    ("steps", "start", 10),  # DBOS.start_workflow in the load generator: runs there
    ("parent", "enqueue", 14),
    ("parent", "start", 4),
    ("chat", "enqueue", 14),
    ("limited", "enqueue", 14),  # a burst of 2..5 on the queue with a global concurrency
    ("rated", "enqueue", 14),  # a burst of 3..8 on the rate-limited queue
]


def steps_spec(rng: random.Random, max_ops: int = 7) -> list[list[Any]]:
    """Operations of a `wf_steps`: ["step", failures before success, hold s], ["txn", amount],
    ["sleep", s] (a `wf_steps` runs one step right after each sleep)."""
    ops: list[list[Any]] = []
    for _ in range(rng.randint(2, max_ops)):
        kind = rng.choices(["step", "txn", "sleep"], [5, 3, 2])[0]
        if kind == "step":
            failures = rng.choices([0, 1, 2], [6, 2, 1])[0]
            ops.append(["step", failures, round(rng.uniform(0.0, 0.15), 3)])
        elif kind == "txn":
            ops.append(["txn", rng.randint(1, 100)])
        else:
            ops.append(["sleep", round(rng.uniform(0.2, 3.0), 3)])
    return ops


def expect_steps(spec: list[list[Any]]) -> dict[str, int]:
    txn = sum(op[1] for op in spec if op[0] == "txn")
    steps = sum(1 for op in spec if op[0] in ("step", "sleep"))
    return {"txn": txn, "steps": steps}


def hold_ms(rng: random.Random, low: float, high: float) -> int:
    return int(rng.uniform(low, high) * 1000)


def parent_spec(rng: random.Random) -> dict[str, Any]:
    return {
        "children": [steps_spec(rng, max_ops=4) for _ in range(rng.randint(1, 2))],
        "limited": [hold_ms(rng, 0.05, 0.3) for _ in range(rng.randint(0, 1))],
        "rated": [hold_ms(rng, 0.0, 0.1) for _ in range(rng.randint(0, 1))],
    }


def expect_parent(spec: dict[str, Any]) -> dict[str, Any]:
    children = [expect_steps(child) for child in spec["children"]]
    total = sum(child["txn"] for child in children) + sum(spec["limited"]) + sum(spec["rated"])
    return {
        "children": children,
        "limited": list(spec["limited"]),
        "rated": list(spec["rated"]),
        "total": total,
    }


def receiver_id(chat_id: str) -> str:
    """The receiver is the chat's first operation, so its id is `{chat}-1` (the default)."""
    return f"{chat_id}-1"


def expect_chat(wf_mids: list[str], ext_mids: list[str]) -> dict[str, Any]:
    every = sorted(wf_mids + ext_mids)
    return {"got": every, "event": every, "sent": len(wf_mids)}


def make_plan(
    *,
    seed: int,
    minutes: float,
    workers: int,
    db_restarts: int,
    terminations: int,
    rate: float,
    kill_every: tuple[float, float] = (3.0, 6.0),
    max_downtime: float = 3.0,
) -> dict[str, Any]:
    """The whole run, as JSON-ready data. Times are seconds from the start of the load."""
    rng = random.Random(seed)
    duration = minutes * 60.0
    jobs: list[dict[str, Any]] = []
    number = 0

    def new_id(kind: str) -> str:
        nonlocal number
        number += 1
        return f"s{seed}-{number:05d}-{kind}"

    at = 0.5
    kinds = [(kind, via) for kind, via, _ in KINDS]
    weights = [weight for _, _, weight in KINDS]
    while at < duration - 2.0:
        kind, via = rng.choices(kinds, weights)[0]
        if kind == "steps":
            spec = steps_spec(rng)
            jobs.append(
                {
                    "at": round(at, 3),
                    "id": new_id("steps"),
                    "workflow": "wf_steps",
                    "via": via,
                    "queue": MAIN_QUEUE,
                    "args": [spec],
                    "expect": expect_steps(spec),
                }
            )
        elif kind == "parent":
            spec = parent_spec(rng)
            jobs.append(
                {
                    "at": round(at, 3),
                    "id": new_id("parent"),
                    "workflow": "wf_parent",
                    "via": via,
                    "queue": MAIN_QUEUE,
                    "args": [spec],
                    "expect": expect_parent(spec),
                }
            )
        elif kind == "chat":
            chat_id = new_id("chat")
            wf_mids = [f"{chat_id}:w{k}" for k in range(rng.randint(1, 4))]
            ext_mids = [f"{chat_id}:x{k}" for k in range(rng.randint(0, 2))]
            jobs.append(
                {
                    "at": round(at, 3),
                    "id": chat_id,
                    "workflow": "wf_chat",
                    "via": via,
                    "queue": MAIN_QUEUE,
                    "args": [wf_mids, ext_mids],
                    "expect": expect_chat(wf_mids, ext_mids),
                }
            )
            for mid in ext_mids:
                jobs.append(
                    {
                        "at": round(at + rng.uniform(0.2, 4.0), 3),
                        "send": True,
                        "dest": receiver_id(chat_id),
                        "mid": mid,
                    }
                )
        else:
            queue, count, low, high = (
                (LIMITED_QUEUE, rng.randint(2, 5), 0.05, 0.4)
                if kind == "limited"
                else (RATED_QUEUE, rng.randint(3, 8), 0.0, 0.1)
            )
            for _ in range(count):
                hold = hold_ms(rng, low, high)
                jobs.append(
                    {
                        "at": round(at, 3),
                        "id": new_id(kind),
                        "workflow": "wf_hold",
                        "via": via,
                        "queue": queue,
                        "args": [hold],
                        "expect": hold,
                    }
                )
        at += rng.expovariate(rate)
    jobs.sort(key=lambda job: job["at"])  # stable: a burst keeps its order

    chaos: list[dict[str, Any]] = []
    first, last = 5.0, max(6.0, duration - 3.0)
    at = first + rng.uniform(*kill_every) / 2
    while at < last:
        delayed = rng.random() < 0.25  # long enough for another worker to take over
        chaos.append(
            {
                "at": round(at, 3),
                "kind": "kill",
                "slot": rng.randrange(workers),
                "restart_after": round(
                    EXECUTOR_TIMEOUT_S + rng.uniform(1.0, 3.0) if delayed else rng.uniform(0, 0.5),
                    3,
                ),
            }
        )
        at += rng.uniform(*kill_every)
    for count, kind in ((db_restarts, "db_restart"), (terminations, "terminate")):
        span = (last - first) / max(count, 1)
        for k in range(count):
            event: dict[str, Any] = {
                "at": round(first + span * k + rng.uniform(0.2, 0.8) * span, 3),
                "kind": kind,
            }
            if kind == "db_restart":
                event["downtime"] = round(rng.uniform(0.0, max_downtime), 3)
            chaos.append(event)
    chaos.sort(key=lambda event: event["at"])

    plan = {
        "seed": seed,
        "minutes": minutes,
        "workers": workers,
        "rate": rate,
        "duration": duration,
        "heartbeat_s": HEARTBEAT_S,
        "executor_timeout_s": EXECUTOR_TIMEOUT_S,
        "jobs": jobs,
        "chaos": chaos,
    }
    plan["digest"] = plan_digest(plan)
    return plan


def plan_digest(plan: dict[str, Any]) -> str:
    body = {key: value for key, value in plan.items() if key != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
