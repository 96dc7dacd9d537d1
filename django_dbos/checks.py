"""System checks for the DBOS setting: misconfiguration is reported by `manage.py check`."""

from __future__ import annotations

import json
import math
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections
from django.utils.module_loading import import_string

from . import conf

SUPPORTED_VENDORS = ("postgresql", "sqlite3")

# The OPTIONS docs/getting-started.md recommends for SQLite: writers wait for each other.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


def _number_error(key: str, value: Any, *, integer: bool) -> Error | None:
    kinds = int if integer else int | float
    if isinstance(value, kinds) and not isinstance(value, bool) and value > 0:
        return None
    kind = "a positive integer" if integer else "a positive number"
    return Error(
        f'DBOS["{key}"] must be {kind}, not {value!r}.',
        hint=f'Set DBOS["{key}"] to {kind} or remove it to use the default ({conf.DEFAULTS[key]}).',
        id="django_dbos.E004",
    )


def _is_serializer_class(path: Any) -> bool:
    if not isinstance(path, str):
        return False
    try:
        cls = import_string(path)
    except ImportError:
        return False
    return isinstance(cls, type) and all(
        callable(getattr(cls, method, None)) for method in ("dumps", "loads")
    )


def _deferred_sqlite_warning(database: str) -> Warning | None:
    """SQLite in Django's default transaction mode lets a transaction that reads before it
    writes fail at once under a concurrent writer (the engine's own take the lock first)."""
    from .queries import sqlite_begins_deferred

    if not sqlite_begins_deferred(settings.DATABASES[database]):
        return None
    return Warning(
        f"The DBOS database {database!r} is SQLite in its default, deferred transaction mode: "
        "a transaction that reads before it writes (in a view, or a @DBOS.transaction "
        'function) fails at once with "database is locked" while a worker writes.',
        hint=f"Give DATABASES[{database!r}] these OPTIONS (Django 5.1+; see "
        f'"SQLite" in docs/getting-started.md): {json.dumps(SQLITE_OPTIONS)}',
        id="django_dbos.W002",
    )


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    raw = getattr(settings, "DBOS", {})
    if not isinstance(raw, dict):
        return [
            Error(
                f"The DBOS setting must be a dict, not {type(raw).__name__}.",
                hint='Write it as DBOS = {"APP_NAME": "shop"}.',
                id="django_dbos.E001",
            )
        ]
    errors: list[Any] = []
    unknown = sorted(set(raw) - set(conf.DEFAULTS))
    if unknown:
        errors.append(
            Warning(
                f"Unknown DBOS settings: {', '.join(unknown)}.",
                hint=f"Known settings are {', '.join(sorted(conf.DEFAULTS))}.",
                id="django_dbos.W001",
            )
        )
    database = conf.get("DATABASE")
    if not isinstance(database, str) or database not in settings.DATABASES:
        errors.append(
            Error(
                f'DBOS["DATABASE"] names the database alias {database!r}, which is not in '
                "DATABASES.",
                hint=f"Use one of: {', '.join(settings.DATABASES)}.",
                id="django_dbos.E002",
            )
        )
    else:
        engine = settings.DATABASES[database].get("ENGINE", "")
        vendor = engine.rsplit(".", 1)[-1]
        if vendor not in SUPPORTED_VENDORS:
            errors.append(
                Error(
                    f"The DBOS database {database!r} uses {engine!r}; django-dbos supports "
                    "PostgreSQL and SQLite.",
                    hint='Point DBOS["DATABASE"] at a PostgreSQL or SQLite alias.',
                    id="django_dbos.E005",
                )
            )
        elif vendor == "sqlite3":
            errors.append(_deferred_sqlite_warning(database))
    serializer = conf.get("SERIALIZER")
    if serializer not in ("json", "pickle") and not _is_serializer_class(serializer):
        errors.append(
            Error(
                f'DBOS["SERIALIZER"] is {serializer!r}: neither "json", "pickle" nor the dotted '
                "path of a class with dumps() and loads().",
                hint='Use "json" (the default), "pickle", or a dotted path to a class with '
                "dumps(value) -> str and loads(text) -> value methods.",
                id="django_dbos.E003",
            )
        )
    for key in ("MAX_RECOVERY_ATTEMPTS", "WORKFLOW_THREADS"):
        errors.append(_number_error(key, conf.get(key), integer=True))
    for key in ("HEARTBEAT_SECONDS", "EXECUTOR_TIMEOUT_SECONDS", "POLL_SECONDS"):
        errors.append(_number_error(key, conf.get(key), integer=False))
    heartbeat, timeout = conf.get("HEARTBEAT_SECONDS"), conf.get("EXECUTOR_TIMEOUT_SECONDS")
    if all(isinstance(v, int | float) for v in (heartbeat, timeout)) and timeout <= heartbeat:
        errors.append(
            Error(
                f'DBOS["EXECUTOR_TIMEOUT_SECONDS"] ({timeout}) must be longer than '
                f'DBOS["HEARTBEAT_SECONDS"] ({heartbeat}), or live executors look dead.',
                hint="Make the timeout several heartbeats long (the defaults are 30 and 5).",
                id="django_dbos.E006",
            )
        )
    for key in ("APP_NAME", "APPLICATION_VERSION", "EXECUTOR_ID", "AUTODISCOVER"):
        value = conf.get(key)
        if value is not None and not isinstance(value, str):
            errors.append(
                Error(
                    f'DBOS["{key}"] must be a string, not {type(value).__name__}.',
                    id="django_dbos.E007",
                )
            )
    park = conf.get("PARK_WAITS_OVER_SECONDS")
    if park is not None and (
        isinstance(park, bool) or not isinstance(park, int | float) or park < 0
    ):
        errors.append(
            Error(
                f'DBOS["PARK_WAITS_OVER_SECONDS"] must be a number of seconds or None, '
                f"not {park!r}.",
                hint="Waits longer than this give their thread back; None never parks them.",
                id="django_dbos.E010",
            )
        )
    if not isinstance(conf.get("PREPARED_STATEMENTS"), bool):
        errors.append(
            Error('DBOS["PREPARED_STATEMENTS"] must be True or False.', id="django_dbos.E008")
        )
    if not isinstance(conf.get("METRICS"), bool):
        errors.append(
            Error(
                f'DBOS["METRICS"] must be True or False, not {conf.get("METRICS")!r}.',
                hint="True (the default) keeps this process's Prometheus series when "
                "prometheus_client is installed; False turns them off.",
                id="django_dbos.E014",
            )
        )
    errors.extend(_retention_errors(raw.get("RETENTION", {})))
    return [error for error in errors if error is not None]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _retention_errors(policy: Any) -> list[Any]:
    """DBOS["RETENTION"]: a dict of known keys, ages in days (or None), a storage of STORAGES."""
    if not isinstance(policy, dict):
        return [
            Error(
                f'DBOS["RETENTION"] must be a dict, not {type(policy).__name__}.',
                hint='Write it as DBOS["RETENTION"] = {"FINISHED_DAYS": 90}.',
                id="django_dbos.E011",
            )
        ]
    known = conf.DEFAULTS["RETENTION"]
    errors: list[Any] = []
    unknown = sorted(str(key) for key in set(policy) - set(known))
    if unknown:
        errors.append(
            Warning(
                f'Unknown keys in DBOS["RETENTION"]: {", ".join(unknown)}.',
                hint=f"Known keys are {', '.join(known)}.",
                id="django_dbos.W004",
            )
        )
    policy = {**known, **policy}
    for key in ("FINISHED_DAYS", "PAYLOAD_DAYS"):
        days = policy[key]
        if days is not None and not (_is_number(days) and 0 <= days < math.inf):
            errors.append(
                Error(
                    f'DBOS["RETENTION"]["{key}"] must be a number of days (fractions allowed) or '
                    f"None, not {days!r}.",
                    hint="None keeps the workflows' rows (or payloads) for ever.",
                    id="django_dbos.E012",
                )
            )
    interval = policy["INTERVAL_SECONDS"]
    if not (_is_number(interval) and 0 < interval < math.inf):
        errors.append(
            Error(
                f'DBOS["RETENTION"]["INTERVAL_SECONDS"] must be a positive number, not '
                f"{interval!r}.",
                hint="Each worker applies at most one batch of the policy per interval "
                f"(default {known['INTERVAL_SECONDS']} s).",
                id="django_dbos.E012",
            )
        )
    storage = policy["ARCHIVE_STORAGE"]
    storages = getattr(settings, "STORAGES", {})
    if storage is not None and (not isinstance(storage, str) or storage not in storages):
        errors.append(
            Error(
                f'DBOS["RETENTION"]["ARCHIVE_STORAGE"] is {storage!r}, which is not a key of '
                "STORAGES.",
                hint=f"Use one of: {', '.join(storages)}, or add a storage to STORAGES "
                "(https://docs.djangoproject.com/en/stable/ref/settings/#storages).",
                id="django_dbos.E013",
            )
        )
    finished, payload = policy["FINISHED_DAYS"], policy["PAYLOAD_DAYS"]
    if _is_number(finished) and _is_number(payload) and payload >= finished:
        errors.append(
            Warning(
                f'DBOS["RETENTION"]["PAYLOAD_DAYS"] ({payload}) is not shorter than '
                f'"FINISHED_DAYS" ({finished}): workflows are deleted before their payload '
                "would expire.",
                hint="Make PAYLOAD_DAYS shorter than FINISHED_DAYS, or set it to None.",
                id="django_dbos.W005",
            )
        )
    return errors


@register(Tags.compatibility)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """A cron expression of @DBOS.scheduled that cannot be parsed is an error."""
    from .queries import schedule_errors

    return [
        Error(
            f"The schedule of workflow {workflow_name!r} is invalid: {error}",
            hint='Fix the expression in @DBOS.scheduled(...): "* * * * *" or, with seconds, '
            '"*/5 * * * * *".',
            obj=workflow_name,
            id="django_dbos.E009",
        )
        for workflow_name, error in schedule_errors().items()
    ]


@register(Tags.compatibility, deploy=True)
def check_atomic_requests(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """ATOMIC_REQUESTS on the system database delays every start to the end of its request."""
    database = conf.get("DATABASE")
    if database not in settings.DATABASES or not connections[database].settings_dict.get(
        "ATOMIC_REQUESTS"
    ):
        return []
    return [
        Warning(
            f"The DBOS database {database!r} has ATOMIC_REQUESTS: a workflow started in a view "
            "begins only when the request's transaction commits, so a view that waits for it "
            "(get_result, get_event, read_stream) fails at once.",
            hint="Decorate views that start a workflow and wait for it with "
            "@transaction.non_atomic_requests, or turn ATOMIC_REQUESTS off.",
            id="django_dbos.W003",
        )
    ]
