"""Helpers for tests of queued work: a Worker on a thread of the test process, meeting points
between workflows and their tests, and the overlap of recorded intervals."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django_dbos.worker import Worker


@contextmanager
def running_worker(
    *, before_stop: Callable[[], object] | None = None, queues: list[str] | None = None
) -> Iterator[Worker]:
    """Run a Worker (queue dispatch only) on a background thread until the block ends.

    Recovery is off: the worker shares this process's executor with the test's own
    `start_workflow` calls, and "recovering its own leftovers" would run those a second time.
    The scheduler is off too: the schedules other test modules declare are not these tests'.
    `before_stop` runs first at the end (release what the test's workflows wait for, so that the
    worker's shutdown does not wait for them).
    """
    worker = Worker(queues=queues, recovery=False, scheduler=False, shutdown_timeout=10)
    thread = threading.Thread(target=worker.run, name="test-dbos-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        if before_stop is not None:
            before_stop()
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "the worker did not stop within 30 s"


class Intervals:
    """Start and end times of workflow bodies, recorded from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[tuple[str, float, float]] = []

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()

    def run(self, label: str, seconds: float) -> None:
        began = time.monotonic()
        time.sleep(seconds)
        with self._lock:
            self.spans.append((label, began, time.monotonic()))

    def labels(self) -> list[str]:
        with self._lock:
            return [label for label, _, _ in sorted(self.spans, key=lambda span: span[1])]

    def max_overlap(self, only: Callable[[str], bool] = lambda label: True) -> int:
        """The largest number of recorded spans running at one moment."""
        with self._lock:
            spans = [(start, end) for label, start, end in self.spans if only(label)]
        moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        running = highest = 0
        for _, change in moments:  # at equal times an end (-1) sorts before a start (+1)
            running += change
            highest = max(highest, running)
        return highest


class Gates:
    """Named meeting points between a workflow and its test.

    Inside a workflow (or step), `gates.pass_through("x")` says it reached "x" and waits until the
    test calls `gates.open("x")`; the test waits for that with `gates.wait_reached("x")`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reached: dict[str, threading.Event] = {}
        self._opened: dict[str, threading.Event] = {}
        self._all_open = False

    def _events(self, name: str) -> tuple[threading.Event, threading.Event]:
        with self._lock:
            reached = self._reached.setdefault(name, threading.Event())
            opened = self._opened.setdefault(name, threading.Event())
            if self._all_open:
                opened.set()
            return reached, opened

    def pass_through(self, name: str, timeout: float = 10) -> bool:
        reached, opened = self._events(name)
        reached.set()
        return opened.wait(timeout)

    def wait_reached(self, name: str, timeout: float = 10) -> bool:
        return self._events(name)[0].wait(timeout)

    def open(self, name: str) -> None:
        self._events(name)[1].set()

    def close(self, name: str) -> None:
        reached, opened = self._events(name)
        reached.clear()
        opened.clear()

    def open_all(self) -> None:
        """Let every waiting workflow through, now and later (at the end of a test)."""
        with self._lock:
            self._all_open = True
            events = list(self._opened.values())
        for event in events:
            event.set()

    def reset(self) -> None:
        with self._lock:
            self._reached.clear()
            self._opened.clear()
            self._all_open = False
