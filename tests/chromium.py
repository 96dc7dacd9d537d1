"""Debian's Chromium driven by Playwright, for the browser tests (installed by
scripts/install-browser.sh, which .ci/run runs; Playwright's own browser download is not used)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium's own connections are refused by the closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "browser"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Launch headless Chromium; fail (never skip) when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/install-browser.sh (as .ci/run does) to install "
            "Debian's chromium package for the browser tests."
        )
    # Playwright's sync API runs an event loop in this thread, so Django would refuse the ORM
    # calls the test makes here (SynchronousOnlyOperation); Playwright documents this setting.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot, one per database so both passes of .ci/run keep theirs."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}-{connections['default'].vendor}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
