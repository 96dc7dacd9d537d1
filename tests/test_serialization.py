"""Serialization as a user sees it: what goes into the system tables comes back out the same.

Round trips are checked on the database path: `DBOS.get_workflow_status(id).input/.output`,
`DBOS.list_workflow_steps(id)[i].output`, and `DBOS.retrieve_workflow(id).get_result()` once
the in-process future of the workflow is gone.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import uuid
from collections import Counter
from typing import Any

import pytest
from django.test import override_settings

from django_dbos import (
    DBOS,
    DBOSException,
    DBOSSerializationError,
    SetWorkflowID,
    WorkflowStatusString,
)
from django_dbos.engine import handles, serialization
from django_dbos.models import OperationOutput, WorkflowStatus

pytestmark = pytest.mark.django_db(transaction=True)

PICKLE = {"APPLICATION_VERSION": "testproject-1", "SERIALIZER": "pickle"}

calls: Counter[str] = Counter()


@dataclasses.dataclass(frozen=True)
class Address:
    city: str
    postcode: str


@dataclasses.dataclass
class Parcel:
    """A module-level dataclass, so that it can be rebuilt from the database."""

    sku: str
    weight: decimal.Decimal
    ship_on: datetime.date
    tags: set[str]
    to: Address


class Plain:
    """A plain class: JSON cannot hold it, pickle can."""

    def __init__(self, name: str, sizes: tuple[int, ...]):
        self.name = name
        self.sizes = sizes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and (other.name, other.sizes) == (self.name, self.sizes)

    def __hash__(self) -> int:
        return hash((self.name, self.sizes))


class TaggedJSONSerializer:
    """A custom serializer named by dotted path: JSON behind a prefix."""

    PREFIX = "tagged-json:"
    loaded = 0

    def dumps(self, value: Any) -> str:
        return self.PREFIX + json.dumps(value)

    def loads(self, text: str) -> Any:
        if not text.startswith(self.PREFIX):
            raise ValueError(f"not written by TaggedJSONSerializer: {text[:20]!r}")
        TaggedJSONSerializer.loaded += 1
        return json.loads(text[len(self.PREFIX) :])


CUSTOM = {
    "APPLICATION_VERSION": "testproject-1",
    "SERIALIZER": f"{__name__}.TaggedJSONSerializer",
}


class PaymentDeclined(Exception):
    """A user exception whose args rebuild it."""

    def __init__(self, account: str, amount: decimal.Decimal):
        super().__init__(account, amount)
        self.account = account
        self.amount = amount


class QuotaExceeded(Exception):
    """A user exception whose args cannot rebuild it (the constructor takes two arguments)."""

    def __init__(self, user: str, limit: int):
        super().__init__(f"{user} is over the limit of {limit}")


not_exceptions_called: list[tuple] = []


def not_an_exception(*args: Any) -> None:
    """A callable that is not an exception class; loading an error must never call it."""
    not_exceptions_called.append(args)


@DBOS.step()
def echo_step(value: Any) -> Any:
    calls["echo_step"] += 1
    return value


@DBOS.workflow()
def echo(value: Any) -> Any:
    calls["echo"] += 1
    return echo_step(value)


@DBOS.workflow()
def returns_unserializable(label: str) -> object:
    calls["returns_unserializable"] += 1
    return object()


@DBOS.step()
def unserializable_step() -> object:
    calls["unserializable_step"] += 1
    return object()


@DBOS.workflow()
def step_returns_unserializable() -> None:
    unserializable_step()


@DBOS.workflow()
def declines(account: str, amount: decimal.Decimal) -> None:
    raise PaymentDeclined(account, amount)


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()
    not_exceptions_called.clear()
    yield


def run_echo(workflow_id: str, value: Any) -> Any:
    """Run `echo` inline under `workflow_id`; the in-process future is gone when it returns."""
    with SetWorkflowID(workflow_id):
        result = echo(value)
    assert handles.running().get(workflow_id) is None
    return result


def from_database(workflow_id: str) -> dict[str, Any]:
    """Everything a user can read back about an `echo` run, all deserialized from the tables."""
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return {
        "status": status.status,
        "input": status.input,
        "output": status.output,
        "step_outputs": [step.output for step in DBOS.list_workflow_steps(workflow_id)],
        "result": DBOS.retrieve_workflow(workflow_id).get_result(),
    }


ROUND_TRIPS = [
    pytest.param(
        datetime.datetime(2024, 3, 31, 23, 59, 58, 123456, tzinfo=datetime.UTC),
        id="datetime-utc",
    ),
    pytest.param(
        datetime.datetime(
            2024, 7, 1, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
        ),
        id="datetime-offset",
    ),
    pytest.param(datetime.date(1999, 12, 31), id="date"),
    pytest.param(datetime.time(13, 45, 30, 250), id="time"),
    pytest.param(datetime.timedelta(days=3, seconds=5, microseconds=7), id="timedelta"),
    pytest.param(datetime.timedelta(days=-2, seconds=1), id="negative-timedelta"),
    pytest.param(decimal.Decimal("12.50"), id="decimal"),
    pytest.param(decimal.Decimal("-0.000000000000000000000000000001"), id="tiny-decimal"),
    pytest.param(uuid.UUID("12345678-1234-5678-1234-567812345678"), id="uuid"),
    pytest.param(b"\x00\xff binary \x80", id="bytes"),
    pytest.param({3, 1, 2}, id="set"),
    pytest.param({"b", "a"}, id="set-of-str"),
    pytest.param(
        {
            "order": [1, {"lines": [{"qty": 2, "price": decimal.Decimal("9.99")}]}],
            "ids": [uuid.UUID(int=7), None, True, 1.5, "text"],
            "when": {"day": datetime.date(2024, 2, 29)},
        },
        id="nested",
    ),
    pytest.param(
        Parcel(
            sku="BOOK-1",
            weight=decimal.Decimal("0.750"),
            ship_on=datetime.date(2024, 5, 6),
            tags={"fragile", "gift"},
            to=Address("Lyon", "69001"),
        ),
        id="dataclass",
    ),
]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_arguments_results_and_step_outputs_round_trip_through_the_database(value, request):
    workflow_id = f"round-trip-{request.node.callspec.id}"

    inline_result = run_echo(workflow_id, value)

    assert inline_result == value
    seen = from_database(workflow_id)
    assert seen["status"] == WorkflowStatusString.SUCCESS
    assert seen["input"] == {"args": [value], "kwargs": {}}
    for read_back in (seen["input"]["args"][0], seen["output"], *seen["step_outputs"]):
        assert read_back == value
        assert type(read_back) is type(value)
    assert seen["step_outputs"] == [value]
    assert seen["result"] == value
    assert type(seen["result"]) is type(value)


def test_aware_datetimes_keep_their_utc_offset():
    offset = datetime.timezone(datetime.timedelta(hours=-7))
    value = datetime.datetime(2024, 11, 3, 1, 30, tzinfo=offset)

    run_echo("aware", value)

    output = DBOS.get_workflow_status("aware").output
    assert output.utcoffset() == datetime.timedelta(hours=-7)
    assert output.isoformat() == "2024-11-03T01:30:00-07:00"


def test_decimals_keep_their_exponent():
    run_echo("decimal-exponent", decimal.Decimal("1.2300"))

    assert str(DBOS.get_workflow_status("decimal-exponent").output) == "1.2300"


def test_dataclass_fields_come_back_as_their_own_types():
    parcel = Parcel(
        sku="LAMP",
        weight=decimal.Decimal("2.5"),
        ship_on=datetime.date(2024, 1, 2),
        tags={"heavy"},
        to=Address("Oslo", "0150"),
    )

    run_echo("parcel", parcel)

    output = DBOS.get_workflow_status("parcel").output
    assert isinstance(output, Parcel)
    assert isinstance(output.to, Address)
    assert isinstance(output.weight, decimal.Decimal)
    assert output.tags == {"heavy"}


def test_keyword_arguments_are_recorded_by_name():
    with SetWorkflowID("kwargs"):
        echo(value={"at": datetime.date(2024, 6, 1)})

    assert DBOS.get_workflow_status("kwargs").input == {
        "args": [],
        "kwargs": {"value": {"at": datetime.date(2024, 6, 1)}},
    }


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(
            {1: "one"},
            id="int-dict-keys",
        ),
        pytest.param(
            (1, 2),
            id="tuple",
        ),
        pytest.param(
            {(1, 2), (3, 4)},
            id="set-of-tuples",
        ),
        pytest.param(
            {serialization.TAG: "set", "v": [1, 2]},
            id="dict-shaped-like-a-tag",
        ),
        pytest.param(
            frozenset({1, 2}),
            id="frozenset",
        ),
        pytest.param(
            datetime.timedelta(days=300 * 365, microseconds=1),
            id="long-timedelta",
        ),
    ],
)
def test_a_value_is_kept_exactly_or_refused_at_the_call(value, request):
    """Never silently changed: a recovered workflow must see the arguments the first run saw."""
    workflow_id = f"exact-{request.node.callspec.id}"
    try:
        run_echo(workflow_id, value)
    except DBOSSerializationError:
        assert DBOS.get_workflow_status(workflow_id) is None
        return

    status = DBOS.get_workflow_status(workflow_id)
    assert status.input["args"] == [value]
    assert type(status.input["args"][0]) is type(value)
    assert status.output == value


# Unserializable arguments and results ---------------------------------------------------------


@pytest.mark.parametrize(
    "argument",
    [pytest.param(object(), id="object"), pytest.param(lambda: 1, id="lambda")],
)
def test_an_unserializable_argument_fails_the_inline_call_and_writes_nothing(argument):
    rows_before = WorkflowStatus.objects.count(), OperationOutput.objects.count()

    with (
        pytest.raises(DBOSSerializationError, match="Cannot serialize the workflow arguments"),
        SetWorkflowID("bad-argument-inline"),
    ):
        echo(argument)

    assert (WorkflowStatus.objects.count(), OperationOutput.objects.count()) == rows_before
    assert DBOS.get_workflow_status("bad-argument-inline") is None
    assert calls["echo"] == 0


@pytest.mark.parametrize(
    "argument",
    [pytest.param(object(), id="object"), pytest.param(lambda: 1, id="lambda")],
)
def test_an_unserializable_argument_fails_start_workflow_and_writes_nothing(argument):
    rows_before = WorkflowStatus.objects.count(), OperationOutput.objects.count()

    with (
        pytest.raises(DBOSSerializationError, match="Cannot serialize the workflow arguments"),
        SetWorkflowID("bad-argument-started"),
    ):
        DBOS.start_workflow(echo, value=argument)

    assert (WorkflowStatus.objects.count(), OperationOutput.objects.count()) == rows_before
    assert DBOS.get_workflow_status("bad-argument-started") is None
    assert calls["echo"] == 0


def test_the_serialization_error_says_what_to_do():
    with pytest.raises(DBOSSerializationError) as raised:
        echo({"nested": [object()]})

    message = str(raised.value)
    assert "Object of type object is not JSON serializable" in message
    assert "enable pickle in DBOS['SERIALIZER']" in message


def test_an_unserializable_result_makes_the_workflow_error():
    with (
        pytest.raises(DBOSSerializationError, match="result of workflow") as raised,
        SetWorkflowID("bad-result"),
    ):
        returns_unserializable("x")

    assert returns_unserializable.__dbos__.name in str(raised.value)
    assert calls["returns_unserializable"] == 1
    status = DBOS.get_workflow_status("bad-result")
    assert status.status == WorkflowStatusString.ERROR
    assert status.output is None
    assert isinstance(status.error, DBOSSerializationError)
    assert "Cannot serialize the result of workflow" in str(status.error)
    # Read back from the database, the outcome is the same error.
    with pytest.raises(DBOSSerializationError, match="result of workflow"):
        DBOS.retrieve_workflow("bad-result").get_result()


def test_an_unserializable_result_of_a_started_workflow_errors_its_handle():
    with SetWorkflowID("bad-result-started"):
        handle = DBOS.start_workflow(returns_unserializable, "y")

    with pytest.raises(DBOSSerializationError, match="result of workflow"):
        handle.get_result(timeout=10)
    assert handle.get_status().status == WorkflowStatusString.ERROR


def test_an_unserializable_step_result_makes_the_workflow_error():
    with (
        pytest.raises(DBOSSerializationError, match="result of step") as raised,
        SetWorkflowID("bad-step-result"),
    ):
        step_returns_unserializable()

    assert unserializable_step.__dbos__.name in str(raised.value)
    status = DBOS.get_workflow_status("bad-step-result")
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, DBOSSerializationError)
    # The failure is the step's recorded outcome, so a replay fails the same way without rerunning.
    [step] = DBOS.list_workflow_steps("bad-step-result")
    assert isinstance(step.error, DBOSSerializationError)


# Pickle ---------------------------------------------------------------------------------------


def test_pickle_round_trips_what_json_cannot_hold():
    value = Plain("crate", (1, 2, 3))

    with override_settings(DBOS=PICKLE):
        run_echo("pickled", value)
        seen = from_database("pickled")
        raw = WorkflowStatus.objects.get(workflow_id="pickled")

    assert raw.inputs.startswith(serialization.PICKLE_PREFIX)
    assert raw.output.startswith(serialization.PICKLE_PREFIX)
    assert seen["input"] == {"args": [value], "kwargs": {}}
    assert seen["output"] == value
    assert seen["output"].sizes == (1, 2, 3)
    assert seen["step_outputs"] == [value]
    assert seen["result"] == value


def test_without_pickle_the_same_argument_is_refused():
    with pytest.raises(DBOSSerializationError, match="Object of type Plain"):
        echo(Plain("crate", (1,)))
    assert calls["echo"] == 0


def test_a_pickled_value_is_refused_when_pickle_is_not_enabled():
    with override_settings(DBOS=PICKLE):
        run_echo("pickled-then-json", {"plain": "data"})

    with pytest.raises(DBOSSerializationError, match="pickle is not enabled") as raised:
        DBOS.get_workflow_status("pickled-then-json")
    assert 'DBOS["SERIALIZER"] = "pickle"' in str(raised.value)
    with pytest.raises(DBOSSerializationError, match="pickle is not enabled"):
        DBOS.retrieve_workflow("pickled-then-json").get_result()
    with pytest.raises(DBOSSerializationError, match="pickle is not enabled"):
        DBOS.list_workflow_steps("pickled-then-json")


def test_values_written_as_json_stay_readable_once_pickle_is_enabled():
    run_echo("json-then-pickle", {"when": datetime.date(2024, 4, 1)})

    with override_settings(DBOS=PICKLE):
        status = DBOS.get_workflow_status("json-then-pickle")

    assert status.output == {"when": datetime.date(2024, 4, 1)}


# A custom serializer ----------------------------------------------------------------------------


def test_a_serializer_named_by_dotted_path_is_used():
    TaggedJSONSerializer.loaded = 0

    with override_settings(DBOS=CUSTOM):
        run_echo("custom", {"n": [1, 2]})
        seen = from_database("custom")
        raw = WorkflowStatus.objects.get(workflow_id="custom")
        step = OperationOutput.objects.get(workflow_id="custom")

    assert raw.inputs == 'tagged-json:{"args": [{"n": [1, 2]}], "kwargs": {}}'
    assert raw.output == 'tagged-json:{"n": [1, 2]}'
    assert step.output == 'tagged-json:{"n": [1, 2]}'
    assert seen["input"] == {"args": [{"n": [1, 2]}], "kwargs": {}}
    assert seen["output"] == seen["result"] == {"n": [1, 2]}
    assert seen["step_outputs"] == [{"n": [1, 2]}]
    assert TaggedJSONSerializer.loaded >= 4


def test_a_custom_serializer_failure_is_reported_as_a_serialization_error():
    with (
        override_settings(DBOS=CUSTOM),
        pytest.raises(DBOSSerializationError, match="workflow arguments"),
    ):
        echo(datetime.date(2024, 1, 1))  # plain json.dumps cannot write a date
    assert calls["echo"] == 0


# Exceptions -----------------------------------------------------------------------------------


def raised(exc: BaseException) -> BaseException:
    """Return `exc` after raising it, so that it carries a traceback."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_an_exception_round_trips_as_its_own_class_with_its_args():
    original = raised(PaymentDeclined("acct-7", decimal.Decimal("12.50")))

    loaded = serialization.loads_error(serialization.dumps_error(original))

    assert type(loaded) is PaymentDeclined
    assert loaded.args == ("acct-7", decimal.Decimal("12.50"))
    assert loaded.account == "acct-7"
    assert isinstance(loaded.amount, decimal.Decimal)
    assert "in raised" in loaded.__dbos_traceback__
    assert "PaymentDeclined" in loaded.__dbos_traceback__


