"""The admin shows workflows and their recorded steps, read-only."""

from __future__ import annotations

import pytest

from django_dbos import SetWorkflowID
from testproject.shop.workflows import ten_step_journal

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_workflow_page_lists_its_steps(admin_client, tmp_path):
    with SetWorkflowID("admin-journal"):
        ten_step_journal(str(tmp_path / "journal.txt"))

    listing = admin_client.get("/admin/django_dbos/workflowstatus/")
    page = admin_client.get("/admin/django_dbos/workflowstatus/admin-journal/change/")

    assert listing.status_code == 200
    assert b"admin-journal" in listing.content
    assert page.status_code == 200
    for number in range(1, 11):
        assert f"&quot;step {number}&quot;".encode() in page.content  # its recorded output
    assert b"testproject.shop.workflows.write_ledger_entry" in page.content


def test_workflows_cannot_be_added_or_deleted_from_the_admin(admin_client):
    assert admin_client.get("/admin/django_dbos/workflowstatus/add/").status_code == 403
