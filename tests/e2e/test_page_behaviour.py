"""The Data Exports page in a real Chromium: sign-in, dialog rules, actions, limits, layout."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.e2e.helpers import (
    DESKTOP,
    PAGE,
    PHONE,
    URL,
    choose_libraries,
    download,
    insert_export,
    make_account,
    no_horizontal_overflow,
    open_dialog,
    row,
    section,
    sign_in,
    submit,
    update_export,
    wait_status,
)
from tests.system import System

pytestmark = pytest.mark.e2e
SIGNED_OUT = "Your session has expired. Please sign in again."


def test_sign_in_empty_state_and_sign_out(
    page: Page, demo_system: System, demo_database: str
) -> None:
    account = make_account(demo_database)
    page.goto(demo_system.api_url + "/")
    expect(page).to_have_url(re.compile(re.escape(PAGE) + "$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password")

    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Data Exports", level=1)).to_be_visible()
    expect(
        page.get_by_text("Export your library data as JSON, CSV, or Markdown files.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="New Export").first).to_be_visible()
    expect(page.get_by_role("heading", name="No exports yet")).to_be_visible()
    expect(page.get_by_text("Create your first export to download library data.")).to_be_visible()
    expect(page.locator("#exports-table")).to_be_hidden()
    expect(page.locator("#account-name")).to_have_text(account.username)
    assert page.evaluate("() => sessionStorage.getItem('codex-exports.token')")

    # The token lives for the tab's session: a reload stays signed in.
    page.reload()
    expect(page.get_by_role("heading", name="No exports yet")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('codex-exports.token')") is None
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_token_the_server_refuses_leads_to_sign_in(page: Page, demo_system: System) -> None:
    page.goto(demo_system.api_url + PAGE)
    page.evaluate(
        "() => { sessionStorage.setItem('codex-exports.token', 'not-a-jwt');"
        " sessionStorage.setItem('codex-exports.expiresAt',"
        " new Date(Date.now() + 3600e3).toISOString()); }"
    )
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-error")).to_have_text(SIGNED_OUT)


def test_usage_and_limits_are_shown_above_the_table(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    insert_export(
        demo_database,
        account.id,
        libraries[0],
        status="completed",
        row_count=9,
        file_size_bytes=1_288_490,
    )
    insert_export(demo_database, account.id, libraries[0], status="pending")
    sign_in(page, demo_system.api_url, account)
    usage = page.get_by_role("region", name="Storage and limits")
    expect(usage).to_contain_text("1.2 MB")
    expect(usage).to_contain_text("1 of 3")
    expect(usage).to_contain_text("1 of 10")
    expect(usage).to_contain_text("7 days")
    expect(usage).to_contain_text("2 GB")
    completed = page.locator("#export-rows tr[data-status=completed]")
    expect(completed.locator('td[data-label="Size"]')).to_have_text("1.2 MB")
    expect(completed.locator('td[data-label="Rows"]')).to_have_text("9")


def test_csv_is_disabled_for_both(page: Page, demo_system: System, demo_database: str) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    csv = dialog.get_by_role("radio", name="CSV")
    dialog.get_by_role("radio", name="Series").check()
    csv.check()
    expect(csv).to_be_checked()
    dialog.get_by_role("radio", name="Both").check()
    expect(csv).to_be_disabled()
    expect(dialog.get_by_role("radio", name="JSON", exact=True)).to_be_checked()
    expect(dialog.get_by_text("CSV and Parquet hold one kind of row")).to_be_visible()
    expect(section(dialog, "series")).to_be_visible()
    expect(section(dialog, "books")).to_be_visible()
    dialog.get_by_role("radio", name="Books").check()
    expect(csv).to_be_enabled()
    expect(section(dialog, "series")).to_be_hidden()


def test_parquet_is_disabled_for_both_and_formats_come_from_the_catalog(
    page: Page, demo_system: System, demo_database: str
) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    radios = dialog.locator("#format-choices input[type=radio]")
    expect(radios).to_have_count(6)
    labels = dialog.locator("#format-choices label")
    expect(labels).to_have_text(["JSON", "CSV", "Markdown", "JSON Lines", "Excel", "Parquet"])
    parquet = dialog.get_by_role("radio", name="Parquet")
    dialog.get_by_role("radio", name="Books").check()
    parquet.check()
    expect(parquet).to_be_checked()
    dialog.get_by_role("radio", name="Both").check()
    expect(parquet).to_be_disabled()
    expect(dialog.get_by_role("radio", name="CSV")).to_be_disabled()
    for name in ("JSON Lines", "Excel", "Markdown"):
        expect(dialog.get_by_role("radio", name=name)).to_be_enabled()
    expect(dialog.get_by_role("radio", name="JSON", exact=True)).to_be_checked()
    hint = dialog.locator("#format-hint")
    expect(hint).to_have_text(
        "CSV and Parquet hold one kind of row: choose Series or Books to use them."
    )
    expect(parquet).to_have_accessible_description(re.compile("Parquet hold one kind of row"))
    dialog.get_by_role("radio", name="Series").check()
    expect(parquet).to_be_enabled()
    expect(hint).to_be_hidden()


def test_the_compress_toggle_sends_gzip_and_the_table_shows_it(
    page: Page, demo_system: System, demo_database: str
) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    toggle = dialog.get_by_role("checkbox", name="Compress (gzip)")
    expect(toggle).not_to_be_checked()
    expect(toggle).to_have_accessible_description(re.compile("smaller .gz file"))
    dialog.get_by_role("radio", name="Excel").check()
    toggle.check()
    expect(dialog.locator("#form-summary")).to_contain_text("Excel (gzip)")
    with page.expect_request(lambda r: r.url.endswith(URL) and r.method == "POST") as sent:
        created = submit(page, dialog)
    body = sent.value.post_data_json
    assert body["format"] == "xlsx" and body["compression"] == "gzip"
    assert created["fileName"].endswith(".xlsx.gz")
    the_row = wait_status(page, created["id"], "Completed")
    expect(the_row.locator('td[data-label="Format"]')).to_have_text("XLSX.GZ")
    dl, data = download(page, the_row)
    assert dl.suggested_filename == created["fileName"]
    assert data[:2] == b"\x1f\x8b"  # the stored gzip file, as served
    # The dialog opens with compression off again.
    dialog = open_dialog(page)
    expect(dialog.get_by_role("checkbox", name="Compress (gzip)")).not_to_be_checked()
    with page.expect_request(lambda r: r.url.endswith(URL) and r.method == "POST") as sent:
        submit(page, dialog)
    assert "compression" not in sent.value.post_data_json


def test_client_side_validation_messages(
    page: Page, demo_system: System, demo_database: str
) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    posts: list[Request] = []
    page.on(
        "request", lambda r: posts.append(r) if r.method == "POST" and r.url.endswith(URL) else None
    )
    dialog = open_dialog(page)
    create = dialog.get_by_role("button", name="Create Export")

    choose_libraries(dialog, [])
    create.click()
    expect(dialog.get_by_text("At least one library must be selected")).to_be_visible()
    expect(dialog.get_by_role("group", name=re.compile("^Libraries"))).to_have_attribute(
        "aria-invalid", "true"
    )

    choose_libraries(dialog, None)
    section(dialog, "series").get_by_role("button", name=re.compile("^Clear")).click()
    create.click()
    expect(dialog.get_by_text("At least one series field must be selected")).to_be_visible()
    expect(dialog.get_by_text("At least one library must be selected")).to_be_hidden()
    # The anchor stays: shown as always included, checked and not changeable.
    anchor = section(dialog, "series").get_by_role("checkbox", name="Series Name")
    expect(anchor).to_be_checked()
    expect(anchor).to_be_disabled()
    expect(anchor).to_have_accessible_description("Always included")

    dialog.get_by_role("radio", name="Both").check()
    section(dialog, "series").get_by_role("button", name=re.compile("^LLM preset")).click()
    section(dialog, "books").get_by_role("button", name=re.compile("^Clear")).click()
    create.click()
    expect(dialog.get_by_text("At least one book field must be selected")).to_be_visible()
    expect(dialog).to_be_visible()
    assert posts == []


def test_the_servers_refusal_is_shown_in_the_dialog(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """Three exports already in flight: the fourth is refused with the server's message."""
    account = make_account(demo_database)
    for _ in range(3):
        insert_export(demo_database, account.id, libraries[0], status="pending")
    sign_in(page, demo_system.api_url, account)
    expect(page.locator("#export-rows tr[data-status=pending]")).to_have_count(3)
    dialog = open_dialog(page)
    with page.expect_response(lambda r: r.url.endswith(URL) and r.request.method == "POST") as info:
        dialog.get_by_role("button", name="Create Export").click()
    assert info.value.status == 409
    expect(dialog.get_by_role("alert")).to_have_text("You already have 3 active exports (limit: 3)")
    expect(dialog).to_be_visible()
    expect(page.locator("#export-rows tr")).to_have_count(3)


