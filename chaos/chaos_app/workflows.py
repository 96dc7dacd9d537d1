"""The workflows of the chaos run (autodiscovered by django-dbos in every chaos process).

Between them they use every primitive: steps with retries, transactions writing app rows, child
workflows (started and enqueued), send/recv, set_event/get_event, durable sleep, and three queues
(per-worker concurrency, global concurrency, rate limit). Their outputs are deterministic, so the
harness knows what each must return (chaos/plan.py).

Side effects the checks need, written to an append-only file per process (CHAOS_MARKERS_DIR):

- a "step" line at the end of every attempt of a step, with the step's identity (workflow id,
  function id) and when its body started and ended: a step whose body starts after its output
  was checkpointed ran again, which must never happen;
- a "body" line every time a workflow body starts (first run, recovery, dequeue).

Each line is one os.write on an O_APPEND descriptor: a kill -9 cannot leave half a line, and
what was written survives the process.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any

from chaos import plan
from chaos.chaos_app.models import LedgerRow
from django_dbos import DBOS, Queue

main_queue = Queue(plan.MAIN_QUEUE, worker_concurrency=plan.MAIN_WORKER_CONCURRENCY)
limited_queue = Queue(plan.LIMITED_QUEUE, concurrency=plan.LIMITED_CONCURRENCY)
rated_queue = Queue(
    plan.RATED_QUEUE, limiter={"limit": plan.RATE_LIMIT, "period": plan.RATE_PERIOD_S}
)
QUEUES = {queue.name: queue for queue in (main_queue, limited_queue, rated_queue)}

RECV_TIMEOUT_S = 30.0
RECV_MAX_TIMEOUTS = 20
EVENT_TIMEOUT_S = 600.0


class ChaosFlake(Exception):
    """A planned failure of a step attempt (the step's retries take it)."""


_marker_lock = threading.Lock()
_marker_fd: int | None = None
_marker_pid: int | None = None
_attempts: Counter[tuple[str, int]] = Counter()


def mark(record: dict[str, Any]) -> None:
    """Append one line to this process's marker file (nothing when CHAOS_MARKERS_DIR is unset)."""
    global _marker_fd, _marker_pid
    directory = os.environ.get("CHAOS_MARKERS_DIR")
    if not directory:
        return
    pid = os.getpid()
    with _marker_lock:
        if _marker_fd is None or _marker_pid != pid:
            path = os.path.join(directory, f"markers-{pid}.jsonl")
            _marker_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            _marker_pid = pid
        fd = _marker_fd
    record.update(pid=pid, ex=os.environ.get("DBOS_EXECUTOR_ID", ""))
    os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def _body() -> None:
    mark({"k": "body", "wf": DBOS.workflow_id, "t": time.time()})


def _step_body(name: str, failures: int, hold_s: float) -> int:
    began = time.time()
    workflow_id, function_id = DBOS.workflow_id, DBOS.step_id
    with _marker_lock:
        _attempts[(workflow_id, function_id)] += 1
        attempt = _attempts[(workflow_id, function_id)]
    if hold_s:
        time.sleep(hold_s)
    ok = attempt > failures
    mark(
        {
            "k": "step",
            "name": name,
            "wf": workflow_id,
            "fid": function_id,
            "t0": began,
            "t1": time.time(),
            "attempt": attempt,
            "ok": ok,
        }
    )
    if not ok:
        raise ChaosFlake(f"planned failure {attempt} of {failures}")
    return function_id


@DBOS.step(
    name="chaos.work", retries_allowed=True, max_attempts=4, interval_seconds=0.05, backoff_rate=1.5
)
def work(failures: int, hold_s: float) -> int:
    return _step_body("chaos.work", failures, hold_s)


@DBOS.step(name="chaos.wake")
def wake() -> int:
    """The step right after each durable sleep: its body must never start before the wake-up
    time the sleep recorded."""
    return _step_body("chaos.wake", 0, 0.0)


@DBOS.step(name="chaos.hold")
def hold(hold_ms: int) -> int:
    """The body of a queued `wf_hold`: its start and end give the queue's real concurrency."""
    _step_body("chaos.hold", 0, hold_ms / 1000)
    return hold_ms


@DBOS.transaction(name="chaos.book")
def book(amount: int) -> int:
    """One ledger row per (workflow, function id): checked to exist exactly once."""
    LedgerRow.objects.create(
        workflow_id=DBOS.workflow_id, function_id=DBOS.step_id, amount=amount, pid=os.getpid()
    )
    return amount


@DBOS.workflow(name="chaos.wf_steps")
def wf_steps(spec: list[list[Any]]) -> dict[str, int]:
    _body()
    txn = steps = 0
    for op in spec:
        if op[0] == "step":
            work(op[1], op[2])
            steps += 1
        elif op[0] == "txn":
            txn += book(op[1])
        else:
            DBOS.sleep(op[1])
            wake()
            steps += 1
    return {"txn": txn, "steps": steps}


@DBOS.workflow(name="chaos.wf_hold")
def wf_hold(hold_ms: int) -> int:
    _body()
    return hold(hold_ms)


@DBOS.workflow(name="chaos.wf_parent")
def wf_parent(spec: dict[str, Any]) -> dict[str, Any]:
    """Children started here (they run in this process) and enqueued on the limited queues."""
    _body()
    started = [DBOS.start_workflow(wf_steps, child) for child in spec["children"]]
    limited = [limited_queue.enqueue(wf_hold, ms) for ms in spec["limited"]]
    rated = [rated_queue.enqueue(wf_hold, ms) for ms in spec["rated"]]
    children = [handle.get_result() for handle in started]
    limited_results = [handle.get_result() for handle in limited]
    rated_results = [handle.get_result() for handle in rated]
    total = sum(child["txn"] for child in children) + sum(limited_results) + sum(rated_results)
    book(total)
    return {
        "children": children,
        "limited": limited_results,
        "rated": rated_results,
        "total": total,
    }


@DBOS.workflow(name="chaos.wf_receiver")
def wf_receiver(count: int) -> list[str]:
    """Consume `count` messages (from a sender workflow and from the load generator)."""
    _body()
    DBOS.set_event("ready", True)
    got: list[str] = []
    timeouts = 0
    while len(got) < count and timeouts < RECV_MAX_TIMEOUTS:
        message = DBOS.recv(plan.CHAT_TOPIC, timeout_seconds=RECV_TIMEOUT_S)
        if message is None:
            timeouts += 1
            continue
        got.append(message["mid"])
    DBOS.set_event("done", sorted(got))
    return got


@DBOS.workflow(name="chaos.wf_sender")
def wf_sender(destination: str, mids: list[str]) -> int:
    _body()
    DBOS.get_event(destination, "ready", timeout_seconds=EVENT_TIMEOUT_S)
    for mid in mids:
        DBOS.send(destination, {"mid": mid}, topic=plan.CHAT_TOPIC)
        DBOS.sleep(0.05)
    return len(mids)


@DBOS.workflow(name="chaos.wf_reader")
def wf_reader(target: str) -> Any:
    _body()
    return DBOS.get_event(target, "done", timeout_seconds=EVENT_TIMEOUT_S)


@DBOS.workflow(name="chaos.wf_chat")
def wf_chat(wf_mids: list[str], ext_mids: list[str]) -> dict[str, Any]:
    """A receiver (the first operation, so its id is `{id}-1`), a sender, and an event reader."""
    _body()
    receiver = DBOS.start_workflow(wf_receiver, len(wf_mids) + len(ext_mids))
    sender = DBOS.start_workflow(wf_sender, receiver.workflow_id, wf_mids)
    reader = DBOS.start_workflow(wf_reader, receiver.workflow_id)
    got = receiver.get_result()
    sent = sender.get_result()
    event = reader.get_result()
    return {"got": sorted(got), "event": event, "sent": sent}


WORKFLOWS = {
    "wf_steps": wf_steps,
    "wf_hold": wf_hold,
    "wf_parent": wf_parent,
    "wf_chat": wf_chat,
}
