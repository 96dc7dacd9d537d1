"""Side process of ``core.py`` and ``messaging.py``: DBOS Transact for Python
(``dbos==3.4.0``), in-process.

Run by the orchestrators with the ``.venv-dbos`` interpreter and ``--suite core`` (the
default) or ``--suite messaging``; see ``core.py`` and ``messaging.py`` for usage.
"""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import version
from typing import Any

from _common import (
    Messaging,
    base_meta,
    emit,
    measure_inline,
    measure_start,
    pg_settings,
    reset_database,
)
from dbos import DBOS


@DBOS.step()
def trivial_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_steps(n: int) -> int:
    return sum(trivial_step(i) for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--suite", choices=("core", "messaging"), default="core")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--start-n", type=int, default=1000)
    ap.add_argument("--start-steps", type=int, default=3)
    ap.add_argument("--trials", type=int, default=50, help="messaging trials of each kind")
    args = ap.parse_args()

    # Workflows are declared before DBOS.launch().
    messaging = Messaging(DBOS) if args.suite == "messaging" else None
    reset_database(args.db)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": f"bench-{args.suite}",
            "system_database_url": args.db,
            "application_version": f"bench-{args.suite}-1",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    result: dict[str, Any]
    try:
        if messaging is not None:
            result = {"messaging": messaging.run(args.trials)}
        else:
            result = {
                "inline": measure_inline(wf_steps, args.pairs, args.steps),
                "start_workflow": measure_start(
                    lambda n: DBOS.start_workflow(wf_steps, n), args.start_n, args.start_steps
                ),
            }
    finally:
        DBOS.destroy()
    meta = {
        **base_meta(),
        "dbos": version("dbos"),
        "sqlalchemy": version("sqlalchemy"),
        "psycopg": version("psycopg"),
    }
    if messaging is not None:
        meta["pg_settings"] = pg_settings(args.db)
    emit({"meta": meta, **result})


if __name__ == "__main__":
    main()
