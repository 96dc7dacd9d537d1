"""The signals workflow_started and workflow_finished, as a receiver sees them."""

from __future__ import annotations

import pytest

from django_dbos import DBOS, SetWorkflowID
from django_dbos.signals import workflow_finished, workflow_started

pytestmark = pytest.mark.django_db(transaction=True)


class Declined(Exception):
    pass


@DBOS.workflow()
def approve(amount: int) -> str:
    if amount > 100:
        raise Declined("too much")
    return "approved"


@pytest.fixture
def received():
    events: list[tuple] = []

    def on_started(sender, workflow_id, **kwargs):
        events.append(("started", sender, workflow_id))

    def on_finished(sender, workflow_id, status, **kwargs):
        events.append(("finished", sender, workflow_id, status))

    workflow_started.connect(on_started)
    workflow_finished.connect(on_finished)
    yield events
    workflow_started.disconnect(on_started)
    workflow_finished.disconnect(on_finished)


def test_a_workflow_sends_started_then_finished_with_its_status(received):
    name = approve.__dbos__.name
    with SetWorkflowID("small"):
        approve(5)
    with SetWorkflowID("large"), pytest.raises(Declined):
        approve(500)

    assert received == [
        ("started", name, "small"),
        ("finished", name, "small", "SUCCESS"),
        ("started", name, "large"),
        ("finished", name, "large", "ERROR"),
    ]


def test_a_replayed_workflow_sends_nothing(received):
    with SetWorkflowID("once"):
        approve(1)
    received.clear()
    with SetWorkflowID("once"):
        assert approve(1) == "approved"  # recorded: the body does not run again
    assert received == []


def test_a_failing_receiver_does_not_break_the_workflow():
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    workflow_finished.connect(broken)
    try:
        with SetWorkflowID("robust"):
            assert approve(2) == "approved"
    finally:
        workflow_finished.disconnect(broken)
    assert DBOS.get_workflow_status("robust").status == "SUCCESS"
