"""Django's connection pool (OPTIONS["pool"], PostgreSQL): a worker at full load never waits
for a connection longer than the pool lets it, because it runs no more workflow threads than the
pool has room for; a pool too small for any worker stops it with the arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_dbos.engine import executor
from testproject.shop.workflows import bulk, ten_step_journal

from .conftest import Processes, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_worker_at_full_load_fits_the_pool_and_no_thread_times_out(
    processes: Processes, tmp_path: Path
):
    # Room for three workflow threads beside the engine's own; asked for twenty-four. Each
    # workflow holds its connection for about a second, as long as the pool's timeout.
    size = executor.connections_needed(0) + 3
    worker = processes.worker(
        "--queue",
        bulk.name,
        "--concurrency",
        "24",
        DJANGO_DB_POOL_MAX_SIZE=str(size),
        DJANGO_DB_POOL_TIMEOUT="1",
    )
    journals = [tmp_path / f"journal-{number}.txt" for number in range(24)]
    handles = [bulk.enqueue(ten_step_journal, str(journal), 0.1) for journal in journals]
    for handle in handles:
        assert handle.get_result(timeout=60) == 10
    for journal in journals:
        assert journal.read_text().splitlines() == [f"step {n}" for n in range(1, 11)]
    log = Path(worker.log_path).read_text()
    assert f"holds {size} connections: this worker runs 3 workflow threads instead of 24" in log
    assert "PoolTimeout" not in log and "couldn't get a connection" not in log
    assert worker.poll() is None


def test_a_pool_too_small_for_a_worker_stops_it_and_says_why(processes: Processes):
    worker = processes.worker(DJANGO_DB_POOL_MAX_SIZE="10")
    wait_until(lambda: worker.poll() is not None, what="the worker to exit")
    assert worker.returncode == 1
    log = Path(worker.log_path).read_text()
    needed = executor.connections_needed(1)
    assert f"holds 10 connections at most; a worker needs at least {needed}" in log
