"""Side process of ``core.py``: django-dbos on the test project's settings.

Run by ``core.py`` with the ``.venv`` interpreter, ``PYTHONPATH`` set to the repository root
and ``DJANGO_SETTINGS_MODULE``/``DATABASE_URL`` in the environment; see ``core.py`` for usage.
"""

from __future__ import annotations

import argparse
import os
from importlib.metadata import version

import django
from _common import base_meta, emit, measure_inline, measure_start, reset_database

# Settings come from the environment (DJANGO_SETTINGS_MODULE, DATABASE_URL); django-dbos can
# only be imported once the app registry is ready. Setting up does not connect yet.
django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from django_dbos import DBOS  # noqa: E402


@DBOS.step()
def trivial_step(i: int) -> int:
    return i


@DBOS.workflow()
def wf_steps(n: int) -> int:
    return sum(trivial_step(i) for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--start-n", type=int, default=1000)
    ap.add_argument("--start-steps", type=int, default=3)
    args = ap.parse_args()

    reset_database(os.environ["DATABASE_URL"])
    call_command("migrate", verbosity=0)

    try:
        inline = measure_inline(wf_steps, args.pairs, args.steps)
        started = measure_start(
            lambda n: DBOS.start_workflow(wf_steps, n), args.start_n, args.start_steps
        )
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
    emit({"meta": meta, "inline": inline, "start_workflow": started})


if __name__ == "__main__":
    main()
