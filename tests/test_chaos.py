"""The short chaos run (chaos/run.py, about two minutes): three workers killed with SIGKILL every
few seconds, a PostgreSQL restart and backend terminations under a seeded load that uses every
primitive; it fails on any broken invariant. The long run is one command (chaos/README.md)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.postgres

RUN_TIMEOUT_S = 480


def postgres_is_up() -> bool:
    result = subprocess.run(
        ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], capture_output=True, timeout=10
    )
    return result.returncode == 0


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_a_short_chaos_run_breaks_no_invariant():
    command = [
        sys.executable,
        str(ROOT / "chaos" / "run.py"),
        "--seed",
        "1",
        "--minutes",
        "1.5",
        "--db-restarts",
        "1",
    ]
    try:
        run = subprocess.run(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    finally:
        # The run restarts its own private server; the shared one must be up for the next tests
        # whatever happened (and with --cluster it is the one restarted).
        deadline = time.monotonic() + 60
        while not postgres_is_up() and time.monotonic() < deadline:
            time.sleep(1)
    print(run.stdout)
    assert run.returncode == 0, "the chaos run found broken invariants:\n" + run.stdout[-6000:]
