"""Alert rules (DBOS["ALERTS"]): each kind fires once and resolves once, delivered by signals and
mail once each, across restarts and racing checkers; a worker process delivers them; the admin
dashboard shows them."""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connections
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from django_dbos import DBOS, Queue, SetWorkflowID
from django_dbos.engine import system_db
from django_dbos.engine.alerts import Alerts
from django_dbos.models import AlertState, AlertTransition, Status, WorkflowStatus
from django_dbos.signals import alert_raised, alert_resolved
from django_dbos.types import Alert

from .conftest import Processes, wait_until
from .families import child

pytestmark = pytest.mark.django_db(transaction=True)

unserved = Queue("talert-unserved")  # no worker serves it: what is enqueued on it waits


@DBOS.step()
def declines(value: str) -> str:
    raise ValueError(f"card {value} declined")


@DBOS.workflow()
def checkout(value: str) -> str:
    return declines(value)


def alerts_setting(*rules: dict[str, Any], mail_admins: bool = True) -> dict[str, Any]:
    return {**_dbos(), "ALERTS": {"RULES": list(rules), "MAIL_ADMINS": mail_admins}}


def _dbos() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.DBOS)


@pytest.fixture
def received() -> Iterator[list[tuple[str, Alert]]]:
    """The alerts the signals send, as ("raised" | "resolved", alert)."""
    seen: list[tuple[str, Alert]] = []

    def on_raised(sender: str, alert: Alert, **kwargs: Any) -> None:
        seen.append(("raised", alert))

    def on_resolved(sender: str, alert: Alert, **kwargs: Any) -> None:
        seen.append(("resolved", alert))

    alert_raised.connect(on_raised, weak=False)
    alert_resolved.connect(on_resolved, weak=False)
    yield seen
    alert_raised.disconnect(on_raised)
    alert_resolved.disconnect(on_resolved)


def ran(workflow: Any, workflow_id: str, *args: Any) -> str:
    # checkout fails on purpose: its ERROR is what the rule counts.
    with SetWorkflowID(workflow_id), contextlib.suppress(ValueError):
        workflow(*args)
    return workflow_id


def age(workflow_id: str, *, seconds: float, field: str) -> None:
    """Make a workflow look as if `field` (created_at, updated_at) was that long ago."""
    moment = timezone.now() - datetime.timedelta(seconds=seconds)
    WorkflowStatus.objects.filter(workflow_id=workflow_id).update(**{field: moment})


def gave_up(workflow_id: str) -> str:
    """A finished workflow, set as if its recoveries had run out (they take minutes to)."""
    ran(child, workflow_id, "x")
    WorkflowStatus.objects.filter(workflow_id=workflow_id).update(
        status=Status.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    )
    return workflow_id


# Each kind: its rule, what makes it fire, what resolves it, and what its message names.
Case = tuple[dict[str, Any], Callable[[], str], Callable[[str], None], list[str]]


def _failures() -> Case:
    def fire() -> str:
        for number in range(3):
            ran(checkout, f"fail-{number}", str(number))
        return "fail-0"

    def resolve(_: str) -> None:
        for number in range(3):  # they ended long ago: out of the window
            age(f"fail-{number}", seconds=3600, field="updated_at")

    rule = {
        "name": "checkout-failing",
        "kind": "workflow_failures",
        "workflow_name": checkout.__dbos__.name,  # type: ignore[attr-defined]
        "threshold": 3,
        "window_seconds": 600,
    }
    named = ["3 workflows tests.test_alerts.checkout failed", "600 s", "threshold of 3"]
    return rule, fire, resolve, named


def _queue_age() -> Case:
    def fire() -> str:
        workflow_id = unserved.enqueue(child, "late").workflow_id
        age(workflow_id, seconds=120, field="created_at")
        return workflow_id

    rule = {
        "name": "unserved-late",
        "kind": "queue_oldest_enqueued",
        "queue": unserved.name,
        "threshold_seconds": 60,
    }
    return rule, fire, DBOS.cancel_workflow, ["'talert-unserved'", "waited 120 s", "60 s"]


