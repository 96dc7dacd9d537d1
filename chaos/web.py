"""The load generator of a chaos run: a Django process, like a web process, that follows the plan.

    python -m chaos.web --plan RUN/plan.json --out RUN/web.jsonl --start EPOCH

At each job's time it enqueues the workflow (or starts it here, with DBOS.start_workflow: those
run in this process), under the planned id (SetWorkflowID), and sends the planned external
messages with DBOS.send. It must survive the database restarts like any web process: a call that
fails on a database error is retried with the same id, after Django's connection is tidied (as a
request's end would). A message whose send failed is first looked for, then sent again only if
it is not there, so that each planned message exists exactly once.

Every outcome is a line of --out: started (with its attempts and the errors met), sent, gave_up,
and "done" when the plan is through. Then the process stays up (the workflows it started run
here) until SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from typing import Any

GIVE_UP_AFTER_S = 120.0
RETRY_PAUSE_S = 0.25


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--start", type=float, required=True, help="epoch of the plan's time 0")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import close_old_connections

    from chaos import plan as plan_module
    from chaos.chaos_app.workflows import QUEUES, WORKFLOWS
    from django_dbos import DBOS, SetWorkflowID
    from django_dbos.errors import DBOSNonExistentWorkflowError
    from django_dbos.models import Notification

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(args.plan) as file:
        plan = json.load(file)
    out = open(args.out, "a", buffering=1)  # noqa: SIM115  (open for the process's life)

    def log(**record: Any) -> None:
        record["t"] = time.time()
        out.write(json.dumps(record) + "\n")

    def retrying(call: Any) -> tuple[bool, int, list[str], list[str]]:
        """Call until it returns True: (succeeded, attempts, errors met, the errors met that are
        not Exceptions, which a web framework's error handling would not catch)."""
        errors: list[str] = []
        base_errors: list[str] = []
        give_up = time.monotonic() + GIVE_UP_AFTER_S
        attempts = 0
        while not stop.is_set():
            attempts += 1
            try:
                if call():
                    return True, attempts, errors, base_errors
            except DBOSNonExistentWorkflowError as exc:  # a message's receiver is not there yet
                errors.append(f"{type(exc).__name__}")
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:
                name = f"{type(exc).__module__}.{type(exc).__name__}"
                errors.append(f"{name}: {str(exc).strip()[:200]}")
                if not isinstance(exc, Exception):
                    base_errors.append(name)
            with contextlib.suppress(Exception):
                close_old_connections()
            if time.monotonic() > give_up:
                break
            time.sleep(RETRY_PAUSE_S)
        return False, attempts, errors, base_errors

    def start(job: dict[str, Any]) -> bool:
        func = WORKFLOWS[job["workflow"]]
        with SetWorkflowID(job["id"]):
            if job["via"] == "start":
                DBOS.start_workflow(func, *job["args"])
            else:
                QUEUES[job["queue"]].enqueue(func, *job["args"])
        return True

    def send(job: dict[str, Any]) -> bool:
        already = Notification.objects.filter(
            destination_id=job["dest"],
            topic=plan_module.CHAT_TOPIC,
            message__contains=json.dumps(job["mid"]),
        ).exists()
        if not already:
            DBOS.send(job["dest"], {"mid": job["mid"]}, topic=plan_module.CHAT_TOPIC)
        return True

    for job in plan["jobs"]:
        due = args.start + job["at"]
        while not stop.is_set() and time.time() < due:
            stop.wait(min(0.5, due - time.time()))
        if stop.is_set():
            break
        late = time.time() - due
        if job.get("send"):
            ok, attempts, errors, base = retrying(lambda job=job: send(job))
            log(
                k="sent" if ok else "gave_up",
                mid=job["mid"],
                dest=job["dest"],
                call="DBOS.send",
                attempts=attempts,
                errors=errors,
                base_errors=base,
                late=round(late, 3),
            )
        else:
            ok, attempts, errors, base = retrying(lambda job=job: start(job))
            log(
                k="started" if ok else "gave_up",
                id=job["id"],
                via=job["via"],
                call="DBOS.start_workflow" if job["via"] == "start" else "Queue.enqueue",
                attempts=attempts,
                errors=errors,
                base_errors=base,
                late=round(late, 3),
            )
    log(k="done")
    print(f"load generator {os.getpid()}: plan done", flush=True)
    while not stop.is_set():
        stop.wait(1.0)
    DBOS.shutdown(timeout_seconds=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
