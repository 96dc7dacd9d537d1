"""System checks of the DBOS setting: `manage.py check` names the mistake and how to fix it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.core.checks import run_checks
from django.db import connections
from django.test import override_settings

from django_dbos.checks import check_pooler, check_settings


def dbos_messages() -> list[checks.CheckMessage]:
    """The django_dbos messages among everything `manage.py check` would report."""
    return [
        message
        for message in run_checks(databases=[])
        if (message.id or "").startswith("django_dbos.")
    ]


def check(dbos: Any) -> list[checks.CheckMessage]:
    with override_settings(DBOS=dbos):
        return check_settings()


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [message.id for message in messages]


def only(messages: list[checks.CheckMessage], check_id: str) -> checks.CheckMessage:
    assert ids(messages) == [check_id]
    return messages[0]


def add_database(settings: Any, alias: str, entry: dict[str, Any]) -> None:
    """Add an alias to DATABASES for the checks to read (no connection is opened)."""
    with pytest.warns(UserWarning, match="DATABASES"):
        settings.DATABASES = {**settings.DATABASES, alias: entry}


def test_the_project_settings_pass():
    assert dbos_messages() == []


@pytest.mark.parametrize(
    "dbos",
    [
        {},
        {"APP_NAME": "shop", "APPLICATION_VERSION": "v1", "EXECUTOR_ID": "web-1"},
        {"SERIALIZER": "pickle"},
        {"SERIALIZER": "django_dbos.engine.serialization.JSONSerializer"},
        {"HEARTBEAT_SECONDS": 0.5, "EXECUTOR_TIMEOUT_SECONDS": 2, "POLL_SECONDS": 0.1},
        {"WORKFLOW_THREADS": 1, "MAX_RECOVERY_ATTEMPTS": 1},
        {"PREPARED_STATEMENTS": False, "AUTODISCOVER": None, "APP_NAME": None},
    ],
    ids=["empty", "names", "pickle", "dotted-serializer", "fast-timing", "ones", "nones"],
)
def test_valid_settings_pass(dbos):
    assert check(dbos) == []


@pytest.mark.parametrize("dbos", ["shop", ["APP_NAME", "shop"], None, 1])
def test_dbos_must_be_a_dict(dbos):
    with override_settings(DBOS=dbos):
        error = only(dbos_messages(), "django_dbos.E001")

    assert error.level == checks.ERROR
    assert error.msg == f"The DBOS setting must be a dict, not {type(dbos).__name__}."
    assert error.hint == 'Write it as DBOS = {"APP_NAME": "shop"}.'


def test_an_unknown_database_alias_is_an_error():
    with override_settings(DBOS={"DATABASE": "replica"}):
        error = only(dbos_messages(), "django_dbos.E002")

    assert error.level == checks.ERROR
    assert "'replica'" in error.msg
    assert "not in DATABASES" in error.msg
    # testproject's aliases (on PostgreSQL also "pgbouncer", for tests/test_pgbouncer.py).
    assert error.hint == f"Use one of: {', '.join(settings.DATABASES)}."
    assert "default" in settings.DATABASES and "dbos_system" in settings.DATABASES


def test_an_unsupported_database_engine_is_an_error(settings):
    add_database(settings, "legacy", {"ENGINE": "django.db.backends.mysql", "NAME": "legacy"})

    error = only(check({"DATABASE": "legacy"}), "django_dbos.E005")

    assert "'django.db.backends.mysql'" in error.msg
    assert "PostgreSQL" in error.hint


SQLITE = {"ENGINE": "django.db.backends.sqlite3", "NAME": "jobs.sqlite3"}


@pytest.mark.parametrize(
    "options",
    [None, {"timeout": 20}, {"transaction_mode": "DEFERRED"}],
    ids=["startproject", "timeout-only", "deferred"],
)
def test_sqlite_in_deferred_mode_is_a_warning_that_shows_the_options_to_add(settings, options):
    add_database(settings, "jobs", SQLITE if options is None else {**SQLITE, "OPTIONS": options})

    warning = only(check({"DATABASE": "jobs"}), "django_dbos.W002")

    assert warning.level == checks.WARNING
    assert warning.msg == (
        "The DBOS database 'jobs' is SQLite in its default, deferred transaction mode: a "
        "transaction that reads before it writes (in a view, or a @DBOS.transaction function) "
        'fails at once with "database is locked" while a worker writes.'
    )
    assert warning.hint == (
        "Give DATABASES['jobs'] these OPTIONS (Django 5.1+; see \"SQLite\" in "
        'docs/getting-started.md): {"transaction_mode": "IMMEDIATE", "timeout": 30, '
        '"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}'
    )


def test_the_options_in_the_hint_silence_the_sqlite_warning(settings):
    add_database(settings, "jobs", SQLITE)
    hint = only(check({"DATABASE": "jobs"}), "django_dbos.W002").hint

    add_database(settings, "jobs", {**SQLITE, "OPTIONS": json.loads(hint[hint.index("{") :])})

    assert check({"DATABASE": "jobs"}) == []


@pytest.mark.parametrize("mode", ["IMMEDIATE", "immediate", "EXCLUSIVE"])
def test_sqlite_that_takes_the_write_lock_up_front_passes(settings, mode):
    add_database(settings, "jobs", {**SQLITE, "OPTIONS": {"transaction_mode": mode}})

    assert check({"DATABASE": "jobs"}) == []


@pytest.mark.parametrize("serializer", ["yaml", "no_such_module.Serializer", "json.NoSuchClass"])
def test_a_serializer_that_cannot_be_imported_is_an_error(serializer):
    error = only(check({"SERIALIZER": serializer}), "django_dbos.E003")

    assert error.level == checks.ERROR
    assert error.msg.startswith(f'DBOS["SERIALIZER"] is {serializer!r}')
    assert '"json" (the default), "pickle", or a dotted path' in error.hint


@pytest.mark.parametrize("serializer", [None, 42])
def test_a_serializer_that_is_not_a_string_is_an_error(serializer):
    assert ids(check({"SERIALIZER": serializer})) == ["django_dbos.E003"]


@pytest.mark.parametrize("serializer", ["os.sep", "collections.OrderedDict"])
def test_a_serializer_that_is_not_a_serializer_class_is_an_error(serializer):
    assert ids(check({"SERIALIZER": serializer})) == ["django_dbos.E003"]


def test_a_database_alias_that_is_not_a_string_is_an_error():
    assert ids(check({"DATABASE": ["default"]})) == ["django_dbos.E002"]


@pytest.mark.parametrize("key", ["WORKFLOW_THREADS", "MAX_RECOVERY_ATTEMPTS"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "8", True, None])
def test_counts_must_be_positive_integers(key, value):
    error = only(check({key: value}), "django_dbos.E004")

    assert error.level == checks.ERROR
    assert error.msg == f'DBOS["{key}"] must be a positive integer, not {value!r}.'
    default = {"WORKFLOW_THREADS": 64, "MAX_RECOVERY_ATTEMPTS": 100}[key]
    assert error.hint == (
        f'Set DBOS["{key}"] to a positive integer or remove it to use the default ({default}).'
    )


@pytest.mark.parametrize("key", ["HEARTBEAT_SECONDS", "POLL_SECONDS"])
@pytest.mark.parametrize("value", [0, -0.5, "5", True, float("nan")])
def test_durations_must_be_positive_numbers(key, value):
    error = only(check({key: value}), "django_dbos.E004")

    assert error.msg == f'DBOS["{key}"] must be a positive number, not {value!r}.'
    assert error.hint.startswith(f'Set DBOS["{key}"] to a positive number or remove it')


def test_a_fractional_heartbeat_is_accepted():
    assert check({"HEARTBEAT_SECONDS": 0.25, "EXECUTOR_TIMEOUT_SECONDS": 1}) == []


def test_every_bad_number_is_reported_at_once():
    messages = check({"WORKFLOW_THREADS": 0, "MAX_RECOVERY_ATTEMPTS": "x", "POLL_SECONDS": -1})

    assert ids(messages) == ["django_dbos.E004"] * 3
    assert sorted(message.msg.split('"')[1] for message in messages) == [
        "MAX_RECOVERY_ATTEMPTS",
        "POLL_SECONDS",
        "WORKFLOW_THREADS",
    ]


@pytest.mark.parametrize(
    ("heartbeat", "timeout"), [(5, 5), (10, 5), (0.5, 0.4)], ids=["equal", "shorter", "fraction"]
)
def test_the_executor_timeout_must_outlast_the_heartbeat(heartbeat, timeout):
    error = only(
        check({"HEARTBEAT_SECONDS": heartbeat, "EXECUTOR_TIMEOUT_SECONDS": timeout}),
        "django_dbos.E006",
    )

    assert error.level == checks.ERROR
    assert error.msg == (
        f'DBOS["EXECUTOR_TIMEOUT_SECONDS"] ({timeout}) must be longer than '
        f'DBOS["HEARTBEAT_SECONDS"] ({heartbeat}), or live executors look dead.'
    )
    assert "several heartbeats" in error.hint


def test_a_heartbeat_longer_than_the_default_timeout_is_an_error():
    error = only(check({"HEARTBEAT_SECONDS": 60}), "django_dbos.E006")

    assert "(30) must be longer than" in error.msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("APP_NAME", 1),
        ("APPLICATION_VERSION", 2.0),
        ("EXECUTOR_ID", ["web-1"]),
        ("AUTODISCOVER", False),
    ],
)
def test_names_must_be_strings(key, value):
    error = only(check({key: value}), "django_dbos.E007")

    assert error.level == checks.ERROR
    assert error.msg == f'DBOS["{key}"] must be a string, not {type(value).__name__}.'


@pytest.mark.parametrize("value", ["no", 0, 1, None])
def test_prepared_statements_must_be_a_boolean(value):
    error = only(check({"PREPARED_STATEMENTS": value}), "django_dbos.E008")

    assert error.level == checks.ERROR
    assert error.msg == 'DBOS["PREPARED_STATEMENTS"] must be True or False.'


@pytest.mark.parametrize("value", ["yes", 0, 1, None])
def test_auto_upgrade_must_be_a_boolean(value):
    error = only(check({"AUTO_UPGRADE": value}), "django_dbos.E019")

    assert error.level == checks.ERROR
    assert error.msg == 'DBOS["AUTO_UPGRADE"] must be True or False.'
    assert "docs/deploying.md" in error.hint
    assert not check({"AUTO_UPGRADE": True})


def test_an_unknown_key_is_a_warning_naming_it_and_the_known_keys():
    with override_settings(DBOS={"APP_NAME": "shop", "HEARTBEAT": 5, "THREADS": 8}):
        warning = only(dbos_messages(), "django_dbos.W001")

    assert warning.level == checks.WARNING
    assert not warning.is_serious()
    assert warning.msg == "Unknown DBOS settings: HEARTBEAT, THREADS."
    assert "HEARTBEAT_SECONDS" in warning.hint
    assert "WORKFLOW_THREADS" in warning.hint


def test_an_unknown_key_does_not_hide_errors():
    messages = check({"TYPO": 1, "WORKFLOW_THREADS": 0, "PREPARED_STATEMENTS": "yes"})

    assert ids(messages) == ["django_dbos.W001", "django_dbos.E004", "django_dbos.E008"]


def deploy_messages() -> list[checks.CheckMessage]:
    """The django_dbos messages of `manage.py check --deploy`."""
    return [
        message
        for message in run_checks(include_deployment_checks=True, databases=[])
        if (message.id or "").startswith("django_dbos.")
    ]


def test_atomic_requests_on_the_dbos_database_is_a_deploy_warning(monkeypatch):
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)

    warning = only(deploy_messages(), "django_dbos.W003")

    assert warning.level == checks.WARNING
    assert "The DBOS database 'default' has ATOMIC_REQUESTS" in warning.msg
    assert "@transaction.non_atomic_requests" in warning.hint
    assert dbos_messages() == []  # a deploy check only


def test_without_atomic_requests_the_deploy_checks_pass():
    assert deploy_messages() == []


# DBOS["RETENTION"] ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"FINISHED_DAYS": 90, "PAYLOAD_DAYS": 30, "INTERVAL_SECONDS": 0.5},
        {"FINISHED_DAYS": 0.5, "ARCHIVE_STORAGE": "default"},
        {"PAYLOAD_DAYS": 0, "FINISHED_DAYS": None, "ARCHIVE_STORAGE": None},
    ],
    ids=["empty", "days", "fraction-and-archive", "zero"],
)
def test_a_valid_retention_policy_passes(policy):
    assert check({"RETENTION": policy}) == []


def test_a_retention_policy_that_is_not_a_dict_is_an_error():
    error = only(check({"RETENTION": 90}), "django_dbos.E011")

    assert error.msg == 'DBOS["RETENTION"] must be a dict, not int.'


def test_an_unknown_retention_key_is_a_warning():
    warning = only(check({"RETENTION": {"FINISHED_DAYS": 9, "ARCHIVE": "s3"}}), "django_dbos.W004")

    assert warning.level == checks.WARNING
    assert warning.msg == 'Unknown keys in DBOS["RETENTION"]: ARCHIVE.'
    assert "FINISHED_DAYS, PAYLOAD_DAYS, ARCHIVE_STORAGE, INTERVAL_SECONDS" in warning.hint


@pytest.mark.parametrize("key", ["FINISHED_DAYS", "PAYLOAD_DAYS"])
@pytest.mark.parametrize("value", [-1, "30", True, float("nan"), float("inf")])
def test_retention_days_must_be_numbers_of_days(key, value):
    error = only(check({"RETENTION": {key: value}}), "django_dbos.E012")

    assert error.msg.startswith(f'DBOS["RETENTION"]["{key}"] must be a number of days')
    assert error.msg.endswith(f"not {value!r}.")


@pytest.mark.parametrize("value", [0, -5, None, "60"])
def test_the_retention_interval_must_be_positive(value):
    error = only(check({"RETENTION": {"INTERVAL_SECONDS": value}}), "django_dbos.E012")

    assert error.msg == (
        f'DBOS["RETENTION"]["INTERVAL_SECONDS"] must be a positive number, not {value!r}.'
    )


def test_the_archive_storage_must_be_a_key_of_storages():
    error = only(check({"RETENTION": {"ARCHIVE_STORAGE": "s3"}}), "django_dbos.E013")

    assert error.msg == (
        'DBOS["RETENTION"]["ARCHIVE_STORAGE"] is \'s3\', which is not a key of STORAGES.'
    )
    assert error.hint.startswith("Use one of: default, staticfiles,")


def test_payloads_kept_as_long_as_the_workflows_are_a_warning():
    warning = only(
        check({"RETENTION": {"FINISHED_DAYS": 30, "PAYLOAD_DAYS": 30}}), "django_dbos.W005"
    )

    assert "workflows are deleted before their payload would expire" in warning.msg


POOLED_PG = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "db"}


@pytest.mark.parametrize(
    ("pool", "size"), [(True, 4), ({"max_size": 20}, 20), ({"min_size": 8}, 8)]
)
def test_a_connection_pool_smaller_than_a_worker_needs_is_a_warning(settings, pool, size):
    add_database(settings, "pooled", {**POOLED_PG, "OPTIONS": {"pool": pool}})
    with override_settings(DBOS={"DATABASE": "pooled", "WORKFLOW_THREADS": 16}):
        (warning,) = [m for m in check_pooler() if m.id == "django_dbos.W010"]
    needed = 16 + 8 + 7  # the workflow threads, the async database threads, the worker's loops
    assert f"holds {size} connections at most, but a worker may hold {needed}" in warning.msg
    assert f'["max_size"] to {needed} or more' in warning.hint


def test_a_connection_pool_that_holds_a_worker_passes(settings):
    add_database(settings, "pooled", {**POOLED_PG, "OPTIONS": {"pool": {"max_size": 31}}})
    with override_settings(DBOS={"DATABASE": "pooled", "WORKFLOW_THREADS": 16}):
        assert check_pooler() == []


# DBOS["ALERTS"] -------------------------------------------------------------------------------

EVERY_KIND = [
    {
        "name": "checkout-failing",
        "kind": "workflow_failures",
        "workflow_name": "shop.workflows.checkout",
        "threshold": 5,
        "window_seconds": 600,
    },
    {
        "name": "payments-late",
        "kind": "queue_oldest_enqueued",
        "queue": "pay",
        "threshold_seconds": 0,
    },
    {"name": "no-worker", "kind": "no_live_executor"},
    {"name": "gave-up", "kind": "max_recovery_attempts"},
    {"name": "stranded", "kind": "stranded_workflows"},
]


def test_a_rule_of_every_kind_passes():
    assert (
        check({"ALERTS": {"CHECK_SECONDS": 0.5, "MAIL_ADMINS": False, "RULES": EVERY_KIND}}) == []
    )


@pytest.mark.parametrize(
    ("alerts", "message"),
    [
        ([], 'DBOS["ALERTS"] must be a dict, not list.'),
        ({"CHECK_SECONDS": 0}, 'DBOS["ALERTS"]["CHECK_SECONDS"] must be a positive number, not 0.'),
        ({"MAIL_ADMINS": "yes"}, 'DBOS["ALERTS"]["MAIL_ADMINS"] must be True or False.'),
        ({"RULES": {"name": "x"}}, 'DBOS["ALERTS"]["RULES"] must be a list of dicts, not dict.'),
    ],
    ids=["not-a-dict", "check-seconds", "mail-admins", "rules-not-a-list"],
)
def test_a_malformed_alerts_block_is_an_error(alerts, message):
    assert only(check({"ALERTS": alerts}), "django_dbos.E014").msg == message


def test_an_unknown_alerts_key_is_a_warning():
    warning = only(check({"ALERTS": {"RULE": []}}), "django_dbos.W006")

    assert warning.msg == 'Unknown keys in DBOS["ALERTS"]: RULE.'
    assert warning.hint == "Known keys are CHECK_SECONDS, MAIL_ADMINS, RULES."


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("gave-up", 'DBOS["ALERTS"]["RULES"][0] must be a dict, not str.'),
        (
            {"name": "x", "kind": "queue_depth"},
            'DBOS["ALERTS"]["RULES"][0] has kind \'queue_depth\'; write one of: '
            "workflow_failures, queue_oldest_enqueued, no_live_executor, max_recovery_attempts, "
            "stranded_workflows.",
        ),
        (
            {"name": "x", "kind": "queue_oldest_enqueued", "queue": "pay"},
            'DBOS["ALERTS"]["RULES"][0] (kind \'queue_oldest_enqueued\') lacks '
            "threshold_seconds; a queue_oldest_enqueued rule has the keys kind, name, queue, "
            "threshold_seconds.",
        ),
        (
            {"name": "x", "kind": "max_recovery_attempts", "threshold": 3},
            'DBOS["ALERTS"]["RULES"][0] (kind \'max_recovery_attempts\') has unknown keys '
            "threshold; a max_recovery_attempts rule has the keys kind, name.",
        ),
        (
            {**EVERY_KIND[0], "threshold": "5"},
            'DBOS["ALERTS"]["RULES"][0]["threshold"] must be an integer >= 1, not \'5\'.',
        ),
        (
            {**EVERY_KIND[0], "window_seconds": -60},
            'DBOS["ALERTS"]["RULES"][0]["window_seconds"] must be a number of seconds > 0, '
            "not -60.",
        ),
        (
            {**EVERY_KIND[1], "threshold_seconds": -1},
            'DBOS["ALERTS"]["RULES"][0]["threshold_seconds"] must be a number of seconds '
            ">= 0, not -1.",
        ),
        (
            {"name": "", "kind": "stranded_workflows"},
            'DBOS["ALERTS"]["RULES"][0]["name"] must be a non-empty string, not \'\'.',
        ),
    ],
    ids=[
        "not-a-dict",
        "unknown-kind",
        "missing",
        "extra",
        "mistyped",
        "negative",
        "negative-age",
        "no-name",
    ],
)
def test_a_bad_rule_is_an_error_that_says_what_to_write(rule, message):
    error = only(check({"ALERTS": {"RULES": [rule]}}), "django_dbos.E015")

    assert error.msg == message
    assert "docs/monitoring.md#alerts" in error.hint


def test_two_rules_of_one_name_are_an_error():
    rules = [{"name": "gave-up", "kind": "max_recovery_attempts"}] * 2

    error = only(check({"ALERTS": {"RULES": rules}}), "django_dbos.E016")

    assert error.msg == 'More than one rule of DBOS["ALERTS"]["RULES"] is named \'gave-up\'.'


# The metrics endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dbos", [{"METRICS_TOKEN": "a-long-random-string"}, {"METRICS_FINISHED_COUNTS_SECONDS": 0}]
)
def test_valid_metrics_settings_pass(dbos):
    assert check(dbos) == []


@pytest.mark.parametrize("token", ["", "   ", 12345, b"bytes"])
def test_a_metrics_token_must_be_a_non_empty_string(token):
    error = only(check({"METRICS_TOKEN": token}), "django_dbos.E017")

    assert error.msg == (
        f'DBOS["METRICS_TOKEN"] must be a non-empty string or None, not {token!r}.'
    )
    assert "secrets.token_urlsafe" in error.hint


@pytest.mark.parametrize("seconds", [-1, "30", None, True, float("inf"), float("nan")])
def test_the_finished_counts_age_must_be_a_number_of_seconds(seconds):
    error = only(check({"METRICS_FINISHED_COUNTS_SECONDS": seconds}), "django_dbos.E018")

    assert error.msg == (
        'DBOS["METRICS_FINISHED_COUNTS_SECONDS"] must be a number of seconds (0 or more), '
        f"not {seconds!r}."
    )
