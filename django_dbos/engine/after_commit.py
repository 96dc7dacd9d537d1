"""Workflows started inside the caller's transaction, which begin only when it commits.

Inside `transaction.atomic()` on the system database, `start_workflow` and `enqueue` write
their row in the caller's transaction (a transactional outbox): nothing can run the workflow
before the commit. Waiting on it inside that transaction would wait out the whole timeout, so
the waits ask here first and fail at once.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..errors import DBOSException
from . import system_db


class StartAtCommit:
    """The `on_commit` callback of one such start; it knows its workflow id."""

    def __init__(self, workflow_id: str, launch: Callable[[], object] | None = None):
        self.workflow_id = workflow_id
        self.launch = launch

    def __call__(self) -> None:
        if self.launch is not None:
            self.launch()


def in_transaction() -> bool:
    """Whether this thread is inside `atomic()` on the system database."""
    # The stubs type get_connection() as Any.
    connection: BaseDatabaseWrapper = transaction.get_connection(system_db.alias())
    return connection.in_atomic_block


def start_at_commit(workflow_id: str, launch: Callable[[], object] | None = None) -> None:
    """Remember a start written in the open transaction; run `launch` when it commits."""
    transaction.on_commit(StartAtCommit(workflow_id, launch), using=system_db.alias())


def refuse_to_wait(workflow_id: str, wait: str) -> None:
    """Raise DBOSException if `workflow_id` was started in this thread's open transaction."""
    connection = transaction.get_connection(system_db.alias())
    if not connection.in_atomic_block:
        return
    # Django's list of the open transaction's callbacks: a rolled-back savepoint took its own
    # away, so what is left will run at commit.
    for _savepoints, callback, _robust in connection.run_on_commit:
        if isinstance(callback, StartAtCommit) and callback.workflow_id == workflow_id:
            raise DBOSException(
                f"{wait} on workflow {workflow_id!r} inside the transaction that started it "
                "would wait for nothing: the workflow begins only when this transaction "
                "commits. Wait after the `transaction.atomic()` block ends; with "
                "ATOMIC_REQUESTS, start and wait in a view decorated with "
                "`transaction.non_atomic_requests`."
            )
