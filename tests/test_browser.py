"""The admin in a real browser: Playwright drives Debian's Chromium, headless, against the live
server of the test project. Screenshots are saved under artifacts/browser/ for people to look at.

Chromium comes from the Debian package (scripts/install-browser.sh, run by .ci/run), not from
Playwright's own browser download.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from django_dbos import DBOS, SetWorkflowID
from testproject.shop.workflows import refund_request, ten_step_journal

from .chromium import PNG_SIGNATURE, launched_chromium, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/django_dbos/workflowstatus/"
GREEN, BLUE = "rgb(46, 125, 50)", "rgb(47, 111, 176)"  # SUCCESS and PENDING in admin.py

release = threading.Event()


@DBOS.step()
def wait_for_the_browser() -> str:
    release.wait(30)
    return "released"


@DBOS.workflow()
def held_for_the_browser() -> str:
    return wait_for_the_browser()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    release.clear()
    yield
    release.set()


def run_action(page: Page, workflow_id: str, action: str) -> None:
    """Tick the workflow's row on the list, pick the action and press Go."""
    page.locator(f'#result_list input.action-select[value="{workflow_id}"]').check()
    page.locator('select[name="action"]').select_option(label=action)
    page.locator('button[name="index"]').click()  # "Go" (Django 5.2) or "Run" (Django 6)


def status_badge(page: Page, workflow_id: str):
    row = page.locator("#result_list tbody tr").filter(
        has=page.locator(f'input.action-select[value="{workflow_id}"]')
    )
    return row.locator(".dbos-status")


def test_an_operator_watches_cancels_and_resumes_workflows_in_the_admin(
    live_server, page, tmp_path
):
    User.objects.create_superuser("operator", "operator@example.com", "browser-pw")
    with SetWorkflowID("browser-journal"):
        ten_step_journal(str(tmp_path / "journal.txt"))
    held = DBOS.start_workflow(held_for_the_browser)
    shots = []

    # Log in through the real form.
    page.goto(live_server.url + "/admin/")
    expect(page).to_have_url(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "browser-pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-tools")).to_contain_text("operator")

    # The list, with coloured statuses.
    page.goto(live_server.url + CHANGELIST)
    journal_badge = status_badge(page, "browser-journal")
    held_badge = status_badge(page, held.workflow_id)
    expect(journal_badge).to_have_text("SUCCESS")
    expect(journal_badge).to_have_css("background-color", GREEN)
    expect(held_badge).to_have_text("PENDING")
    expect(held_badge).to_have_css("background-color", BLUE)
    shots.append(screenshot(page, "01-workflow-list"))

    # The dashboard, from the list's object tools.
    page.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(live_server.url + CHANGELIST + "dashboard/")
    expect(page.locator("#count-SUCCESS .count")).to_have_text("1")
    expect(page.locator("#count-PENDING .count")).to_have_text("1")
    expect(page.locator("#count-ERROR .count")).to_have_text("0")
    expect(page.get_by_text("The last hour: 1 finished, 0 failed")).to_be_visible()
    bars = page.locator("#dbos-throughput .dbos-bar")
    expect(bars).to_have_count(60)
    # One full bar: the minute the journal finished, this one or (if a minute began since) the
    # one before.
    expect(page.locator("#dbos-throughput .dbos-bar[style='height: 100%']")).to_have_count(1)
    full = bars.evaluate_all("bars => bars.findIndex(b => b.style.height === '100%')")
    assert full in (58, 59)
    expect(page.locator("#dbos-executors .dbos-alive").first).to_have_text("alive")
    shots.append(screenshot(page, "02-dashboard"))

    # The finished workflow's page, with its step timeline.
    page.goto(live_server.url + CHANGELIST + "browser-journal/change/")
    expect(page.locator(".dbos-timeline .dbos-step")).to_have_count(11)
    expect(page.locator(".dbos-timeline")).to_contain_text("write_ledger_entry")
    shots.append(screenshot(page, "03-workflow-page"))

    # Cancel the blocked workflow through the admin action.
    page.goto(live_server.url + CHANGELIST)
    run_action(page, held.workflow_id, "Cancel the selected workflows")
    expect(page.locator(".messagelist .success")).to_have_text("Cancelled 1 workflow(s).")
    expect(status_badge(page, held.workflow_id)).to_have_text("CANCELLED")
    assert DBOS.get_workflow_status(held.workflow_id).status == "CANCELLED"
    shots.append(screenshot(page, "04-cancelled"))

    # Let its step finish, then resume it through the admin action: it completes.
    release.set()
    run_action(page, held.workflow_id, "Resume the selected workflows")
    expect(page.locator(".messagelist .success")).to_have_text("Resumed 1 workflow(s).")
    assert DBOS.retrieve_workflow(held.workflow_id).get_result(timeout=10) == "released"
    page.reload()
    expect(status_badge(page, held.workflow_id)).to_have_text("SUCCESS")
    shots.append(screenshot(page, "05-resumed"))

    for shot in shots:
        assert shot.read_bytes().startswith(PNG_SIGNATURE), shot
        assert shot.stat().st_size > 10_000, shot


def test_a_person_answers_a_waiting_workflow_from_the_inbox(live_server, page):
    User.objects.create_superuser("reviewer", "reviewer@example.com", "browser-pw")
    with SetWorkflowID("browser-refund"):
        handle = DBOS.start_workflow(refund_request, 7, 600)
    page.goto(live_server.url + "/admin/login/?next=" + CHANGELIST)
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", "browser-pw")
    page.get_by_role("button", name="Log in").click()

    # The inbox, from the workflow list's object tools.
    page.get_by_role("link", name="Inbox").click()
    row = page.locator("#dbos-inbox-table tr.dbos-wait")
    expect(row).to_contain_text("browser-refund")
    expect(row).to_contain_text("refund_decision")
    expect(row).to_contain_text("reviewer")
    inbox = screenshot(page, "06-inbox")

    # The refund form, answered badly: its errors, nothing sent.
    row.get_by_role("link", name="Answer").click()
    page.fill("#id_amount", "-5")
    page.fill("#id_refund_on", "next week")
    page.get_by_role("button", name="Send the answer").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    expect(page.locator("#dbos-answer-form")).to_contain_text("Enter a valid date.")
    error = screenshot(page, "07-answer-form-error")

    # Answered well: the workflow receives the form's cleaned data.
    page.check("#id_approved")
    page.fill("#id_amount", "19.90")
    page.fill("#id_refund_on", "2026-12-24")
    page.get_by_role("button", name="Send the answer").click()
    expect(page.locator(".messagelist .success")).to_contain_text(
        "Answered workflow browser-refund"
    )
    expect(page.locator("#dbos-inbox-empty")).to_be_visible()
    assert handle.get_result(timeout=10)["amount"] == Decimal("19.90")

    for shot in (inbox, error):
        assert shot.read_bytes().startswith(PNG_SIGNATURE), shot
        assert shot.stat().st_size > 10_000, shot
