"""Workflows with rows in every system table, for the tests of deleting and of retention."""

from __future__ import annotations

from django_dbos import DBOS


@DBOS.step()
def noted(value: str) -> str:
    return value


@DBOS.workflow()
def child(value: str) -> str:
    DBOS.set_event("child", value)
    return noted(value)


@DBOS.workflow()
def everything(value: str) -> str:
    """A workflow with a row in every table: steps, an event, a stream, a child."""
    noted(value)
    DBOS.set_event("stage", value)
    DBOS.write_stream("progress", value)
    DBOS.close_stream("progress")
    return DBOS.start_workflow(child, value).get_result()