def test_a_failed_export_shows_its_error_on_hover(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    error = "The catalog database could not be reached; please try again later"
    export_id = insert_export(demo_database, account.id, libraries[0], status="failed", error=error)
    sign_in(page, demo_system.api_url, account)
    badge = row(page, export_id).locator(".badge")
    expect(badge).to_have_text("Failed")
    badge.hover()
    expect(badge).to_have_attribute("title", error)
    expect(badge).to_have_accessible_description(error)
    expect(row(page, export_id).get_by_role("button", name=re.compile("^Download"))).to_have_count(
        0
    )


def test_delete_asks_for_confirmation(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    export_id = insert_export(
        demo_database, account.id, libraries[0], status="failed", error="boom"
    )
    sign_in(page, demo_system.api_url, account)
    the_row = row(page, export_id)
    delete = the_row.get_by_role("button", name=re.compile("^Delete"))

    delete.click()
    confirm = page.get_by_role("alertdialog", name="Delete export?")
    expect(confirm).to_be_visible()
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(the_row).to_be_visible()

    delete.click()
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(the_row).to_be_visible()

    delete.click()
    with page.expect_response(lambda r: r.request.method == "DELETE") as info:
        confirm.get_by_role("button", name="Delete").click()
    assert info.value.status == 204
    expect(the_row).to_have_count(0)
    expect(page.get_by_role("heading", name="No exports yet")).to_be_visible()
    with demo_system.client(account.id) as client:
        assert client.get(f"{URL}/{export_id}").status_code == 404


def test_cancel_an_export_in_flight(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """``POST .../{id}/cancel`` (SPEC §6) on a queued export, so it is still cancellable."""
    account = make_account(demo_database)
    export_id = insert_export(demo_database, account.id, libraries[0], status="pending")
    sign_in(page, demo_system.api_url, account)
    the_row = wait_status(page, export_id, "Pending", timeout=15_000)
    with page.expect_response(lambda r: r.url.endswith("/cancel")) as info:
        the_row.get_by_role("button", name=re.compile("^Cancel")).click()
    assert info.value.status in (200, 202, 204), info.value.text()
    wait_status(page, export_id, "Cancelled", timeout=15_000)
    expect(the_row.get_by_role("button", name=re.compile("^Cancel"))).to_have_count(0)
    expect(the_row.get_by_role("button", name=re.compile("^Delete"))).to_be_visible()


def test_cancel_without_a_cancel_endpoint_is_explained(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """A server with no cancel route (404 "Not found" / 405) gets a message, not a broken page."""
    account = make_account(demo_database)
    export_id = insert_export(demo_database, account.id, libraries[0], status="pending")
    sign_in(page, demo_system.api_url, account)
    page.route(
        "**/cancel",
        lambda route: route.fulfill(
            status=405, json={"error": "MethodNotAllowed", "message": "Method not allowed"}
        ),
    )
    the_row = wait_status(page, export_id, "Pending", timeout=15_000)
    the_row.get_by_role("button", name=re.compile("^Cancel")).click()
    expect(page.locator("#toast")).to_contain_text("cannot cancel exports yet")
    expect(the_row.get_by_role("button", name=re.compile("^Cancel"))).to_be_enabled()


def test_a_running_export_shows_live_progress_and_polling_stops(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    export_id = insert_export(
        demo_database, account.id, libraries[0], status="running", rows_total=1000, rows_written=250
    )
    sign_in(page, demo_system.api_url, account)
    progress = row(page, export_id).get_by_role("progressbar")
    expect(progress).to_have_js_property("value", 250)
    expect(row(page, export_id)).to_contain_text("25%")

    update_export(demo_database, export_id, rows_written=600)
    expect(progress).to_have_js_property("value", 600, timeout=5_000)
    expect(row(page, export_id)).to_contain_text("60% · 600 of 1,000 rows")

    update_export(
        demo_database,
        export_id,
        status="completed",
        rows_written=1000,
        row_count=1000,
        file_size_bytes=5120,
    )
    done = wait_status(page, export_id, "Completed", timeout=5_000)
    expect(done.get_by_role("progressbar")).to_have_count(0)
    expect(done.locator('td[data-label="Size"]')).to_have_text("5 KB")

    # Nothing is in flight any more: the page stops asking.
    lists: list[Request] = []
    page.on(
        "request", lambda r: lists.append(r) if r.method == "GET" and r.url.endswith(URL) else None
    )
    time.sleep(3)
    assert lists == []


def test_the_dialog_is_keyboard_usable(page: Page, demo_system: System, demo_database: str) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    opener = page.get_by_role("button", name="New Export").first
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="New Export")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("radio", name="Series")).to_be_focused()
    expect(dialog.locator(".field-section").first).to_be_attached()

    # Arrow keys move within a radio group; the selection follows.
    page.keyboard.press("ArrowRight")
    expect(dialog.get_by_role("radio", name="Books")).to_be_checked()

    inside = "() => document.querySelector('#new-export-dialog').contains(document.activeElement)"
    for _ in range(90):
        page.keyboard.press("Tab")
        assert page.evaluate(inside)
    for _ in range(10):
        page.keyboard.press("Shift+Tab")
        assert page.evaluate(inside)

    # Every control has a name.
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('#new-export-dialog :is(input, button)')]
             .filter((el) => !(el.labels?.length || el.getAttribute('aria-label')
                               || el.textContent.trim()))
             .map((el) => el.outerHTML)"""
    )
    assert unnamed == []

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()


def test_a_second_user_sees_none_of_the_first_users_exports(
    browser: Browser, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    first, second = make_account(demo_database), make_account(demo_database)
    mine = [
        insert_export(demo_database, first.id, lib, status="failed", error="x") for lib in libraries
    ]
    for account, expected in ((first, len(mine)), (second, 0)):
        context = browser.new_context(viewport=DESKTOP)
        try:
            page = context.new_page()
            sign_in(page, demo_system.api_url, account)
            expect(page.locator("#export-rows tr")).to_have_count(expected)
            if expected == 0:
                expect(page.get_by_role("heading", name="No exports yet")).to_be_visible()
        finally:
            context.close()
    with demo_system.client(second.id) as client:
        assert client.get(URL).json() == {"exports": []}
        assert all(client.get(f"{URL}/{export_id}").status_code == 404 for export_id in mine)
    assert httpx.get(demo_system.api_url + URL).status_code == 401


def test_phone_width_has_no_horizontal_overflow(
    browser: Browser, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    lib = libraries
    insert_export(
        demo_database, account.id, lib[0], status="running", export_type="both", rows_total=4000,
        rows_written=1234,
    )  # fmt: skip
    insert_export(
        demo_database, account.id, lib[1], status="failed",
        error="A-very-long-error-text-without-any-spaces-" * 4,
    )  # fmt: skip
    insert_export(
        demo_database, account.id, lib[2], status="completed", row_count=123456,
        file_size_bytes=987_654_321,
    )  # fmt: skip
    for width in (PHONE["width"], 320):
        context = browser.new_context(
            viewport={"width": width, "height": 844}, is_mobile=True, has_touch=True
        )
        try:
            page = context.new_page()
            sign_in(page, demo_system.api_url, account)
            expect(page.locator("#export-rows tr")).to_have_count(3)
            scroll, client = no_horizontal_overflow(page)
            assert scroll <= client, f"page is {scroll}px wide in a {client}px viewport"
            # Cards, not a squeezed table: the column headers are visually hidden.
            expect(page.locator("#exports-table thead")).not_to_be_in_viewport()
            # Measured in one step in the page: a refresh may rebuild a row (the running one
            # can be taken over and finish) between finding it and measuring it.
            cards = page.evaluate(
                """() => [...document.querySelectorAll("#export-rows tr")].map((tr) => {
                    const r = tr.getBoundingClientRect();
                    return { x: r.x, width: r.width };
                })"""
            )
            assert len(cards) == 3
            for card in cards:
                assert card["x"] >= 0
                assert card["x"] + card["width"] <= client

            dialog = open_dialog(page)
            scroll, client = no_horizontal_overflow(page)
            assert scroll <= client
            dialog_box = dialog.bounding_box()
            assert dialog_box is not None
            assert dialog_box["width"] <= client
            page.keyboard.press("Escape")
        finally:
            context.close()
