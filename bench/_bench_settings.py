"""Settings of the django-dbos sides of ``queues.py`` and ``scheduler.py``: the test project's,
plus the ``_bench_app`` app, whose ``workflows`` module django-dbos autodiscovers in the side
process and in its ``rundbosworker`` subprocesses alike (they need ``bench/`` on PYTHONPATH).
"""

from testproject.settings import *  # noqa: F403
from testproject.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "_bench_app"]
