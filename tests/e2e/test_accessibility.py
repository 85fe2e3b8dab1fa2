"""Every state of the page passes an axe-core audit (WCAG 2.1 A and AA, best practices):
sign-in, the empty state, the New Export dialog with its estimate, the table with each status,
Run again and a failed row, the delete confirmation, the Schedules section with scheduled runs
and their change counts, the Repeat options and the schedule's delete confirmation; desktop
and phone, light and dark."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.axe import assert_accessible
from tests.e2e.helpers import (
    DESKTOP,
    MINUS,
    PAGE,
    PHONE,
    Account,
    insert_export,
    make_account,
    no_horizontal_overflow,
    open_dialog,
    row,
    schedule_row,
    scheduled_account,
    sign_in,
)
from tests.system import System

pytestmark = pytest.mark.e2e
ESTIMATE = re.compile(r"^about [\d,]+ series · [\d.]+ (B|KB|MB)$")


def test_sign_in_and_the_empty_state(page: Page, demo_system: System, demo_database: str) -> None:
    page.goto(demo_system.api_url + PAGE)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert_accessible(page, "the sign-in form")
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password")
    assert_accessible(page, "the sign-in form with its error")

    sign_in(page, demo_system.api_url, make_account(demo_database))
    expect(page.get_by_role("heading", name="No exports yet")).to_be_visible()
    assert_accessible(page, "the empty state")

    dialog = open_dialog(page)
    expect(dialog.locator("#export-estimate")).to_have_text(ESTIMATE)
    assert_accessible(page, "the New Export dialog with its estimate")
    dialog.get_by_role("radio", name="Both").check()
    dialog.get_by_role("button", name="Clear libraries").click()
    dialog.get_by_role("button", name="Create Export").click()
    expect(dialog.get_by_text("At least one library must be selected")).to_be_visible()
    assert_accessible(page, "the dialog showing a validation error (Both: CSV disabled)")


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_table_in_every_status(
    browser: Browser,
    demo_system: System,
    demo_database: str,
    libraries: list[dict[str, str]],
    scheme: str,
    viewport: dict[str, int],
) -> None:
    account = make_account(demo_database)
    lib = libraries[0]
    failed = insert_export(
        demo_database, account.id, lib, status="failed",
        error="The catalog database could not be reached; please try again later",
    )  # fmt: skip
    insert_export(
        demo_database, account.id, lib, status="completed", row_count=1234,
        file_size_bytes=5_400_000, fmt="csv",
    )  # fmt: skip
    insert_export(demo_database, account.id, lib, status="cancelled", export_type="books")
    insert_export(
        demo_database, account.id, lib, status="running", rows_total=1000, rows_written=420,
        export_type="both",
    )  # fmt: skip
    context = themed_context(browser, scheme, viewport)
    try:
        page = context.new_page()
        sign_in(page, demo_system.api_url, account)
        expect(page.locator("#export-rows tr")).to_have_count(4)
        expect(page.get_by_role("button", name=re.compile("^Run again"))).to_have_count(3)
        expect(page.get_by_role("region", name="Storage and limits")).to_be_visible()
        if viewport == PHONE:
            # No hover on a phone: the failed export's error is written in its row.
            expect(row(page, failed).locator(".status-error")).to_be_visible()
        assert_accessible(page, f"the table ({scheme}, {viewport['width']} px)")

        row(page, failed).get_by_role("button", name=re.compile("^Delete")).click()
        expect(page.get_by_role("alertdialog", name="Delete export?")).to_be_visible()
        assert_accessible(page, f"the delete confirmation ({scheme}, {viewport['width']} px)")
        page.keyboard.press("Escape")

        dialog = open_dialog(page)
        expect(dialog.locator("#export-estimate")).to_have_text(ESTIMATE)
        assert_accessible(page, f"the dialog with its estimate ({scheme}, {viewport['width']} px)")
    finally:
        context.close()


@pytest.fixture(scope="module")
def scheduled(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> tuple[Account, dict[str, Any], str]:
    return scheduled_account(demo_system, demo_database, libraries)


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_schedules_section(
    browser: Browser,
    demo_system: System,
    scheduled: tuple[Account, dict[str, Any], str],
    scheme: str,
    viewport: dict[str, int],
) -> None:
    account, schedule, newest = scheduled
    where = f"({scheme}, {viewport['width']} px)"
    context = themed_context(browser, scheme, viewport)
    try:
        page = context.new_page()
        sign_in(page, demo_system.api_url, account)
        expect(page.get_by_role("region", name="Schedules")).to_be_visible()
        expect(page.locator("#schedule-rows tr")).to_have_count(2)
        counts = row(page, newest).locator(".changes-counts")
        expect(counts).to_have_text(re.compile(rf"^\+0 · {MINUS}\d"))
        expect(row(page, newest).locator(".scheduled-tag")).to_be_visible()
        assert_accessible(page, f"the Schedules section and scheduled runs {where}")
        if viewport == PHONE:
            scroll, client = no_horizontal_overflow(page)
            assert scroll <= client, (scroll, client)

        schedule_row(page, schedule["id"]).get_by_role(
            "button", name=re.compile("^Delete schedule")
        ).click()
        expect(page.get_by_role("alertdialog", name="Delete schedule?")).to_be_visible()
        assert_accessible(page, f"the schedule's delete confirmation {where}")
        page.keyboard.press("Escape")

        dialog = open_dialog(page)
        repeat = dialog.get_by_label("Run", exact=True)
        repeat.select_option(label="Every week")
        expect(dialog.get_by_label("Time zone")).to_be_visible()
        assert_accessible(page, f"the dialog's weekly Repeat {where}")
        repeat.select_option(label="Custom (cron)")
        dialog.get_by_label("Cron expression").fill("not a cron")
        dialog.get_by_role("button", name="Create Schedule").click()
        expect(dialog.locator("#form-error")).to_have_text("Invalid cron expression: not a cron")
        assert_accessible(page, f"the dialog's custom Repeat refused by the server {where}")
    finally:
        context.close()


def themed_context(browser: Browser, scheme: str, viewport: dict[str, int]) -> BrowserContext:
    """A browser context in ``scheme`` (light or dark) at ``viewport``, a touch phone at PHONE."""
    context = browser.new_context(
        viewport=viewport,  # type: ignore[arg-type]
        color_scheme=scheme,  # type: ignore[arg-type]
        is_mobile=viewport == PHONE,
        has_touch=viewport == PHONE,
    )
    context.set_default_timeout(15_000)
    return context
