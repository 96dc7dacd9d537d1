"""Side process of ``core.py``: DBOS Transact for Python (``dbos==3.4.0``), in-process.

Run by ``core.py`` with the ``.venv-dbos`` interpreter; see ``core.py`` for usage.
"""

from __future__ import annotations

import argparse
import logging
from importlib.metadata import version

from _common import base_meta, emit, measure_inline, measure_start, reset_database
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
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--start-n", type=int, default=1000)
    ap.add_argument("--start-steps", type=int, default=3)
    args = ap.parse_args()

    reset_database(args.db)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(
        config={
            "name": "bench-core",
            "system_database_url": args.db,
            "application_version": "bench-core-1",
            "log_level": "WARNING",
        }
    )
    DBOS.launch()
    try:
        inline = measure_inline(wf_steps, args.pairs, args.steps)
        started = measure_start(
            lambda n: DBOS.start_workflow(wf_steps, n), args.start_n, args.start_steps
        )
    finally:
        DBOS.destroy()
    meta = {
        **base_meta(),
        "dbos": version("dbos"),
        "sqlalchemy": version("sqlalchemy"),
        "psycopg": version("psycopg"),
    }
    emit({"meta": meta, "inline": inline, "start_workflow": started})


if __name__ == "__main__":
    main()
