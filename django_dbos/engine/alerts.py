"""The alert rules of DBOS["ALERTS"]: checked by one worker at a time, every CHECK_SECONDS;
each change (a rule begins or stops firing) recorded once, then delivered by signals and mail
(docs/monitoring.md#alerts).

Delivery is at least once: a transition is marked delivered after its signals and mail went
out, so a worker that dies between the two leaves it undelivered, and the next turn (of any
worker) sends it again. A restart repeats no delivered transition and loses no recorded one.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from django.core.mail import mail_admins

from .. import conf, signals
from ..types import Alert
from . import system_db
from .alert_rules import (
    MaxRecoveryAttempts,
    NoLiveExecutor,
    QueueOldestEnqueued,
    Rule,
    StrandedWorkflows,
    WorkflowFailures,
    parse_rules,
)

logger = logging.getLogger("django_dbos.alerts")

# The workflow ids a max_recovery_attempts message names.
EXAMPLES = 5


@dataclass(frozen=True)
class Settings:
    """DBOS["ALERTS"] as read now (checks.py reports bad values)."""

    check_seconds: float
    mail_admins: bool
    rules: list[Rule]

    @classmethod
    def current(cls) -> Settings:
        values: dict[str, Any] = conf.get("ALERTS")
        return cls(
            check_seconds=float(values["CHECK_SECONDS"]),
            mail_admins=bool(values["MAIL_ADMINS"]),
            rules=parse_rules(values["RULES"]),
        )


class Findings:
    """What one turn reads of the tables, each read at most once however many rules use it."""

    def __init__(self, now: datetime.datetime):
        self.now = now
        timeout = float(conf.get("EXECUTOR_TIMEOUT_SECONDS"))
        self.live_since = now - datetime.timedelta(seconds=timeout)

    @cached_property
    def queues(self) -> list[system_db.QueueLoad]:
        return system_db.queue_statuses([], live_since=self.live_since)

    @cached_property
    def stranded(self) -> dict[str, int]:
        return system_db.stranded_counts(live_since=self.live_since)


# A rule's condition: what is wrong, in a sentence or two, or None when all is well.
Condition = Callable[[Any, Findings], str | None]


def _workflow_failures(rule: WorkflowFailures, findings: Findings) -> str | None:
    since = findings.now - datetime.timedelta(seconds=rule.window_seconds)
    failed = system_db.failed_count(rule.workflow_name, since)
    if failed < rule.threshold:
        return None
    return (
        f"{_workflows(failed)} {rule.workflow_name} failed (ended in ERROR) in the last "
        f"{rule.window_seconds:g} s, at or above the threshold of {rule.threshold}: look at the "
        f"ERROR workflows named {rule.workflow_name} in the admin for their errors."
    )


def _queue_oldest_enqueued(rule: QueueOldestEnqueued, findings: Findings) -> str | None:
    load = next((load for load in findings.queues if load.name == rule.queue), None)
    if load is None or load.oldest_enqueued_at is None:
        return None
    waited = (findings.now - load.oldest_enqueued_at).total_seconds()
    if waited <= rule.threshold_seconds:
        return None
    return (
        f"The oldest ENQUEUED workflow of queue {rule.queue!r} has waited {waited:.0f} s, more "
        f"than {rule.threshold_seconds:g} s ({load.enqueued} enqueued, {load.pending} running, "
        f"{load.live_workers} live workers serve it): check that workers serve the queue and "
        "keep up, and its concurrency and rate limits."
    )


def _no_live_executor(rule: NoLiveExecutor, findings: Findings) -> str | None:
    unserved = [load for load in findings.queues if load.enqueued and not load.live_workers]
    if not unserved:
        return None
    queues = ", ".join(f"{load.name!r} ({load.enqueued} enqueued)" for load in unserved)
    return (
        f"Workflows wait on queues that no live worker serves: {queues}. Start "
        "`manage.py rundbosworker` (with --queue NAME if your workers serve only some queues), "
        "or check the queue names."
    )


def _max_recovery_attempts(rule: MaxRecoveryAttempts, findings: Findings) -> str | None:
    count, examples = system_db.gave_up(EXAMPLES)
    if not count:
        return None
    return (
        f"{_workflows(count)} gave up after too many recoveries (MAX_RECOVERY_ATTEMPTS_EXCEEDED), "
        f"e.g. {', '.join(examples)}: find what kills their workers, then resume or delete them."
    )


def _stranded_workflows(rule: StrandedWorkflows, findings: Findings) -> str | None:
    if not findings.stranded:
        return None
    versions = ", ".join(
        f"{count} of version {version!r}" for version, count in sorted(findings.stranded.items())
    )
    return (
        f"PENDING or ENQUEUED workflows of application versions no live worker runs: "
        f"{versions}. Start a worker of that version, or move them to the running code with "
        '`manage.py dbos workflow upgrade` (or DBOS["AUTO_UPGRADE"]); `manage.py dbos '
        "check-deploy` lists those it cannot continue (docs/deploying.md)."
    )


CONDITIONS: dict[type[Rule], Condition] = {
    WorkflowFailures: _workflow_failures,
    QueueOldestEnqueued: _queue_oldest_enqueued,
    NoLiveExecutor: _no_live_executor,
    MaxRecoveryAttempts: _max_recovery_attempts,
    StrandedWorkflows: _stranded_workflows,
}


def _workflows(count: int) -> str:
    return f"{count} workflow" if count == 1 else f"{count} workflows"


def _resolved(rule: Rule, was: str) -> str:
    return f"Resolved: the condition of {rule.kind} rule {rule.name!r} no longer holds (was: {was})"


class Alerts:
    """The alert thread of a worker: a turn every CHECK_SECONDS, when no other worker has it."""

    def __init__(self, holder: str):
        self.holder = holder

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(Settings.current().check_seconds):
            try:
                self.check()
            except Exception:
                logger.exception("Checking the alert rules failed; retrying next interval.")

    def check(self) -> list[Alert] | None:
        """Take a turn now: check every rule, record what changed, deliver what is undelivered
        (this turn's and any a dead worker left). Return what was delivered; None when another
        worker has the turn."""
        settings = Settings.current()
        with system_db.alert_turn(self.holder) as mine:
            if not mine:
                return None
            system_db.forget_rules([rule.name for rule in settings.rules])
            now = system_db.now()
            findings = Findings(now)
            firing = system_db.firing_states()
            for rule in settings.rules:
                problem = CONDITIONS[type(rule)](rule, findings)
                message = problem or _resolved(rule, firing.get(rule.name, ""))
                system_db.record_check(rule.name, rule.kind, problem is not None, message, now)
            return [self._deliver(alert, settings) for alert in system_db.undelivered_transitions()]

    def _deliver(self, alert: Alert, settings: Settings) -> Alert:
        """Send the signal and the mail, then mark the transition delivered. A failing receiver
        or mail server is logged, not retried: only a crash before the mark repeats a delivery."""
        log = logger.warning if alert.firing else logger.info
        log("Alert %s %s (%s): %s", alert.name, alert.change, alert.kind, alert.message)
        signal = signals.alert_raised if alert.firing else signals.alert_resolved
        # send_robust: each receiver runs whatever the others do; Django logs their errors.
        signal.send_robust(sender=alert.kind, alert=alert)
        if settings.mail_admins:
            try:
                mail_admins(
                    f"[{conf.app_name()}] alert {alert.name} {alert.change}",
                    f"{alert.message}\n\nRule: {alert.name} ({alert.kind})\nAt: {alert.at}",
                )
            except Exception:
                logger.exception("Could not mail the admins about alert %s.", alert.name)
        system_db.mark_delivered(alert.id, system_db.now())
        return dataclasses.replace(alert, delivered=True)
