"""Settings of the tasks_bench.py sides: the test project's, with the side's task backend.

BENCH_TASKS_SIDE=dbos keeps DBOSTaskBackend; BENCH_TASKS_SIDE=db switches to django-tasks-db's
DatabaseBackend (and installs its app).
"""

import os

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

if os.environ.get("BENCH_TASKS_SIDE") == "db":
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
