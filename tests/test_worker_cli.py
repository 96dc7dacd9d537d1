"""rundbosworker's command line, on real processes: its options in --help, -v for django-dbos's
loggers only, --executor-id, --max-workflows, --reload, and a second signal that exits at once."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_dbos import DBOS
from django_dbos.management.commands.rundbosworker import _configure_logging
from testproject.shop.workflows import fleet, fleet_job

from .conftest import ROOT, Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

STARTED = "DBOS worker "  # the start line: "DBOS worker <id> started: ..."


def log_of(worker: subprocess.Popen[bytes]) -> str:
    return Path(worker.log_path).read_text()  # type: ignore[attr-defined]


def started_lines(worker: subprocess.Popen[bytes]) -> list[str]:
    return [line for line in log_of(worker).splitlines() if STARTED in line and " started:" in line]


def test_help_documents_every_option(processes: Processes):
    text = subprocess.run(
        [sys.executable, "manage.py", "rundbosworker", "--help"],
        cwd=ROOT,
        env=processes.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in (
        "--queue NAME",
        "--concurrency N",
        "--executor-id ID",
        "--max-workflows N",
        "--reload",
        "--shutdown-timeout S",
        "-v {0,1,2,3}",
        "a second one exits at once",
    ):
        assert option in " ".join(text.split()), option


def test_verbosity_sets_django_dbos_loggers_and_leaves_the_root_logger_alone(processes):
    quiet = processes.worker("-v", "0", "--queue", fleet.name)
    chatty = processes.worker("-v", "2", "--queue", fleet.name)
    handle = fleet.enqueue(fleet_job, 0.0)
    assert handle.get_result(timeout=30) == handle.workflow_id
    wait_until(lambda: started_lines(chatty), what="the start line of the -v 2 worker")
    assert not started_lines(quiet) and "INFO" not in log_of(quiet)

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    dbos_logger = logging.getLogger("django_dbos")
    kept = dbos_logger.level
    try:
        _configure_logging(0)
        assert dbos_logger.level == logging.WARNING
        _configure_logging(3)
        assert dbos_logger.level == logging.DEBUG
        assert (root.handlers, root.level) == (handlers, level)
    finally:
        dbos_logger.setLevel(kept)


def test_executor_id_names_the_worker_that_runs_the_workflows(processes: Processes):
    processes.worker("--queue", fleet.name, "--executor-id", "cli-worker-7")
    handle = fleet.enqueue(fleet_job, 0.0)
    assert handle.get_result(timeout=30) == handle.workflow_id
    assert DBOS.get_workflow_status(handle.workflow_id).executor_id == "cli-worker-7"


def test_a_bad_executor_id_is_refused(processes: Processes):
    result = subprocess.run(
        [sys.executable, "manage.py", "rundbosworker", "--executor-id", ""],
        cwd=ROOT,
        env=processes.env(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "The executor id must be a non-empty string." in result.stderr


def test_max_workflows_starts_that_many_then_exits_0(processes: Processes):
    handles = [fleet.enqueue(fleet_job, 0.0) for _ in range(5)]
    worker = processes.worker("--queue", fleet.name, "--max-workflows", "3")
    assert worker.wait(60) == 0, log_of(worker)
    statuses = sorted(DBOS.get_workflow_status(h.workflow_id).status for h in handles)
    assert statuses == ["ENQUEUED", "ENQUEUED", "SUCCESS", "SUCCESS", "SUCCESS"]


def test_a_second_signal_exits_at_once_and_the_workflow_waits_for_recovery(processes):
    worker = processes.worker("--queue", fleet.name, "--shutdown-timeout", "120")
    handle = fleet.enqueue(fleet_job, 60.0)  # a step that sleeps a minute
    wait_until(
        lambda: DBOS.get_workflow_status(handle.workflow_id).status == "PENDING",
        what="the workflow to start",
    )
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "waiting up to 120" in log_of(worker), what="the graceful stop to begin")
    assert worker.poll() is None  # the first signal waits for the workflow
    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) == 1
    assert time.monotonic() - began < 10
    assert "second signal, exiting at once" in log_of(worker)
    assert DBOS.get_workflow_status(handle.workflow_id).status == "PENDING"


def test_reload_restarts_the_worker_when_code_changes(processes: Processes, tmp_path: Path):
    # A module of this test's own, imported at startup (sitecustomize), is watched like the rest.
    watched = tmp_path / "sitecustomize.py"
    watched.write_text("VERSION = 1\n")
    worker = processes.worker(
        "--reload", "--queue", fleet.name, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])
    )
    wait_until(lambda: len(started_lines(worker)) == 1, what="the worker to start")
    edits = iter(range(2, 1000))

    def edited_and_restarted() -> bool:
        # Edit again each second: the reloader's first look at the file may come after an edit.
        version = next(edits)
        watched.write_text(f"VERSION = {version}\n")
        os.utime(watched, (time.time() + version, time.time() + version))
        time.sleep(1)
        return len(started_lines(worker)) == 2

    wait_until(edited_and_restarted, what="the worker to restart")
    handle = fleet.enqueue(fleet_job, 0.0)
    assert handle.get_result(timeout=30) == handle.workflow_id
