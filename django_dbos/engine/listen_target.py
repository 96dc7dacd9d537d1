"""Where the PostgreSQL listener connects: LISTEN needs a session of its own on the server.

Behind a pooler in transaction mode (PgBouncer's usual setting) a LISTEN lands on a server
connection that goes back to the pool after the statement, and its notifications reach nobody.
Django's own sign of such a pooler is DISABLE_SERVER_SIDE_CURSORS on the alias (which Django
documents for transaction pooling): then the listener needs DBOS["LISTEN_DATABASE"], a direct
connection, and without one the waits poll.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections

from .. import conf

# psycopg.connect() arguments that Django's connection parameters carry but a plain psycopg
# connection does not take.
_DJANGO_ONLY = ("cursor_factory", "context")


def through_transaction_pooler(alias: str) -> bool:
    """Whether the alias says it goes through a transaction-mode pooler."""
    return bool(settings.DATABASES[alias].get("DISABLE_SERVER_SIDE_CURSORS"))


def listen_parameters(alias: str) -> dict[str, Any] | None:
    """psycopg.connect() keyword arguments for the listener, or None to poll instead."""
    target = conf.get("LISTEN_DATABASE")
    if target is False:
        return None
    if target is None:
        if through_transaction_pooler(alias):
            return None
        target = alias
    if target in settings.DATABASES:
        params = connections[target].get_connection_params()
        return {key: value for key, value in params.items() if key not in _DJANGO_ONLY}
    return {"conninfo": target}
