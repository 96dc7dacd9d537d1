"""Settings of the django-dbos sides of ``queues.py``, ``scheduler.py`` and ``retention.py``:
the test project's, plus the ``_bench_app`` app, whose ``workflows`` module django-dbos
autodiscovers in the side process and in its ``rundbosworker`` subprocesses alike (they need
``bench/`` on PYTHONPATH).

``BENCH_ARCHIVE_DIR`` (``retention.py``'s archiving workers) adds a ``dbos-archive`` storage,
a ``FileSystemStorage`` in that directory, and makes it the retention policy's
``ARCHIVE_STORAGE``; the policy's ages and interval come from the test project's environment
variables (``DBOS_RETENTION_FINISHED_DAYS``, ``DBOS_RETENTION_INTERVAL_SECONDS``).
"""

import os

from testproject.settings import *  # noqa: F403
from testproject.settings import DBOS, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "_bench_app"]

if archive_dir := os.environ.get("BENCH_ARCHIVE_DIR"):
    STORAGES = {
        # Django's defaults, which a project that sets STORAGES must repeat.
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "dbos-archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": archive_dir},
        },
    }
    DBOS = {**DBOS, "RETENTION": {**DBOS["RETENTION"], "ARCHIVE_STORAGE": "dbos-archive"}}
