"""Side process of ``waiting.py``: django-dbos on the test project's settings, in one process
that is the worker (its workflow threads run everything started here).

Run by ``waiting.py`` with the ``.venv`` interpreter, ``PYTHONPATH`` set to the repository root
and ``DJANGO_SETTINGS_MODULE``/``DATABASE_URL`` in the environment; see that script for usage.
``DBOS_WORKFLOW_THREADS`` is left to the environment: the test project's default unless set.
"""

from __future__ import annotations

import argparse
import os
from importlib.metadata import version

import django
from _common import base_meta, emit, pg_settings, reset_database
from _waiting_common import Monitor, Queries, WaitingWorkflows, add_args, measure

# Settings come from the environment; django-dbos can only be imported once apps are ready.
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from django_dbos import DBOS  # noqa: E402
from django_dbos import conf as dbos_conf  # noqa: E402

QUERIES = Queries(
    waiting="SELECT count(*) FROM dbos_operation_output WHERE function_name = 'DBOS.sleep'",
    statuses="SELECT status, count(*) FROM dbos_workflow_status GROUP BY status",
    last_success=(
        "SELECT extract(epoch FROM max(updated_at)) FROM dbos_workflow_status "
        "WHERE status = 'SUCCESS'"
    ),
    operations="SELECT count(*) FROM dbos_operation_output",
)


WORKFLOWS = WaitingWorkflows(DBOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_args(ap)
    args = ap.parse_args()
    db_url = os.environ["DATABASE_URL"]
    reset_database(db_url)
    call_command("migrate", verbosity=0)
    monitor = Monitor(db_url, QUERIES)
    try:
        result = measure(DBOS, WORKFLOWS.wait_for_message, WORKFLOWS.wait_for_time, monitor, args)
        meta = {
            **base_meta(),
            "django": version("django"),
            "psycopg": version("psycopg"),
            "debug": settings.DEBUG,
            "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
            "conn_health_checks": settings.DATABASES["default"].get("CONN_HEALTH_CHECKS"),
            # Every DBOS setting in effect (WORKFLOW_THREADS, and the engine's others).
            "dbos_settings": {**dbos_conf.DEFAULTS, **dbos_conf.user_settings()},
            "pg_settings": pg_settings(db_url),
        }
        # Before shutting down: workflows still waiting after a stall may hold it up.
        emit({"meta": meta, "waiting": result})
    finally:
        DBOS.shutdown()
        connections.close_all()
        monitor.close()


if __name__ == "__main__":
    main()
