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
    if not isinstance(conf.get("AUTO_UPGRADE"), bool):
        errors.append(
            Error(
                'DBOS["AUTO_UPGRADE"] must be True or False.',
                hint="True: workers move the stranded workflows their code continues to their "
                "own version (docs/deploying.md).",
                id="django_dbos.E019",
            )
        )
    if not isinstance(conf.get("METRICS"), bool):
        errors.append(
            Error(
                f'DBOS["METRICS"] must be True or False, not {conf.get("METRICS")!r}.',
                hint="True (the default) keeps this process's Prometheus series when "
                "prometheus_client is installed; False turns them off.",
                id="django_dbos.E020",
            )
        )
    errors.extend(_retention_errors(raw.get("RETENTION", {})))
    errors.extend(_alert_errors(raw.get("ALERTS", {})))
    errors.extend(_metrics_errors())
    return [error for error in errors if error is not None]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metrics_errors() -> list[Any]:
    """DBOS["METRICS_TOKEN"] and DBOS["METRICS_FINISHED_COUNTS_SECONDS"] (docs/monitoring.md)."""
    errors: list[Any] = []
    token = conf.get("METRICS_TOKEN")
    if token is not None and (not isinstance(token, str) or not token.strip()):
        errors.append(
            Error(
                f'DBOS["METRICS_TOKEN"] must be a non-empty string or None, not {token!r}.',
                hint="Set it to a long random string (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))') and give Prometheus the same as its "
                "bearer token, or remove it.",
                id="django_dbos.E017",
            )
        )
    refresh = conf.get("METRICS_FINISHED_COUNTS_SECONDS")
    if not (_is_number(refresh) and 0 <= refresh < math.inf):
        errors.append(
            Error(
                f'DBOS["METRICS_FINISHED_COUNTS_SECONDS"] must be a number of seconds (0 or '
                f"more), not {refresh!r}.",
                hint="The metrics endpoint recounts the finished workflows in the background "
                "once its counts are older than this; 0 counts them at every scrape.",
                id="django_dbos.E018",
            )
        )
    return errors


def _unknown_keys(setting: str, block: dict[Any, Any], check_id: str) -> list[Any]:
    """A warning naming the keys of a dict setting (RETENTION, ALERTS) that it does not know."""
    known = conf.DEFAULTS[setting]
    unknown = sorted(str(key) for key in set(block) - set(known))
    if not unknown:
        return []
    return [
        Warning(
            f'Unknown keys in DBOS["{setting}"]: {", ".join(unknown)}.',
            hint=f"Known keys are {', '.join(known)}.",
            id=check_id,
        )
    ]


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
    errors: list[Any] = _unknown_keys("RETENTION", policy, "django_dbos.W004")
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