def _no_worker() -> Case:
    def fire() -> str:
        return unserved.enqueue(child, "waiting").workflow_id

    rule = {"name": "no-worker", "kind": "no_live_executor"}
    return rule, fire, DBOS.cancel_workflow, ["'talert-unserved' (1 enqueued)", "rundbosworker"]


def _gave_up() -> Case:
    rule = {"name": "gave-up", "kind": "max_recovery_attempts"}
    return (
        rule,
        lambda: gave_up("crashed-1"),
        DBOS.delete_workflow,
        ["1 workflow gave up", "crashed-1"],
    )


def _stranded() -> Case:
    def fire() -> str:
        workflow_id = unserved.enqueue(child, "old").workflow_id
        WorkflowStatus.objects.filter(workflow_id=workflow_id).update(application_version="v0")
        return workflow_id

    rule = {"name": "stranded", "kind": "stranded_workflows"}
    return rule, fire, DBOS.cancel_workflow, ["1 of version 'v0'"]


CASES = {
    "workflow_failures": _failures,
    "queue_oldest_enqueued": _queue_age,
    "no_live_executor": _no_worker,
    "max_recovery_attempts": _gave_up,
    "stranded_workflows": _stranded,
}


@pytest.mark.parametrize("kind", list(CASES))
def test_each_kind_fires_once_and_resolves_once(kind, received):
    rule, fire, resolve, named = CASES[kind]()
    checker = Alerts("worker-a")
    with override_settings(DBOS=alerts_setting(rule)):
        assert checker.check() == []  # all is well: nothing to say
        subject = fire()
        raised = checker.check()
        assert checker.check() == []  # still firing: said once
        resolve(subject)
        resolved = checker.check()
        assert checker.check() == []

    assert [(alert.name, alert.kind, alert.change) for alert in raised + resolved] == [
        (rule["name"], kind, "raised"),
        (rule["name"], kind, "resolved"),
    ]
    for part in named:
        assert part in raised[0].message
    assert resolved[0].message.startswith(f"Resolved: the condition of {kind} rule")
    assert [(change, alert.id) for change, alert in received] == [
        ("raised", raised[0].id),
        ("resolved", resolved[0].id),
    ]
    assert [message.subject for message in mail.outbox] == [
        f"[Django] [shop] alert {rule['name']} raised",
        f"[Django] [shop] alert {rule['name']} resolved",
    ]
    assert mail.outbox[0].to == ["ops@example.com"]
    assert raised[0].message in mail.outbox[0].body
    assert not AlertTransition.objects.filter(delivered_at__isnull=True).exists()


def test_a_firing_rule_keeps_its_message_up_to_date_without_a_new_transition(received):
    with override_settings(
        DBOS=alerts_setting({"name": "gave-up", "kind": "max_recovery_attempts"})
    ):
        gave_up("crashed-1")
        Alerts("worker-a").check()
        gave_up("crashed-2")
        Alerts("worker-a").check()

    assert len(received) == 1
    assert AlertState.objects.get().message.startswith("2 workflows gave up")


def test_mail_admins_false_sends_only_the_signals(received):
    rule = {"name": "gave-up", "kind": "max_recovery_attempts"}
    with override_settings(DBOS=alerts_setting(rule, mail_admins=False)):
        gave_up("crashed-1")
        Alerts("worker-a").check()

    assert [change for change, _ in received] == ["raised"]
    assert mail.outbox == []


def test_a_new_checker_repeats_no_delivered_transition(received):
    with override_settings(
        DBOS=alerts_setting({"name": "gave-up", "kind": "max_recovery_attempts"})
    ):
        gave_up("crashed-1")
        Alerts("worker-a").check()
        # The worker restarts: a new checker, and a new executor id.
        assert Alerts("worker-b").check() == []

    assert len(received) == 1
    assert len(mail.outbox) == 1


