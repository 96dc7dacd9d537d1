"""Steps: retries with exponential backoff, recorded failures, and declaration errors."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from django_dbos import (
    DBOS,
    DBOSConfigurationError,
    DBOSMaxStepRetriesExceeded,
    SetWorkflowID,
    WorkflowStatusString,
)

pytestmark = pytest.mark.django_db(transaction=True)

attempts: Counter[str] = Counter()
attempt_times: list[float] = []


class Flaky(Exception):
    pass


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0)
def flaky_twice(key: str) -> str:
    attempts[key] += 1
    if attempts[key] < 3:
        raise Flaky(f"attempt {attempts[key]}")
    return f"ok after {attempts[key]}"


@DBOS.step(retries_allowed=True, max_attempts=4, interval_seconds=0.05, backoff_rate=2.0)
def always_fails(key: str) -> None:
    attempts[key] += 1
    attempt_times.append(time.monotonic())
    raise Flaky(f"attempt {attempts[key]}")


@DBOS.step()
def fails_once_without_retries(key: str) -> None:
    attempts[key] += 1
    raise Flaky("no retries")


@DBOS.workflow()
def uses_flaky(key: str) -> str:
    return flaky_twice(key)


@DBOS.workflow()
def uses_always_fails(key: str) -> str:
    try:
        always_fails(key)
    except DBOSMaxStepRetriesExceeded as exc:
        return f"gave up after {exc.max_attempts}: {len(exc.errors)} errors"
    return "unreachable"


@DBOS.workflow()
def uses_no_retries(key: str) -> None:
    fails_once_without_retries(key)


@pytest.fixture(autouse=True)
def _reset():
    attempts.clear()
    attempt_times.clear()


def test_a_step_is_retried_until_it_succeeds():
    with SetWorkflowID("retry-ok"):
        assert uses_flaky("a") == "ok after 3"

    assert attempts["a"] == 3
    steps = DBOS.list_workflow_steps("retry-ok")
    assert [(s.output, s.error) for s in steps] == [("ok after 3", None)]


def test_retries_back_off_exponentially_then_raise_max_retries_exceeded():
    with SetWorkflowID("retry-exhausted"):
        assert uses_always_fails("b") == "gave up after 4: 4 errors"

    assert attempts["b"] == 4
    pauses = [later - earlier for earlier, later in itertools.pairwise(attempt_times)]
    assert len(pauses) == 3
    assert pauses[0] >= 0.05
    assert pauses[1] >= 0.1
    assert pauses[2] >= 0.2
    [step] = DBOS.list_workflow_steps("retry-exhausted")
    assert isinstance(step.error, DBOSMaxStepRetriesExceeded)
    assert "Flaky" in str(step.error)


def test_a_recorded_step_error_is_replayed_not_rerun():
    with SetWorkflowID("no-retries"), pytest.raises(Flaky, match="no retries"):
        uses_no_retries("c")
    with SetWorkflowID("no-retries"), pytest.raises(Flaky, match="no retries"):
        uses_no_retries("c")

    assert attempts["c"] == 1
    assert DBOS.get_workflow_status("no-retries").status == WorkflowStatusString.ERROR


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"interval_seconds": -1}, "interval_seconds"),
        ({"backoff_rate": 0}, "backoff_rate"),
        ({"max_interval_seconds": "soon"}, "max_interval_seconds"),
    ],
)
def test_bad_step_options_are_refused_at_declaration(options, message):
    with pytest.raises(DBOSConfigurationError, match=message):
        DBOS.step(**options)


def test_bad_transaction_isolation_level_is_refused():
    with pytest.raises(DBOSConfigurationError, match="isolation_level"):
        DBOS.transaction(isolation_level="READ WHATEVER; DROP TABLE x")


def test_bad_max_recovery_attempts_is_refused():
    with pytest.raises(DBOSConfigurationError, match="max_recovery_attempts"):
        DBOS.workflow(max_recovery_attempts=0)