def _alert_errors(block: Any) -> list[Any]:
    """DBOS["ALERTS"]: a dict of known keys, a positive interval, and valid rules, each named
    once (a rule's state is kept under its name)."""
    from .queries import alert_duplicate_names, alert_rule_problems

    if not isinstance(block, dict):
        return [
            Error(
                f'DBOS["ALERTS"] must be a dict, not {type(block).__name__}.',
                hint='Write it as DBOS["ALERTS"] = {"RULES": [{"name": "gave-up", "kind": '
                '"max_recovery_attempts"}]}.',
                id="django_dbos.E014",
            )
        ]
    known = conf.DEFAULTS["ALERTS"]
    errors: list[Any] = _unknown_keys("ALERTS", block, "django_dbos.W006")
    block = {**known, **block}
    interval = block["CHECK_SECONDS"]
    if not (_is_number(interval) and 0 < interval < math.inf):
        errors.append(
            Error(
                f'DBOS["ALERTS"]["CHECK_SECONDS"] must be a positive number, not {interval!r}.',
                hint=f"A worker checks the rules this often (default {known['CHECK_SECONDS']} s).",
                id="django_dbos.E014",
            )
        )
    if not isinstance(block["MAIL_ADMINS"], bool):
        errors.append(
            Error(
                'DBOS["ALERTS"]["MAIL_ADMINS"] must be True or False.',
                hint="True (the default) mails each alert's changes to ADMINS.",
                id="django_dbos.E014",
            )
        )
    rules = block["RULES"]
    if not isinstance(rules, list):
        errors.append(
            Error(
                f'DBOS["ALERTS"]["RULES"] must be a list of dicts, not {type(rules).__name__}.',
                hint='Write it as "RULES": [{"name": "gave-up", "kind": "max_recovery_attempts"}].',
                id="django_dbos.E014",
            )
        )
        return errors
    hint = "See the rule kinds and their keys in docs/monitoring.md#alerts."
    for index, rule in enumerate(rules):
        errors.extend(
            Error(problem, hint=hint, id="django_dbos.E015")
            for problem in alert_rule_problems(index, rule)
        )
    for name in alert_duplicate_names(rules):
        errors.append(
            Error(
                f'More than one rule of DBOS["ALERTS"]["RULES"] is named {name!r}.',
                hint="Give each rule a name of its own: its state and history are kept under it.",
                id="django_dbos.E016",
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


@register(Tags.compatibility)
def check_pooler(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """Behind a transaction pooler, LISTEN needs a direct connection and prepared statements a
    PgBouncer that keeps them (docs/deploying.md, "Connection poolers"); Django's own connection
    pool must hold a worker's connections."""
    from .queries import pool_room, through_transaction_pooler

    database, target = conf.get("DATABASE"), conf.get("LISTEN_DATABASE")
    if database not in settings.DATABASES or "postgresql" not in _engine(database):
        return []
    problems: list[Any] = []
    if target is not None and target is not False and not _is_listen_target(target):
        problems.append(
            Error(
                f'DBOS["LISTEN_DATABASE"] must be None, False, a PostgreSQL alias of DATABASES '
                f"or a libpq connection string, not {target!r}.",
                hint='For example "listen" (an alias without a pooler) or '
                '"postgresql://app@db.internal:5432/shop".',
                id="django_dbos.E021",
            )
        )
    pooled = through_transaction_pooler(database)
    if pooled and target is None:
        problems.append(
            Warning(
                f"The DBOS database {database!r} goes through a transaction pooler "
                "(DISABLE_SERVER_SIDE_CURSORS), where LISTEN receives no notifications: every "
                'wait polls each DBOS["POLL_SECONDS"] instead of waking at once.',
                hint='Set DBOS["LISTEN_DATABASE"] to an alias or connection string that reaches '
                "PostgreSQL directly (one connection per process), or to False to poll knowingly.",
                id="django_dbos.W007",
            )
        )
    if (
        isinstance(target, str)
        and target in settings.DATABASES
        and through_transaction_pooler(target)
    ):
        problems.append(
            Warning(
                f'DBOS["LISTEN_DATABASE"] names {target!r}, which goes through a transaction '
                "pooler too (DISABLE_SERVER_SIDE_CURSORS): its LISTEN receives nothing.",
                hint="Name an alias that reaches PostgreSQL directly.",
                id="django_dbos.W008",
            )
        )
    room = pool_room(database)
    if room is not None and room[0] < room[1]:
        size, needed = room
        threads = conf.get("WORKFLOW_THREADS")
        problems.append(
            Warning(
                f"Django's connection pool for {database!r} holds {size} connections at most, "
                f"but a worker may hold {needed}: WORKFLOW_THREADS ({threads}) and "
                f"{needed - threads} threads of the engine's own. Workers run fewer workflow "
                "threads to fit; a web process's workflow threads may wait for a connection.",
                hint=f'Set DATABASES[{database!r}]["OPTIONS"]["pool"]["max_size"] to {needed} '
                "or more (with True, psycopg_pool opens 4), or lower WORKFLOW_THREADS.",
                id="django_dbos.W010",
            )
        )
    if pooled and conf.get("PREPARED_STATEMENTS") is True:
        problems.append(
            Warning(
                f"The DBOS database {database!r} goes through a transaction pooler and "
                'DBOS["PREPARED_STATEMENTS"] is on: PgBouncer keeps prepared statements in '
                "transaction mode only from 1.21, with max_prepared_statements set.",
                hint='Set DBOS["PREPARED_STATEMENTS"] = False for PgBouncer before 1.21 (or '
                "without max_prepared_statements); silence this warning otherwise.",
                id="django_dbos.W009",
            )
        )
    return problems


def _engine(alias: str) -> str:
    return str(settings.DATABASES[alias].get("ENGINE", ""))


def _is_listen_target(target: Any) -> bool:
    """A PostgreSQL alias, or a string libpq parses as a connection string."""
    if not isinstance(target, str) or not target:
        return False
    if target in settings.DATABASES:
        return "postgresql" in _engine(target)
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(target)
    except Exception:  # psycopg.ProgrammingError, whatever libpq says of it
        return False
    return True