def test_an_exception_that_cannot_be_rebuilt_comes_back_as_dbos_exception():
    original = raised(QuotaExceeded("bob", 3))

    loaded = serialization.loads_error(serialization.dumps_error(original))

    assert type(loaded) is DBOSException
    assert str(loaded) == f"{__name__}:QuotaExceeded: bob is over the limit of 3"


def test_an_error_of_an_unimportable_class_comes_back_as_dbos_exception():
    record = json.dumps({"type": "no_such_module:Gone", "message": "vanished", "args": ["x"]})

    loaded = serialization.loads_error(record)

    assert type(loaded) is DBOSException
    assert str(loaded) == "no_such_module:Gone: vanished"


def test_a_workflow_error_is_read_back_from_the_database_as_its_own_class():
    with SetWorkflowID("declined"), pytest.raises(PaymentDeclined):
        declines("acct-9", decimal.Decimal("99.90"))

    status = DBOS.get_workflow_status("declined")
    assert status.status == WorkflowStatusString.ERROR
    assert type(status.error) is PaymentDeclined
    assert status.error.args == ("acct-9", decimal.Decimal("99.90"))
    with pytest.raises(PaymentDeclined) as again:
        DBOS.retrieve_workflow("declined").get_result()
    assert again.value.amount == decimal.Decimal("99.90")


def test_loading_an_error_never_calls_something_that_is_not_an_exception_class():
    record = json.dumps(
        {"type": f"{__name__}:not_an_exception", "message": "m", "args": ["from the database"]}
    )

    loaded = serialization.loads_error(record)

    assert type(loaded) is DBOSException
    assert not_exceptions_called == []