def test_a_transition_recorded_but_not_delivered_is_delivered_by_the_next_checker(received):
    rule = {"name": "gave-up", "kind": "max_recovery_attempts"}
    gave_up("crashed-1")
    # A worker recorded the change, then died before it delivered it.
    system_db.record_check(
        "gave-up", "max_recovery_attempts", True, "1 workflow gave up", timezone.now()
    )

    with override_settings(DBOS=alerts_setting(rule)):
        delivered = Alerts("worker-b").check()
        assert Alerts("worker-b").check() == []

    assert [(alert.name, alert.change) for alert in delivered] == [("gave-up", "raised")]
    assert [change for change, _ in received] == ["raised"]
    assert len(mail.outbox) == 1


def test_a_failing_receiver_is_logged_and_the_mail_still_goes(received, caplog):
    def broken(sender: str, alert: Alert, **kwargs: Any) -> None:
        raise ConnectionError("the webhook is down")

    rule = {"name": "gave-up", "kind": "max_recovery_attempts"}
    gave_up("crashed-1")
    alert_raised.connect(broken, weak=False)
    try:
        with override_settings(DBOS=alerts_setting(rule)):
            Alerts("worker-a").check()
            assert Alerts("worker-a").check() == []  # not retried
    finally:
        alert_raised.disconnect(broken)

    assert [change for change, _ in received] == ["raised"]
    # Django logs the receiver's error (logger django.dispatch, which mails the admins too).
    assert "the webhook is down" in caplog.text
    assert [m.subject for m in mail.outbox if "alert" in m.subject] == [
        "[Django] [shop] alert gave-up raised"
    ]


class Died(BaseException):
    """A worker killed between delivering an alert and marking it delivered."""


def test_a_checker_that_dies_mid_delivery_leaves_it_to_the_next_at_least_once(received):
    def dies(sender: str, alert: Alert, **kwargs: Any) -> None:
        raise Died

    rule = {"name": "gave-up", "kind": "max_recovery_attempts"}
    gave_up("crashed-1")
    with override_settings(DBOS=alerts_setting(rule, mail_admins=False)):
        alert_raised.connect(dies, weak=False)
        try:
            with pytest.raises(Died):
                Alerts("worker-a").check()
        finally:
            alert_raised.disconnect(dies)
        # Its turn ended with it: the next worker does not wait for the lease to expire.
        Alerts("worker-b").check()
        Alerts("worker-b").check()

    first, second = (alert for _, alert in received)
    assert first.id == second.id  # the same transition, sent again: a key to deduplicate on
    assert AlertTransition.objects.get().delivered_at is not None


def test_two_checkers_racing_deliver_each_transition_once(received):
    rule = {"name": "gave-up", "kind": "max_recovery_attempts"}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def checking(holder: str) -> None:
        try:
            start.wait(10)
            for _ in range(15):
                Alerts(holder).check()
        except BaseException as error:  # reported by the test's thread
            errors.append(error)
        finally:
            connections.close_all()

    with override_settings(DBOS=alerts_setting(rule)):
        gave_up("crashed-1")
        racers = [threading.Thread(target=checking, args=(f"worker-{n}",)) for n in range(2)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)

    assert errors == []
    assert [change for change, _ in received] == ["raised"]
    assert len(mail.outbox) == 1
    assert AlertTransition.objects.count() == 1


def test_a_rule_removed_from_the_settings_is_forgotten_and_its_history_kept(received):
    with override_settings(
        DBOS=alerts_setting({"name": "gave-up", "kind": "max_recovery_attempts"})
    ):
        gave_up("crashed-1")
        Alerts("worker-a").check()
    with override_settings(DBOS=alerts_setting({"name": "stranded", "kind": "stranded_workflows"})):
        Alerts("worker-a").check()

    assert list(AlertState.objects.values_list("name", flat=True)) == ["stranded"]
    assert AlertTransition.objects.get().name == "gave-up"


