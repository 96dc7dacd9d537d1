"""Settings of the demo project, read from the environment with django-environ.

DATABASE_URL picks the database: a SQLite file by default, or PostgreSQL, for example
DATABASE_URL=postgres://postgres@127.0.0.1:5432/dbos_demo

On PostgreSQL the connections have Django's defaults, CONN_MAX_AGE=0 (a connection per request)
and CONN_HEALTH_CHECKS=False; both can be set from the environment, for example CONN_MAX_AGE=600.

On SQLite the project sets the OPTIONS that docs/getting-started.md recommends;
DJANGO_SQLITE_OPTIONS=none leaves them out, as `django-admin startproject` does (the tests run
workers that way to show they survive Django's plain SQLite).
"""

import copy
import importlib.util
import os
import tempfile
from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="django-dbos-demo-only-not-secret")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_dbos",
    "testproject.shop",
]
if django.VERSION < (6, 0) and importlib.util.find_spec("django_tasks"):
    # Django 5.2: the Tasks framework is the django-tasks backport (a dev dependency).
    INSTALLED_APPS.append("django_tasks")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR.parent / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    if env("DJANGO_SQLITE_OPTIONS", default="") != "none":
        DATABASES["default"]["OPTIONS"] = {
            # Writers queue for the lock instead of failing with "database is locked".
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    # A file, not memory, so that worker processes started by the tests open the same database;
    # one per test run, so that runs side by side do not share it.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"django_dbos_test_{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)
    # Django's setting for a pooler in transaction mode (processes that tests/test_pgbouncer.py
    # starts behind PgBouncer set it).
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env.bool(
        "DJANGO_TRANSACTION_POOLER", default=False
    )
    # Django's connection pool, for the processes tests/test_connection_pool.py starts.
    if env("DJANGO_DB_POOL_MAX_SIZE", default=""):
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": env.int("DJANGO_DB_POOL_MAX_SIZE"),
            "timeout": env.float("DJANGO_DB_POOL_TIMEOUT", default=30),
        }
    # The test database again, through the PgBouncer that tests/test_pgbouncer.py starts (it
    # sets the port); unused otherwise.
    DATABASES["pgbouncer"] = {
        **copy.deepcopy(DATABASES["default"]),
        "PORT": 6432,
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "TEST": {"MIRROR": "default"},
    }


def _beside(name: str) -> str:
    """The name of a second database next to `name`: db.sqlite3 -> db_system.sqlite3, shop ->
    shop_system."""
    path = Path(name)
    return str(path.with_name(f"{path.stem}_system{path.suffix}"))


# A second database, where DBOS_DATABASE=dbos_system puts the system tables (the tests of
# tests/test_system_database.py do, to check that nothing reads them from "default"). Named after
# the first, so that a process given a test database as DATABASE_URL (the tests' workers) finds
# the second test database beside it.
DATABASES["dbos_system"] = copy.deepcopy(DATABASES["default"])
DATABASES["dbos_system"]["NAME"] = _beside(DATABASES["default"]["NAME"])
if "TEST" in DATABASES["default"]:
    DATABASES["dbos_system"]["TEST"] = {"NAME": _beside(DATABASES["default"]["TEST"]["NAME"])}

DBOS = {
    "APP_NAME": "shop",
    "DATABASE": env("DBOS_DATABASE", default="default"),
    # Pinned, so that the web process and every worker agree (see docs/versioning-and-recovery.md).
    "APPLICATION_VERSION": env("DBOS_APPLICATION_VERSION", default="testproject-1"),
    "EXECUTOR_ID": env("DBOS_EXECUTOR_ID", default=None),
    "HEARTBEAT_SECONDS": env.float("DBOS_HEARTBEAT_SECONDS", default=5),
    "EXECUTOR_TIMEOUT_SECONDS": env.float("DBOS_EXECUTOR_TIMEOUT_SECONDS", default=30),
    "WORKFLOW_THREADS": env.int("DBOS_WORKFLOW_THREADS", default=16),
    "POLL_SECONDS": env.float("DBOS_POLL_SECONDS", default=1.0),
    "PREPARED_STATEMENTS": env.bool("DBOS_PREPARED_STATEMENTS", default=True),
    "LISTEN_DATABASE": env("DBOS_LISTEN_DATABASE", default=None),
    # Off unless set (the workers of tests/test_upgrade.py turn it on).
    "AUTO_UPGRADE": env.bool("DBOS_AUTO_UPGRADE", default=False),
    # The per-process Prometheus series (on by default; bench/core.py compares both).
    "METRICS": env.bool("DBOS_METRICS", default=True),
    # Off unless set (the tests of tests/test_retention.py start workers with these).
    "RETENTION": {
        "FINISHED_DAYS": env.float("DBOS_RETENTION_FINISHED_DAYS", default=None),
        "INTERVAL_SECONDS": env.float("DBOS_RETENTION_INTERVAL_SECONDS", default=60),
    },
    # No rules unless set: DBOS_ALERTS_RULES is the JSON list of rules (tests/test_alerts.py).
    "ALERTS": {
        "CHECK_SECONDS": env.float("DBOS_ALERTS_CHECK_SECONDS", default=30),
        "RULES": env.json("DBOS_ALERTS_RULES", default=[]),
    },
}

# Who gets the alerts' mail, and how it is sent: to the console unless EMAIL_BACKEND says
# otherwise (the tests' workers write files: the file backend and EMAIL_FILE_PATH).
# (Django 6 takes plain addresses and deprecates the (name, address) pairs 5.2 needs.)
ADMINS = ["ops@example.com"] if django.VERSION >= (6, 0) else [("Operations", "ops@example.com")]
EMAIL_BACKEND = env("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env("EMAIL_FILE_PATH", default=None)

# Django's Tasks framework, run by DBOS workers (docs/tasks.md).
TASKS = {
    "default": {
        "BACKEND": "django_dbos.tasks.DBOSTaskBackend",
        "QUEUES": ["default", "notifications", "tasks-serial"],
        "OPTIONS": {
            "queues": {
                "notifications": {"concurrency": 4, "limiter": {"limit": 10, "period": 60}},
                "tasks-serial": {"concurrency": 1},
            }
        },
    }
}

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_dbos": {"handlers": ["console"], "level": env("DBOS_LOG_LEVEL", default="INFO")}
    },
}
