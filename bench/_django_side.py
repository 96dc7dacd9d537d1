"""Side process of ``core.py`` and ``messaging.py``: django-dbos on the test project's settings.

Run by the orchestrators with the ``.venv`` interpreter, ``PYTHONPATH`` set to the repository
root, ``DJANGO_SETTINGS_MODULE``/``DATABASE_URL`` in the environment and ``--suite core`` (the
default) or ``--suite messaging``; see ``core.py`` and ``messaging.py`` for usage.
"""

from __future__ import annotations

import argparse
import os
from importlib.metadata import version
from typing import Any

import django
from _common import (
    Messaging,
    base_meta,
    emit,
    measure_inline,
    measure_start,
    pg_settings,
    reset_database,
)

# Settings come from the environment (DJANGO_SETTINGS_MODULE, DATABASE_URL); django-dbos can
# only be imported once the app registry is ready. Setting up does not connect yet.
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

import django_dbos  # noqa: E402
from django_dbos import DBOS  # noqa: E402
from django_dbos import conf as dbos_conf  # noqa: E402


@DBOS.step()
def trivial_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_steps(n: int) -> int:
    return sum(trivial_step(i) for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("core", "messaging"), default="core")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--start-n", type=int, default=1000)
    ap.add_argument("--start-steps", type=int, default=3)
    ap.add_argument("--trials", type=int, default=50, help="messaging trials of each kind")
    args = ap.parse_args()

    db_url = os.environ["DATABASE_URL"]
    reset_database(db_url)
    call_command("migrate", verbosity=0)

    result: dict[str, Any]
    try:
        if args.suite == "messaging":
            result = {"messaging": Messaging(DBOS).run(args.trials)}
        else:
            result = {
                "inline": measure_inline(wf_steps, args.pairs, args.steps),
                "start_workflow": measure_start(
                    lambda n: DBOS.start_workflow(wf_steps, n), args.start_n, args.start_steps
                ),
            }
    finally:
        DBOS.shutdown()
        connections.close_all()
    meta = {
        **base_meta(),
        "django": version("django"),
        "psycopg": version("psycopg"),
        "debug": settings.DEBUG,
        "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
        "workflow_threads": settings.DBOS.get("WORKFLOW_THREADS"),
    }
    if args.suite == "messaging":
        # The notifier's safety net: a waiter re-checks the database at least this often.
        meta["poll_seconds"] = dbos_conf.get("POLL_SECONDS")
        meta["django_dbos_from"] = os.path.dirname(django_dbos.__file__)
        meta["pg_settings"] = pg_settings(db_url)
    emit({"meta": meta, **result})


if __name__ == "__main__":
    main()
