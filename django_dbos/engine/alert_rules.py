"""The rules of DBOS["ALERTS"]: one frozen dataclass per kind, and what is wrong with a rule as
written (checks.py reports it; the evaluator only ever sees rules that parse)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, kw_only=True)
class Rule:
    """A named condition on the system tables; `kind` says which."""

    kind: ClassVar[str]
    name: str


@dataclass(frozen=True, kw_only=True)
class WorkflowFailures(Rule):
    """At least `threshold` workflows named `workflow_name` ended in ERROR within the window."""

    kind: ClassVar[str] = "workflow_failures"
    workflow_name: str
    threshold: int
    window_seconds: float


@dataclass(frozen=True, kw_only=True)
class QueueOldestEnqueued(Rule):
    """The oldest ENQUEUED workflow of `queue` has waited longer than `threshold_seconds`."""

    kind: ClassVar[str] = "queue_oldest_enqueued"
    queue: str
    threshold_seconds: float


@dataclass(frozen=True, kw_only=True)
class NoLiveExecutor(Rule):
    """Some queue has ENQUEUED workflows and no live worker serves it."""

    kind: ClassVar[str] = "no_live_executor"


@dataclass(frozen=True, kw_only=True)
class MaxRecoveryAttempts(Rule):
    """Some workflow is in MAX_RECOVERY_ATTEMPTS_EXCEEDED."""

    kind: ClassVar[str] = "max_recovery_attempts"


@dataclass(frozen=True, kw_only=True)
class StrandedWorkflows(Rule):
    """PENDING or ENQUEUED work of an application version that no live worker runs."""

    kind: ClassVar[str] = "stranded_workflows"


KINDS: dict[str, type[Rule]] = {
    rule.kind: rule
    for rule in (
        WorkflowFailures,
        QueueOldestEnqueued,
        NoLiveExecutor,
        MaxRecoveryAttempts,
        StrandedWorkflows,
    )
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _count(value: Any) -> bool:
    return _is_number(value) and isinstance(value, int) and value >= 1


def _seconds(value: Any) -> bool:
    return _is_number(value) and 0 <= value < math.inf


def _window(value: Any) -> bool:
    return _seconds(value) and value > 0


# What each key of a rule takes: a test of the value, and how to say it in a message.
_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (_text, "a non-empty string"),
    "workflow_name": (_text, "a workflow's registered name"),
    "queue": (_text, "a queue's name"),
    "threshold": (_count, "an integer >= 1"),
    "window_seconds": (_window, "a number of seconds > 0"),
    "threshold_seconds": (_seconds, "a number of seconds >= 0"),
}


def _keys(kind: type[Rule]) -> list[str]:
    return [field.name for field in dataclasses.fields(kind)]


def rule_problems(index: int, rule: Any) -> list[str]:
    """What is wrong with the rule at this position of RULES: sentences saying what to write."""
    where = f'DBOS["ALERTS"]["RULES"][{index}]'
    if not isinstance(rule, dict):
        return [f"{where} must be a dict, not {type(rule).__name__}."]
    kind = KINDS.get(rule.get("kind"))  # type: ignore[arg-type]  # any value; a miss is None
    if kind is None:
        return [f"{where} has kind {rule.get('kind')!r}; write one of: {', '.join(KINDS)}."]
    expected = _keys(kind)
    problems = []
    missing = [key for key in expected if key not in rule]
    if missing:
        problems.append(
            f"{where} (kind {kind.kind!r}) lacks {', '.join(missing)}; "
            f"a {kind.kind} rule has the keys kind, {', '.join(expected)}."
        )
    extra = sorted(str(key) for key in set(rule) - {"kind", *expected})
    if extra:
        problems.append(
            f"{where} (kind {kind.kind!r}) has unknown keys {', '.join(extra)}; "
            f"a {kind.kind} rule has the keys kind, {', '.join(expected)}."
        )
    for key in expected:
        valid, what = _KEYS[key]
        if key in rule and not valid(rule[key]):
            problems.append(f'{where}["{key}"] must be {what}, not {rule[key]!r}.')
    return problems


def duplicate_names(rules: list[Any]) -> list[str]:
    """The names that more than one rule has (a rule's state is kept under its name)."""
    names = Counter(rule.get("name") for rule in rules if isinstance(rule, dict))
    return sorted(str(name) for name, count in names.items() if count > 1)


def parse_rules(rules: Any) -> list[Rule]:
    """The rules that are valid as written, as dataclasses, the first of each name (the system
    checks report the others)."""
    if not isinstance(rules, list):
        return []
    parsed: list[Rule] = []
    for index, rule in enumerate(rules):
        if rule_problems(index, rule) or rule["name"] in {done.name for done in parsed}:
            continue
        kind = KINDS[rule["kind"]]
        values = {key: rule[key] for key in _keys(kind)}
        for key in ("window_seconds", "threshold_seconds"):
            if key in values:
                values[key] = float(values[key])
        parsed.append(kind(**values))
    return parsed
