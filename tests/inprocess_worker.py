"""The real Worker on a thread of the test process, for the scheduler tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django_dbos.worker import Worker


@contextmanager
def running_worker(**options: object) -> Iterator[Worker]:
    """Run a Worker (dispatch, schedules, recovery) on a thread until the block ends."""
    worker = Worker(shutdown_timeout=10, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
