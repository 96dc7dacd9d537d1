"""The live demo in a real browser: Playwright drives Debian's Chromium, headless, against the
live server of the test project, with a real worker process beside it that a supervisor thread
restarts when it dies (as `manage.py rundemo` does). The checkout is paid, its worker crashed
with the page's SIGKILL button, and the workflow resumes and finishes with each step run once.
Screenshots are saved under artifacts/browser/ for people to look at.

Chromium comes from the Debian package (scripts/install-browser.sh, run by .ci/run), not from
Playwright's own browser download.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator

import pytest
from django.db.models import Count
from playwright.sync_api import Browser, Page, expect

from django_dbos import DBOS
from testproject.shop.demo import DEMO_WORKER
from testproject.shop.models import LedgerEntry
from testproject.shop.workflows import demo_step

from .chromium import PNG_SIGNATURE, launched_chromium, screenshot
from .conftest import Processes

pytestmark = pytest.mark.django_db(transaction=True)


BEFORE_PAYMENT = ["Validate the order", "Reserve the items"]
AFTER_PAYMENT = ["Capture the payment", "Pack the parcel", "Hand it to the carrier"]
STEPS_SHOWN = [*BEFORE_PAYMENT, "Wait for the payment", *AFTER_PAYMENT]
COUNTED = BEFORE_PAYMENT + AFTER_PAYMENT  # the steps that write a `demo-step:` ledger row


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launched_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser, settings) -> Iterator[Page]:
    # The crash button works only with DEBUG on (the local demo); pytest-django turns it off.
    settings.DEBUG = True
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


class Supervisor:
    """Keeps the demo's worker running: when it exits, start another with the same executor id
    (so that it recovers at once what the dead one left), as `manage.py rundemo` does.

    rundemo restarts at once; here each restart waits for `allow_restart`, so that the test can
    see (and photograph) the paused workflow before the new worker picks it up."""

    def __init__(self, processes: Processes):
        self.processes = processes
        self.allow_restart = threading.Event()
        self.restarts = 0
        self._stop = threading.Event()
        self.worker = self._start()
        self._thread = threading.Thread(target=self._watch, name="demo-supervisor", daemon=True)
        self._thread.start()

    def _start(self) -> subprocess.Popen[bytes]:
        return self.processes.worker(DBOS_EXECUTOR_ID=DEMO_WORKER)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            if self.worker.poll() is None:  # poll() also reaps a killed worker
                continue
            while not self.allow_restart.wait(0.05):
                if self._stop.is_set():
                    return
            self.allow_restart.clear()
            self.worker = self._start()
            self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def supervisor(processes: Processes) -> Iterator[Supervisor]:
    running = Supervisor(processes)
    yield running
    running.stop()  # before `processes` kills the workers, so that none is started again


def step_item(page: Page, title: str, state: str = "done"):
    return page.locator(f'#steps li.{state}[data-step="{title}"]')


def ledger_runs(order: str) -> dict[str, int]:
    """How many times each demo step of the order ran (its ledger rows)."""
    rows = (
        LedgerEntry.objects.filter(reference__startswith=f"demo-step:{order}:")
        .values("reference")
        .annotate(times=Count("id"))
    )
    return {row["reference"].split(":", 2)[2]: row["times"] for row in rows}


def checkpointed_steps(workflow_id: str) -> set[str]:
    return {
        step.output
        for step in DBOS.list_workflow_steps(workflow_id)
        if step.function_name == demo_step.__dbos__.name
    }


def test_the_checkout_demo_survives_the_crash_button(live_server, page, supervisor):
    shots = []
    page.goto(live_server.url + "/")
    expect(page.locator("#pay")).to_be_disabled()

    # Start a checkout: the worker runs it; its first steps stream in, then the payment URL.
    page.get_by_role("button", name="Start a checkout").click()
    expect(page.locator("#workflow-id")).to_have_text(re.compile(r"^demo-checkout-\d+$"))
    workflow_id = page.locator("#workflow-id").inner_text()
    order = workflow_id.rsplit("-", 1)[1]
    for title in BEFORE_PAYMENT:
        expect(step_item(page, title)).to_be_visible(timeout=15_000)
    expect(step_item(page, "Wait for the payment", "waiting")).to_be_visible()
    link = page.locator("#payment-url")
    expect(link).to_have_text(f"/pay/{workflow_id}/")
    expect(link).to_have_attribute("href", f"/pay/{workflow_id}/")
    expect(page.locator("#pay")).to_be_enabled()
    expect(page.locator("#workflow-status")).to_have_text("PENDING")
    expect(page.locator("#worker")).to_have_text("running")
    shots.append(screenshot(page, "10-demo-started"))

    # Pay; as soon as the page shows "Capture the payment" done, "Pack the parcel" has begun
    # its one-second sleep, and the crash button kills the worker within it. Steps run at least
    # once: a crash between a step's ledger row and its checkpoint (a few milliseconds after
    # its sleep) would rightly run it again, so the crash is aimed at the sleep, and checked to
    # have landed there below. wait_for_selector reacts at once (expect() backs off up to 1 s).
    page.get_by_role("button", name="Pay").click()
    page.wait_for_selector('#steps li.done[data-step="Capture the payment"]', timeout=10_000)
    killed = supervisor.worker
    with page.expect_response("**/demo/crash-worker/") as crash:
        page.get_by_role("button", name="Crash the worker (SIGKILL)").click()
    assert crash.value.json() == {"killed": killed.pid}
    assert killed.wait(10) == -9

    # The page shows the worker down and the workflow paused.
    expect(page.locator("#worker")).to_have_text("down")
    expect(page.locator("#worker")).to_have_class("pill down")
    expect(page.locator("#workflow-status")).to_have_text("PENDING")
    expect(page.locator("#paused")).to_be_visible()
    expect(step_item(page, "Pack the parcel")).to_have_count(0)
    shots.append(screenshot(page, "11-demo-paused"))
    # The crash landed in a step's sleep: every ledger row has its checkpoint, and the
    # workflow had not finished.
    runs_at_crash = ledger_runs(order)
    assert set(runs_at_crash) == checkpointed_steps(workflow_id), "crashed outside a sleep"
    assert set(runs_at_crash) < set(COUNTED)
    assert DBOS.get_workflow_status(workflow_id).status == "PENDING"

    # The supervisor starts a new worker, which recovers the checkout at once; it finishes.
    supervisor.allow_restart.set()
    expect(page.locator("#worker")).to_have_text("running", timeout=15_000)
    expect(page.locator("#paused")).to_be_hidden()
    expect(page.locator("#workflow-status")).to_have_text("SUCCESS", timeout=15_000)
    expect(page.locator("#workflow-status")).to_have_class("pill SUCCESS")
    expect(page.locator("#result")).to_have_text("Result: fulfilled")
    for title in STEPS_SHOWN:
        expect(step_item(page, title)).to_be_visible()
    expect(page.locator("#steps li")).to_have_count(len(STEPS_SHOWN))
    expect(page.locator("#steps li")).to_have_text(STEPS_SHOWN)
    step_runs = page.locator("#step-runs")
    for title in COUNTED:
        expect(step_runs).to_contain_text(f"{title}: 1")
    assert sorted(step_runs.inner_text().split(" · ")) == sorted(f"{t}: 1" for t in COUNTED)
    shots.append(screenshot(page, "12-demo-fulfilled"))

    # The database agrees: each step ran once, and the workflow was recovered.
    assert ledger_runs(order) == dict.fromkeys(COUNTED, 1)
    status = DBOS.get_workflow_status(workflow_id)
    assert status.status == "SUCCESS"
    assert status.output == "fulfilled"
    assert status.recovery_attempts >= 1
    expect(page.locator("#recoveries")).to_have_text(str(status.recovery_attempts))
    assert status.executor_id == DEMO_WORKER
    assert supervisor.restarts == 1

    for shot in shots:
        assert shot.exists(), shot
        assert shot.read_bytes().startswith(PNG_SIGNATURE), shot
        assert shot.stat().st_size > 10_000, shot


def test_the_fan_out_demo_drains_fifty_workflows(live_server, page, processes):
    processes.worker(DBOS_EXECUTOR_ID=DEMO_WORKER)
    page.goto(live_server.url + "/")

    page.get_by_role("button", name="Enqueue 50 workflows").click()
    # The queue starts at most 10 a second: about five seconds, plus the worker's start.
    expect(page.locator("#fanout-count")).to_have_text("50 / 50 done", timeout=20_000)
    expect(page.locator("#fanout-bar")).to_have_js_property("value", 50)
    shot = screenshot(page, "13-demo-fanout")

    assert shot.exists(), shot
    assert shot.read_bytes().startswith(PNG_SIGNATURE), shot
