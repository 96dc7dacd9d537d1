"""The workflows of ``queues.py`` and ``scheduler.py`` for django-dbos (autodiscovered).

The same code, ``_workers.BenchWorkflows``, declares them for DBOS in ``_dbos_side.py``. The
code schedule is set only where ``BENCH_CODE_SCHEDULE`` names a cron expression: in the worker
of the ``@DBOS.scheduled`` side of ``scheduler.py``, not in every process with these settings.
"""

import os
from collections.abc import Sequence
from typing import Any

from _workers import QUEUE, BenchWorkflows, QueueSide, WorkerProcess, WorkflowTable, queue_suite

from django_dbos import DBOS, Queue, conf

WORKFLOWS = BenchWorkflows(DBOS)
BENCH_QUEUE = Queue(QUEUE)


def run_queue_suite(
    table: WorkflowTable, workers: Sequence[WorkerProcess], n: int, trials: int
) -> dict[str, Any]:
    """``queues.py``'s measurement of django-dbos: this process enqueues (it never
    dispatches), the ``workers`` run the workflows."""
    side = QueueSide(
        enqueue_one=lambda i: BENCH_QUEUE.enqueue(WORKFLOWS.one_step, i),
        enqueue_mark=lambda _queue: BENCH_QUEUE.enqueue(WORKFLOWS.mark_start),
        result=lambda handle: handle.get_result(),
        table=table,
        workers=workers,
    )
    # Dispatch is woken by NOTIFY; POLL_SECONDS is the safety net, the phase to randomize.
    return queue_suite(side, n, trials, float(conf.get("POLL_SECONDS")))


if cron := os.environ.get("BENCH_CODE_SCHEDULE"):
    DBOS.scheduled(cron)(WORKFLOWS.code_tick)


# ``upgrade.py``'s stranded workflows: ten recorded steps each, replayed and moved, never run.
@DBOS.step(name="bench_upgrade_step")
def upgrade_step(i: int, n: int) -> int:
    return i * 10 + n


@DBOS.workflow(name="bench_upgrade_ten_steps")
def upgrade_ten_steps(i: int) -> int:
    return sum(upgrade_step(i, n) for n in range(1, 11))
