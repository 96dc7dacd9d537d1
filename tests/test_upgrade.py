"""The issue's deploy: workers of an old version die with workflows parked in `sleep` and `recv`;
a new version's worker takes over those its code continues, and leaves the others, each with its
divergence shown; `check-deploy` and `upgrade --dry-run` run under the new code first."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from django_dbos import DBOS, SetEnqueueOptions, SetWorkflowID, WorkflowStatusString
from django_dbos.models import WorkflowStatus
from testproject.shop.deploys import deliveries, letter, pack, parcel, stamp

from .conftest import ROOT, Processes, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = 20  # workflows of each kind
OLD = {"DBOS_APPLICATION_VERSION": "old", "SHOP_DEPLOY_CODE": "old"}
NEW = {"DBOS_APPLICATION_VERSION": "new", "SHOP_DEPLOY_CODE": "new"}


def manage(processes: Processes, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a management command in a process of its own, with that code and version."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=processes.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def versions() -> Counter[tuple[str, str | None]]:
    rows = WorkflowStatus.objects.values_list("name", "application_version")
    return Counter((name.rsplit(".", 1)[-1], version) for name, version in rows)


def test_a_deploy_moves_what_the_new_code_continues_and_shows_what_it_cannot(
    processes: Processes, tmp_path: Path
):
    log = tmp_path / "steps.log"
    old_worker = processes.worker(**OLD)
    for n in range(KINDS):
        with SetEnqueueOptions(app_version="old"):
            with SetWorkflowID(f"parcel-{n:02}"):
                deliveries.enqueue(parcel, str(log), 3.0)
            with SetWorkflowID(f"letter-{n:02}"):
                deliveries.enqueue(letter, str(log))

    def parked() -> bool:  # each recorded its wait: a parcel sleeps, a letter waits in recv
        return (
            WorkflowStatus.objects.filter(status="PENDING").exclude(waiting="").count() == 2 * KINDS
        )

    wait_until(parked, what="the old worker to park all 40 workflows")
    old_worker.send_signal(signal.SIGKILL)
    old_worker.wait(10)
    wait_until(
        lambda: DBOS.list_queues() and _stranded() == 2 * KINDS,
        what="the old version's workflows to be stranded",
    )

    # Under the new code, before any of its workers runs: a dry run moves nothing.
    dry = manage(processes, "dbos", "workflow", "upgrade", "--dry-run", "--json", **NEW)
    assert dry.returncode == 0, dry.stderr
    checked = json.loads(dry.stdout)
    assert len(checked) == 2 * KINDS
    assert not any(check["moved"] for check in checked)
    assert {c["workflow_id"] for c in checked if c["blocked_at"] is None} == {
        f"parcel-{n:02}" for n in range(KINDS)
    }
    assert "Dry run: 20 workflows would move to version new" in dry.stderr
    assert versions() == {("parcel", "old"): KINDS, ("letter", "old"): KINDS}
    assert not WorkflowStatus.objects.exclude(upgrade_blocked_at=None).exists()

    # check-deploy reports exactly the letters, with where they diverge, and fails.
    check = manage(processes, "dbos", "check-deploy", "--json", **NEW)
    assert check.returncode == 1, check.stderr
    blocked = {c["workflow_id"]: c["blocked_at"] for c in json.loads(check.stdout)}
    assert set(blocked) == {f"letter-{n:02}" for n in range(KINDS)}
    for divergence in blocked.values():
        assert divergence["function_id"] == 1
        assert divergence["expected"] == pack.__dbos__.name
        assert divergence["found"] == stamp.__dbos__.name
        assert divergence["version"] == "new"
    assert "20 workflows in flight cannot continue on this code" in check.stderr
    table = manage(processes, "dbos", "check-deploy", **NEW)
    assert table.returncode == 1
    assert f"operation 1: recorded {pack.__dbos__.name}, the code of version new calls" in (
        table.stdout
    )

    # The new worker, with AUTO_UPGRADE, takes the parcels over; the letters stay.
    processes.worker(DBOS_AUTO_UPGRADE="true", **NEW)
    wait_until(lambda: versions()[("parcel", "new")] == KINDS, what="the parcels to move to new")
    for n in range(KINDS):
        DBOS.send(f"parcel-{n:02}", "go", topic="go")
        DBOS.send(f"letter-{n:02}", "go", topic="go")
    wait_until(
        lambda: WorkflowStatus.objects.filter(status="SUCCESS").count() == KINDS,
        what="the parcels to finish on the new worker",
    )

    assert versions() == {("parcel", "new"): KINDS, ("letter", "old"): KINDS}
    for n in range(KINDS):
        done = DBOS.get_workflow_status(f"parcel-{n:02}")
        assert (done.status, done.output, done.upgrade_blocked_at) == ("SUCCESS", "delivered", None)
        waiting = DBOS.get_workflow_status(f"letter-{n:02}")
        assert waiting.status == WorkflowStatusString.PENDING
        assert waiting.upgrade_blocked_at is not None
        assert waiting.upgrade_blocked_at.function_id == 1
        assert waiting.upgrade_blocked_at.expected == pack.__dbos__.name
        assert waiting.upgrade_blocked_at.version == "new"
    # Every step ran exactly once, over both processes.
    lines = Counter(log.read_text().splitlines())
    expected = Counter(
        {f"parcel-{n:02} {step}": 1 for n in range(KINDS) for step in ("pack", "ship", "notify")}
    )
    expected.update(
        {f"letter-{n:02} {step}": 1 for n in range(KINDS) for step in ("pack", "stamp")}
    )
    assert lines == expected
    shown = manage(processes, "dbos", "workflow", "get", "letter-00", **NEW)
    assert f"operation 1: recorded {pack.__dbos__.name}" in shown.stdout


def _stranded() -> int:
    return sum(queue.stranded for queue in DBOS.list_queues())
