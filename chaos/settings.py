"""Settings of the chaos run's processes: the test project's, plus the chaos workflows.

Workers and the load generator run with DJANGO_SETTINGS_MODULE=chaos.settings (and the
repository on PYTHONPATH); DATABASE_URL points at the chaos database.
"""

from testproject.settings import *  # noqa: F403
from testproject.settings import DBOS, INSTALLED_APPS, env

INSTALLED_APPS = [*INSTALLED_APPS, "chaos.chaos_app"]

DBOS = {
    **DBOS,
    "APPLICATION_VERSION": env("DBOS_APPLICATION_VERSION", default="chaos-1"),
    "WORKFLOW_THREADS": env.int("DBOS_WORKFLOW_THREADS", default=32),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_dbos": {"handlers": ["console"], "level": env("DBOS_LOG_LEVEL", default="INFO")},
        "chaos": {"handlers": ["console"], "level": "INFO"},
    },
}
