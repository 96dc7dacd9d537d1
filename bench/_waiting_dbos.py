"""Side process of ``waiting.py``: DBOS Transact for Python (``dbos==3.4.0``), launched in this
process, which runs every workflow started here (one executor thread per running workflow:
DBOS's executor has no thread limit by default).

Run by ``waiting.py`` with the ``.venv-dbos`` interpreter; see that script for usage.
"""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import version

from _common import base_meta, emit, pg_settings, reset_database
from _waiting_common import Monitor, Queries, WaitingWorkflows, add_args, measure
from dbos import DBOS

QUERIES = Queries(
    waiting="SELECT count(*) FROM dbos.operation_outputs WHERE function_name = 'DBOS.sleep'",
    statuses="SELECT status, count(*) FROM dbos.workflow_status GROUP BY status",
    last_success=(
        "SELECT max(updated_at) / 1000.0 FROM dbos.workflow_status WHERE status = 'SUCCESS'"
    ),
    operations="SELECT count(*) FROM dbos.operation_outputs",
)


WORKFLOWS = WaitingWorkflows(DBOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--db", required=True)
    add_args(ap)
    args = ap.parse_args()
    reset_database(args.db)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "bench-waiting",
            "system_database_url": args.db,
            "application_version": "bench-waiting-1",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    monitor = Monitor(args.db, QUERIES)
    try:
        result = measure(DBOS, WORKFLOWS.wait_for_message, WORKFLOWS.wait_for_time, monitor, args)
        meta = {
            **base_meta(),
            "dbos": version("dbos"),
            "sqlalchemy": version("sqlalchemy"),
            "psycopg": version("psycopg"),
            "pg_settings": pg_settings(args.db),
        }
        # Before destroying: workflows still running after a stall may hold it up.
        emit({"meta": meta, "waiting": result})
    finally:
        DBOS.destroy()
        monitor.close()


if __name__ == "__main__":
    main()
