"""Screenshots of the page, desktop and phone (into docs/screenshots with UPDATE_SCREENSHOTS=1).

They double as layout checks: each state is also measured for sideways overflow at phone width.
"""

from __future__ import annotations

import re
from uuid import UUID

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.helpers import (
    DESKTOP,
    PAGE,
    PHONE,
    URL,
    insert_export,
    make_account,
    no_horizontal_overflow,
    open_dialog,
    schedule_row,
    scheduled_account,
    screenshot,
    sign_in,
    wait_status,
)
from tests.system import System, wait_for_export

pytestmark = pytest.mark.e2e


def test_screenshots(
    browser: Browser, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(
            viewport=viewport, locale="en-US", timezone_id="UTC", device_scale_factor=1
        )
        try:
            page = context.new_page()
            if size == "desktop":
                page.goto(demo_system.api_url + PAGE)
                expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
                screenshot(page, "sign-in-desktop", full_page=False)
            sign_in(page, demo_system.api_url, account)
            if size == "desktop":
                expect(page.get_by_text("No exports yet")).to_be_visible()
                expect(page.locator("#usage")).to_be_visible()
                screenshot(page, f"empty-state-{size}")
            dialog = open_dialog(page)
            expect(dialog.locator("#export-estimate")).to_have_text(re.compile("^about "))
            screenshot(page, f"new-export-dialog-{size}", full_page=False)
            page.keyboard.press("Escape")
            expect(dialog).to_be_hidden()
            if size == "desktop":
                populate(demo_system, demo_database, account.id, libraries)
                page.reload()
            else:
                page.reload()
            expect(page.locator("#export-rows tr")).to_have_count(6)
            wait_status(
                page, str(page.locator("#export-rows tr").first.get_attribute("data-id")), "Running"
            )
            screenshot(page, f"exports-table-{size}")
            if size == "phone":
                scroll, client = no_horizontal_overflow(page)
                assert scroll <= client
        finally:
            context.close()
    # The dark theme (prefers-color-scheme: dark) of the same table.
    context = browser.new_context(
        viewport=DESKTOP, locale="en-US", timezone_id="UTC", color_scheme="dark"
    )
    try:
        page = context.new_page()
        sign_in(page, demo_system.api_url, account)
        expect(page.locator("#export-rows tr")).to_have_count(6)
        screenshot(page, "exports-table-desktop-dark")
    finally:
        context.close()
    # The empty state at phone width, with a user who has nothing.
    context = browser.new_context(viewport=PHONE, locale="en-US", timezone_id="UTC")
    try:
        page = context.new_page()
        sign_in(page, demo_system.api_url, make_account(demo_database))
        expect(page.get_by_text("No exports yet")).to_be_visible()
        expect(page.locator("#usage")).to_be_visible()
        screenshot(page, "empty-state-phone")
    finally:
        context.close()


def populate(system: System, database: str, user_id: UUID, libraries: list[dict[str, str]]) -> None:
    """A realistic table: three real exports, a failure, a cancellation and one in progress."""
    all_ids = [lib["id"] for lib in libraries]
    with system.client(user_id) as client:
        for body in (
            {"format": "csv", "exportType": "books", "libraryIds": all_ids[:1],
             "bookFields": ["file_name", "file_size", "page_count"]},
            {"format": "md", "exportType": "series", "libraryIds": all_ids[1:2],
             "fields": ["title", "summary", "year", "actual_book_count"]},
            {"format": "json", "exportType": "series", "libraryIds": all_ids, "preset": "llm"},
        ):  # fmt: skip
            created = client.post(URL, json=body)
            assert created.status_code == 202, created.text
            assert wait_for_export(client, created.json()["id"])["status"] == "completed"
    insert_export(database, user_id, libraries[0], status="cancelled", export_type="both", fmt="md")
    insert_export(
        database, user_id, libraries[-1], status="failed", fmt="csv",
        error="The catalog database could not be reached; please try again later",
    )  # fmt: skip
    insert_export(
        database,
        user_id,
        libraries[0],
        status="running",
        export_type="both",
        rows_total=3650,
        rows_written=1420,
    )


def test_schedules_screenshots(
    browser: Browser, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """The Schedules section under the table, a scheduled run with its change counts, and the
    dialog's Repeat options; desktop and phone (the phone also measured for overflow)."""
    account, schedule, newest = scheduled_account(demo_system, demo_database, libraries)
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(
            viewport=viewport, locale="en-US", timezone_id="UTC", device_scale_factor=1
        )
        try:
            page = context.new_page()
            sign_in(page, demo_system.api_url, account)
            expect(schedule_row(page, schedule["id"])).to_be_visible()
            expect(page.locator(f'#export-rows tr[data-id="{newest}"] .changes')).to_be_visible()
            screenshot(page, f"schedules-{size}")
            if size == "phone":
                scroll, client = no_horizontal_overflow(page)
                assert scroll <= client
            dialog = open_dialog(page)
            dialog.get_by_label("Run", exact=True).select_option(label="Every week")
            dialog.locator("#repeat-fieldset").scroll_into_view_if_needed()
            screenshot(page, f"new-schedule-dialog-{size}", full_page=False)
        finally:
            context.close()
