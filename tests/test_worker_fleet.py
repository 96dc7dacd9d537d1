"""Several worker processes share one queue: global limits hold, and a killed worker's
workflows finish on the others."""

from __future__ import annotations

import signal

import pytest
from django.db.models import Count

from django_dbos import WorkflowStatusString
from django_dbos.models import OperationOutput, WorkflowStatus
from testproject.shop.models import LedgerEntry
from testproject.shop.workflows import fleet, fleet_job, fleet_work

from .conftest import Processes, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

JOBS = 200


def most_at_once(intervals: list[tuple]) -> int:
    """The largest number of (start, end) intervals that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_three_workers_share_a_global_limit_and_survive_a_kill(processes: Processes):
    workers = [
        processes.worker("--concurrency", "8", DBOS_EXECUTOR_ID=f"fleet-worker-{n}")
        for n in range(3)
    ]
    handles = [fleet.enqueue(fleet_job, 0.05) for _ in range(JOBS)]

    wait_until(
        lambda: WorkflowStatus.objects.filter(status="SUCCESS").count() >= JOBS // 4,
        what="a quarter of the jobs to finish",
    )
    wait_until(
        lambda: WorkflowStatus.objects.filter(
            status="PENDING", executor_id="fleet-worker-0"
        ).exists(),
        what="the first worker to be running a job",
        timeout=60,
    )
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    held = set(
        WorkflowStatus.objects.filter(status="PENDING", executor_id="fleet-worker-0").values_list(
            "workflow_id", flat=True
        )
    )
    assert held, "the killed worker held no workflow when it died"
    for handle in handles:
        assert handle.get_result(timeout=60) == handle.workflow_id

    assert WorkflowStatus.objects.filter(status=WorkflowStatusString.SUCCESS).count() == JOBS
    # Every job's transaction committed exactly once.
    per_job = LedgerEntry.objects.values("reference").annotate(rows=Count("id"))
    assert sorted(row["reference"] for row in per_job) == sorted(h.workflow_id for h in handles)
    assert {row["rows"] for row in per_job} == {1}
    # The global limit held across all workers (recorded step intervals).
    steps = OperationOutput.objects.filter(function_name=fleet_work.__dbos__.name)
    assert most_at_once(list(steps.values_list("started_at", "completed_at"))) <= 4
    # The workflows the killed worker held were finished by the other two.
    finished_by = WorkflowStatus.objects.filter(workflow_id__in=held)
    assert {row.executor_id for row in finished_by} <= {"fleet-worker-1", "fleet-worker-2"}
    assert {row.recovery_attempts for row in finished_by} == {1}
