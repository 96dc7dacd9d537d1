"""The `DBOS` setting, read with its defaults.

Values are read on every access (cheap: a dict lookup) so that `override_settings` in tests and
settings changed before the engine starts are honoured. Validation lives in `checks.py`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

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
}


def user_settings() -> dict[str, Any]:
    """Return the project's DBOS setting, or {} when it is missing or not a dict."""
    value = getattr(settings, "DBOS", {})
    return value if isinstance(value, dict) else {}


def get(name: str) -> Any:
    """Return one DBOS setting, falling back to its default."""
    return user_settings().get(name, DEFAULTS[name])


def app_name() -> str:
    """Return APP_NAME, defaulting to the settings module's top package."""
    return get("APP_NAME") or settings.SETTINGS_MODULE.split(".")[0]
