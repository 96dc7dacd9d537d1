"""The workflows of ``queues.py`` and ``scheduler.py`` for django-dbos (autodiscovered).

The same code, ``_workers.BenchWorkflows``, declares them for DBOS in ``_dbos_side.py``. The
code schedule is set only where ``BENCH_CODE_SCHEDULE`` names a cron expression: in the worker
of the ``@DBOS.scheduled`` side of ``scheduler.py``, not in every process with these settings.
"""

import os

from _workers import QUEUE, BenchWorkflows

from django_dbos import DBOS, Queue

WORKFLOWS = BenchWorkflows(DBOS)
BENCH_QUEUE = Queue(QUEUE)

if cron := os.environ.get("BENCH_CODE_SCHEDULE"):
    DBOS.scheduled(cron)(WORKFLOWS.code_tick)
