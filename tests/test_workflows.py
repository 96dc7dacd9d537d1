"""Running workflows: inline, started, idempotent by id, children, errors and handles."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from django_dbos import (
    DBOS,
    DBOSException,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotRegisteredError,
    DBOSWorkflowConflictIDError,
    SetWorkflowID,
    WorkflowStatusString,
)

pytestmark = pytest.mark.django_db(transaction=True)

calls: Counter[str] = Counter()
release = threading.Event()


class OutOfStock(Exception):
    """A user exception that get_result() must re-raise as itself."""


@DBOS.step()
def reserve(item: str) -> str:
    calls[f"reserve:{item}"] += 1
    return f"reserved {item}"


@DBOS.workflow()
def order(item: str, quantity: int = 1) -> dict:
    calls[f"order:{item}"] += 1
    return {"note": reserve(item), "quantity": quantity, "workflow_id": DBOS.workflow_id}


@DBOS.workflow()
def failing_order(item: str) -> None:
    reserve(item)
    raise OutOfStock(f"no {item} left")


@DBOS.workflow()
def slow_order(item: str) -> str:
    calls[f"slow:{item}"] += 1
    release.wait(10)
    return item


@DBOS.step()
def which_step() -> list:
    return [DBOS.workflow_id, DBOS.step_id]


@DBOS.workflow()
def ids_inside() -> list:
    return [which_step(), which_step(), DBOS.step_id]


@DBOS.workflow()
def parent(count: int) -> list[str]:
    children = [order(f"child-{i}") for i in range(count)]
    handle = DBOS.start_workflow(order, "started-child")
    return [child["workflow_id"] for child in children] + [handle.get_result()["workflow_id"]]


@pytest.fixture(autouse=True)
def _reset_counters():
    calls.clear()
    release.clear()
    yield
    release.set()


def test_inline_call_returns_result_and_records_each_step():
    with SetWorkflowID("order-1"):
        result = order("book", quantity=2)

    assert result == {"note": "reserved book", "quantity": 2, "workflow_id": "order-1"}
    status = DBOS.get_workflow_status("order-1")
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.name == order.__dbos__.name
    assert status.input == {"args": ["book"], "kwargs": {"quantity": 2}}
    assert status.output == result
    steps = DBOS.list_workflow_steps("order-1")
    assert [(s.function_id, s.function_name, s.output) for s in steps] == [
        (1, reserve.__dbos__.name, "reserved book")
    ]
    assert steps[0].completed_at >= steps[0].started_at


def test_start_workflow_runs_on_a_thread_and_returns_a_handle():
    handle = DBOS.start_workflow(order, "pen")

    assert handle.get_result(timeout=10)["note"] == "reserved pen"
    assert handle.get_workflow_id() == handle.workflow_id
    assert handle.get_status().status == WorkflowStatusString.SUCCESS
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == handle.get_result()


def test_same_workflow_id_runs_once_and_both_callers_get_the_result():
    with SetWorkflowID("once"):
        first = order("lamp")
    with SetWorkflowID("once"):
        second = order("lamp")
    with SetWorkflowID("once"):
        third = DBOS.start_workflow(order, "lamp").get_result()

    assert first == second == third
    assert calls["order:lamp"] == 1
    assert calls["reserve:lamp"] == 1


def test_concurrent_starts_of_one_id_share_one_execution():
    with SetWorkflowID("shared"):
        first = DBOS.start_workflow(slow_order, "chair")
    with SetWorkflowID("shared"):
        second = DBOS.start_workflow(slow_order, "chair")
    release.set()

    assert first.get_result(10) == second.get_result(10) == "chair"
    assert calls["slow:chair"] == 1


def test_workflow_id_applies_to_the_next_start_only():
    with SetWorkflowID("first-only"):
        order("a")
        second = DBOS.start_workflow(order, "b")

    assert second.workflow_id != "first-only"
    assert second.get_result(10)["note"] == "reserved b"


def test_reusing_an_id_for_another_workflow_is_a_conflict():
    with SetWorkflowID("taken"):
        order("cup")

    with pytest.raises(DBOSWorkflowConflictIDError, match="already used"), SetWorkflowID("taken"):
        slow_order("cup")
    assert calls["slow:cup"] == 0


def test_workflow_error_comes_back_as_its_own_class():
    with SetWorkflowID("fails"), pytest.raises(OutOfStock, match="no ink left"):
        failing_order("ink")

    status = DBOS.get_workflow_status("fails")
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, OutOfStock)
    with pytest.raises(OutOfStock, match="no ink left"):
        DBOS.retrieve_workflow("fails").get_result()
    # Calling it again with the same id replays the recorded error without running it.
    with SetWorkflowID("fails"), pytest.raises(OutOfStock):
        failing_order("ink")
    assert calls["reserve:ink"] == 1


def test_error_of_a_class_that_cannot_be_imported_is_a_dbos_exception():
    class LocalError(Exception):
        pass

    @DBOS.workflow(name="raises_local_error")
    def raises_local_error() -> None:
        raise LocalError("local")

    handle = DBOS.start_workflow(raises_local_error)
    with pytest.raises(LocalError):
        handle.get_result(10)  # the running process still has the original exception
    with pytest.raises(DBOSException, match="LocalError: local"):
        DBOS.retrieve_workflow(handle.workflow_id).get_result()


def test_unknown_workflow_ids():
    assert DBOS.get_workflow_status("nope") is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("nope")


def test_get_result_times_out_while_the_workflow_runs():
    handle = DBOS.start_workflow(slow_order, "desk")
    with pytest.raises(TimeoutError):
        handle.get_result(timeout=0.2)
    with pytest.raises(TimeoutError):
        DBOS.retrieve_workflow(handle.workflow_id).get_result(timeout=0.1)
    release.set()
    assert handle.get_result(10) == "desk"


def test_workflow_id_and_step_id_inside_a_workflow():
    with SetWorkflowID("ids"):
        assert ids_inside() == [["ids", 1], ["ids", 2], None]
    assert DBOS.workflow_id is None
    assert DBOS.step_id is None


def test_child_workflows_get_deterministic_ids_and_are_recorded():
    with SetWorkflowID("parent"):
        child_ids = parent(2)

    assert child_ids == ["parent-1", "parent-2", "parent-3"]
    for child_id in child_ids:
        assert DBOS.get_workflow_status(child_id).parent_workflow_id == "parent"
    steps = DBOS.list_workflow_steps("parent")
    assert [s.child_workflow_id for s in steps] == child_ids
    assert calls["order:child-0"] == 1


def test_a_step_outside_a_workflow_is_a_plain_call():
    assert reserve("bare") == "reserved bare"
    assert calls["reserve:bare"] == 1


def test_start_workflow_refuses_a_function_that_is_not_a_workflow():
    with pytest.raises(DBOSNotRegisteredError, match=r"@DBOS\.workflow"):
        DBOS.start_workflow(reserve, "x")


def test_two_functions_cannot_share_a_name():
    from django_dbos import DBOSConfigurationError

    @DBOS.workflow(name="unique-name")
    def one() -> None: ...

    with pytest.raises(DBOSConfigurationError, match="unique-name"):

        @DBOS.workflow(name="unique-name")
        def two() -> None: ...


@pytest.mark.parametrize("bad_id", ["", 42, "x" * 256])
def test_malformed_workflow_ids_are_refused(bad_id):
    with pytest.raises(DBOSInvalidArgumentError, match=r"(?i)workflow id"):
        SetWorkflowID(bad_id)


def test_a_bad_argument_is_a_dbos_exception_and_a_value_error():
    """One class for every bad argument: `except DBOSException` catches it, and so does code
    written for Python's own checks (`except ValueError`)."""
    with pytest.raises(ValueError, match="must not be negative") as raised:
        DBOS.sleep(-1)

    assert type(raised.value) is DBOSInvalidArgumentError
    assert isinstance(raised.value, DBOSException)


def test_a_workflow_id_applies_to_one_start_even_through_nested_option_blocks():
    from django_dbos import SetWorkflowTimeout

    with SetWorkflowID("outer-id"):
        with SetWorkflowTimeout(60):
            first = DBOS.start_workflow(order, "x")
        second = DBOS.start_workflow(order, "y")

    assert first.workflow_id == "outer-id"
    assert second.workflow_id != "outer-id"
    assert second.get_result(10)["note"] == "reserved y"
