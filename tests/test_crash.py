"""Crash tests: real processes killed with SIGKILL, and workers that finish their work."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from django_dbos import DBOS, WorkflowStatusString
from testproject.shop.models import LedgerEntry
from testproject.shop.workflows import append_line, ten_step_journal

from .conftest import Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

WORKFLOW_ID = "crash-journal"


def journal_lines(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines()) if path.exists() else Counter()


def recorded_lines() -> set[str]:
    """The lines whose step had been checkpointed: those steps must never run again."""
    return {
        step.output
        for step in DBOS.list_workflow_steps(WORKFLOW_ID)
        if step.function_name == append_line.__dbos__.name
    }


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def test_a_workflow_survives_kill_9_of_its_process_and_then_of_its_worker(
    processes: Processes, tmp_path: Path
):
    journal = tmp_path / "journal.txt"
    web = processes.python(
        "from django_dbos import DBOS, SetWorkflowID\n"
        "from testproject.shop.workflows import ten_step_journal\n"
        f"with SetWorkflowID({WORKFLOW_ID!r}):\n"
        f"    DBOS.start_workflow(ten_step_journal, {str(journal)!r}, 0.3).get_result()\n"
    )
    wait_until(lambda: journal_lines(journal)["step 2"], what="the first process to reach step 2")
    kill(web)
    done_before_first_kill, journal_at_first_kill = recorded_lines(), journal_lines(journal)

    first_worker = processes.worker()
    wait_until(lambda: journal_lines(journal)["step 7"], what="the first worker to reach step 7")
    kill(first_worker)
    done_before_second_kill, journal_at_second_kill = recorded_lines(), journal_lines(journal)
    assert "step 6" in done_before_second_kill  # the first worker really made progress

    processes.worker()
    wait_until(
        lambda: DBOS.get_workflow_status(WORKFLOW_ID).status == WorkflowStatusString.SUCCESS,
        what="a second worker to finish the workflow",
    )

    lines = journal_lines(journal)
    assert set(lines) == {f"step {n}" for n in range(1, 11)}
    # A step may run twice when its process dies between running it and recording it; once
    # recorded, it never runs again.
    for recorded, journal_then in (
        (done_before_first_kill, journal_at_first_kill),
        (done_before_second_kill, journal_at_second_kill),
    ):
        assert {line: lines[line] for line in recorded} == {
            line: journal_then[line] for line in recorded
        }, "a step that had recorded its output ran again"
    assert done_before_first_kill <= done_before_second_kill
    assert LedgerEntry.objects.filter(reference=str(journal)).count() == 1
    status = DBOS.get_workflow_status(WORKFLOW_ID)
    assert status.output == 10
    assert status.recovery_attempts == 2
    assert [s.function_id for s in DBOS.list_workflow_steps(WORKFLOW_ID)] == list(range(1, 12))


def test_the_worker_stops_cleanly_on_sigterm(processes: Processes):
    worker = processes.worker("--shutdown-timeout", "5")
    wait_until(lambda: "started" in Path(worker.log_path).read_text(), what="the worker to start")

    worker.send_signal(signal.SIGTERM)

    assert worker.wait(15) == 0
    assert "DBOS worker stopped." in Path(worker.log_path).read_text()


def test_ten_step_journal_runs_inline(tmp_path: Path):
    journal = tmp_path / "inline.txt"
    assert ten_step_journal(str(journal)) == 10
    assert journal_lines(journal) == Counter({f"step {n}": 1 for n in range(1, 11)})


def test_the_ten_step_journal_ends_the_same_whichever_step_it_crashes_after(dbos, tmp_path: Path):
    """With the testing tools: a crash (and recovery) at every step boundary, in-process."""
    from django_dbos.testing import crash_at_every_step

    journal = tmp_path / "journal.txt"

    runs = crash_at_every_step(
        ten_step_journal,
        str(journal),
        reset=lambda: (journal.unlink(missing_ok=True), LedgerEntry.objects.all().delete()),
        end_state=lambda: (
            sorted(set(journal.read_text().splitlines())),
            LedgerEntry.objects.filter(reference=str(journal)).count(),
        ),
    )

    assert [run.at_step for run in runs] == list(range(-1, 12))  # no crash, then 0 to 11
    assert {run.end_state[1] for run in runs} == {1}  # the transaction's row, exactly once
