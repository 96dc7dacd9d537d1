"""What the `dbos` fixture does around a test: empty system tables before, no threads after."""

from __future__ import annotations

import threading
import warnings

from ..engine import clock, system_db
from ..types import Status

SHUTDOWN_SECONDS = 10.0


def start_clean() -> None:
    """Stop what earlier tests left running and empty the system tables."""
    from ..api import DBOS

    DBOS.shutdown(timeout_seconds=SHUTDOWN_SECONDS)
    if clock.installed() is not None:  # a frozen clock outlived its test
        clock.uninstall()
    system_db.empty_every_table()


def cancel_unfinished() -> None:
    """Cancel every workflow still waiting or running, so that its thread stops at once."""
    from ..api import DBOS

    unfinished = (
        system_db.workflow_rows()
        .filter(status__in=[Status.PENDING, Status.ENQUEUED])
        .values_list("workflow_id", flat=True)
    )
    for workflow_id in list(unfinished):
        DBOS.cancel_workflow(workflow_id)


def finish() -> None:
    """Stop the engine's threads and forget this process's executor."""
    from ..api import DBOS

    cancel_unfinished()
    DBOS.shutdown(timeout_seconds=SHUTDOWN_SECONDS)
    left = [t.name for t in threading.enumerate() if t.name.startswith("dbos-") and t.is_alive()]
    if left:
        warnings.warn(
            f"DBOS threads still running after the test: {', '.join(sorted(left))}. A workflow "
            "is blocked outside any durable wait (in a step, or waiting on something else).",
            ResourceWarning,
            stacklevel=1,
        )