def test_the_dashboard_shows_what_fires_now_and_the_recent_changes(admin_client):
    rules = [
        {"name": "gave-up", "kind": "max_recovery_attempts"},
        {"name": "stranded", "kind": "stranded_workflows"},
    ]
    with override_settings(DBOS=alerts_setting(*rules)):
        page = admin_client.get(reverse("admin:django_dbos_dashboard")).content.decode()
        assert 'No alert fires now (rules go in DBOS["ALERTS"]' in page

        gave_up("crashed-1")
        Alerts("worker-a").check()
        DBOS.delete_workflow("crashed-1")
        gave_up("crashed-2")
        Alerts("worker-a").check()
        page = admin_client.get(reverse("admin:django_dbos_dashboard")).content.decode()

    firing = page.split('id="dbos-alerts-firing"')[1].split("</table>")[0]
    history = page.split('id="dbos-alerts-history"')[1].split("</table>")[0]
    assert "gave-up" in firing and "max_recovery_attempts" in firing
    assert "crashed-2" in firing and "stranded" not in firing
    assert history.count("<tr>") == 1 + 1  # the header and the one transition
    assert "raised" in history and "yes" in history


def test_the_admin_lists_the_alert_rows_read_only(admin_client):
    with override_settings(
        DBOS=alerts_setting({"name": "gave-up", "kind": "max_recovery_attempts"})
    ):
        gave_up("crashed-1")
        Alerts("worker-a").check()

    states = admin_client.get(reverse("admin:django_dbos_alertstate_changelist"))
    transitions = admin_client.get(reverse("admin:django_dbos_alerttransition_changelist"))
    add = admin_client.get(reverse("admin:django_dbos_alerttransition_add"))

    assert "gave-up" in states.content.decode()
    assert "crashed-1" in transitions.content.decode()
    assert add.status_code == 403


def mails(folder: Path) -> list[str]:
    """The subjects of the messages the file mail backend wrote to `folder`, oldest first (a
    file's name has the second it was written, then a random number)."""
    return [
        line.removeprefix("Subject: ")
        for path in sorted(folder.glob("*.log"), key=lambda path: path.stat().st_mtime_ns)
        for line in path.read_text().splitlines()
        if line.startswith("Subject: ")
    ]


def test_a_worker_process_delivers_a_firing_and_its_resolution_once(processes: Processes, tmp_path):
    outbox = tmp_path / "mail"
    outbox.mkdir()
    rules = '[{"name": "gave-up", "kind": "max_recovery_attempts"}]'
    env = {
        "DBOS_ALERTS_RULES": rules,
        "DBOS_ALERTS_CHECK_SECONDS": "0.2",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(outbox),
    }

    def checked_after(moment: datetime.datetime) -> bool:
        return AlertState.objects.filter(name="gave-up", checked_at__gt=moment).exists()

    worker = processes.worker("--queue", "talert-worker", **env)
    gave_up("crashed-1")
    wait_until(lambda: mails(outbox) == ["[Django] [shop] alert gave-up raised"], what="the mail")
    DBOS.delete_workflow("crashed-1")
    wait_until(lambda: len(mails(outbox)) == 2, what="the resolution's mail")

    worker.terminate()
    assert worker.wait(30) == 0
    restarted = timezone.now()
    processes.worker("--queue", "talert-worker", **env)
    wait_until(lambda: checked_after(restarted), what="the restarted worker's check")
    first_turn = timezone.now()  # the next check begins after the first turn ended
    wait_until(lambda: checked_after(first_turn), what="its next check")

    assert mails(outbox) == [
        "[Django] [shop] alert gave-up raised",
        "[Django] [shop] alert gave-up resolved",
    ]
    assert "Resolved: the condition of max_recovery_attempts rule 'gave-up'" in "".join(
        path.read_text() for path in outbox.glob("*.log")
    )
