"""The `DBOS` setting, read with its defaults.

Values are cached, and the cache is dropped when `override_settings` changes DBOS in a test.
Validation lives in `checks.py`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    "APP_NAME": None,
    "DATABASE": "default",
    "APPLICATION_VERSION": None,
    "EXECUTOR_ID": None,
    "SERIALIZER": "json",
    "MAX_RECOVERY_ATTEMPTS": 100,
    "WORKFLOW_THREADS": 64,
    "HEARTBEAT_SECONDS": 5,
    "EXECUTOR_TIMEOUT_SECONDS": 30,
    "AUTODISCOVER": "workflows",
    "POLL_SECONDS": 1.0,
    # A sleep, recv or get_event of a workflow run by the engine that may last longer than this
    # gives its thread back and re-runs the workflow when woken (None: never).
    "PARK_WAITS_OVER_SECONDS": 1.0,
    # Prepare the engine's hot statements on PostgreSQL. Turn off behind a connection pooler
    # that cannot keep prepared statements (PgBouncer before 1.21 in transaction mode).
    "PREPARED_STATEMENTS": True,
    # Where the PostgreSQL listener connects for LISTEN: None for the DBOS database's own
    # server (but polling when that alias goes through a transaction pooler), a Django alias or
    # a libpq connection string of a direct connection, or False to always poll.
    "LISTEN_DATABASE": None,
    # The bearer token that Prometheus sends to GET <prefix>metrics/ (None: only logged-in users
    # with the view permission may read it).
    "METRICS_TOKEN": None,
    # How old the counts of finished workflows that the metrics endpoint shows may grow before
    # it recounts them in the background (0: count them at every scrape; docs/monitoring.md).
    "METRICS_FINISHED_COUNTS_SECONDS": 30,
    # Workers replay the stranded workflows of versions no live worker runs on their own code,
    # every HEARTBEAT_SECONDS, and take over those it continues (docs/deploying.md).
    "AUTO_UPGRADE": False,
    # This process's Prometheus series (docs/monitoring.md), when
    # prometheus_client is installed; False turns them off.
    "METRICS": True,
    # What the workers delete, scrub and archive of finished workflows (docs/retention.md, "The
    # retention policy"); merged key by key with the project's dict.
    "RETENTION": {
        "FINISHED_DAYS": None,
        "PAYLOAD_DAYS": None,
        "ARCHIVE_STORAGE": None,
        "INTERVAL_SECONDS": 60,
    },
    # Alert rules, checked by one worker at a time (docs/monitoring.md#alerts); merged key by key.
    "ALERTS": {
        "CHECK_SECONDS": 30,
        "MAIL_ADMINS": True,
        "RULES": [],
    },
}


_merged: dict[str, Any] | None = None


def user_settings() -> dict[str, Any]:
    """Return the project's DBOS setting, or {} when it is missing or not a dict."""
    value = getattr(settings, "DBOS", {})
    return value if isinstance(value, dict) else {}


def get(name: str) -> Any:
    """Return one DBOS setting, falling back to its default (cached; hot paths read these)."""
    global _merged
    if _merged is None:
        _merged = {**DEFAULTS, **user_settings()}
        for key, default in DEFAULTS.items():
            # A dict setting keeps the defaults of the keys the project leaves out.
            if isinstance(default, dict) and isinstance(_merged[key], dict):
                _merged[key] = {**default, **_merged[key]}
    return _merged[name]


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    """Drop the cache when a test changes the setting (override_settings)."""
    global _merged
    if setting == "DBOS":
        _merged = None


def app_name() -> str:
    """Return APP_NAME, defaulting to the settings module's top package."""
    return get("APP_NAME") or settings.SETTINGS_MODULE.split(".")[0]
