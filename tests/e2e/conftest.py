"""Browser fixtures: Debian's Chromium driven by Playwright (never ``playwright install``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.conftest import libraries_by_name
from tests.e2e.helpers import DESKTOP, run, watch_problems
from tests.system import System

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser(demo_system: System) -> Iterator[Browser]:
    # demo_system first: its async set-up must run before Playwright marks its own loop running.
    if not CHROMIUM.exists():
        # Not a skip: CI installs the browser, so its absence is a broken machine.
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(apt-get update && apt-get install -y chromium); never `playwright install`."
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test (its own sessionStorage), desktop size."""
    ctx = browser.new_context(
        viewport=DESKTOP, accept_downloads=True, locale="en-US", timezone_id="UTC"
    )
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab that fails the test on any script error or CSP violation the page reports."""
    tab = context.new_page()
    problems = watch_problems(tab)
    yield tab
    assert not problems, problems


@pytest.fixture(scope="module")
def libraries(demo_database: str) -> list[dict[str, str]]:
    """The demo catalog's libraries, by name."""
    return run(lambda: libraries_by_name(demo_database))
