"""The Schedules section of the page (SPEC §12) in a real Chromium: Repeat in New Export, the
list with next and last run, Run now, delete with a confirmation, the API's refusals shown, and
a scheduled run's change counts against the run before it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.axe import assert_accessible
from tests.e2e.helpers import (
    DESKTOP,
    MINUS,
    SCHEDULES,
    URL,
    choose_libraries,
    deny_tag,
    insert_export,
    make_account,
    open_dialog,
    row,
    schedule_request,
    schedule_row,
    sign_in,
    update_export,
    wait_status,
    watch_problems,
)
from tests.system import System, wait_for_export

pytestmark = pytest.mark.e2e
ZONE = "America/New_York"


@pytest.fixture
def zoned_page(browser: Browser) -> Iterator[Page]:
    """A tab whose browser lives in New York (the dialog's default time zone comes from it),
    failing the test on any script error or CSP violation, like the ``page`` fixture."""
    context = browser.new_context(viewport=DESKTOP, locale="en-US", timezone_id=ZONE)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems = watch_problems(tab)
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def create_schedule(system: System, user_id: Any, body: dict[str, Any]) -> dict[str, Any]:
    with system.client(user_id) as client:
        response = client.post(SCHEDULES, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_a_schedule_with_repeat(
    zoned_page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    page = zoned_page
    account = make_account(demo_database)
    sign_in(page, demo_system.api_url, account)
    expect(page.get_by_role("region", name="Schedules")).to_be_hidden()  # none yet

    dialog = open_dialog(page)
    repeat = dialog.get_by_label("Run", exact=True)
    expect(repeat).to_have_value("")  # once, now: an ordinary export
    expect(dialog.get_by_role("button", name="Create Export")).to_be_visible()
    expect(dialog.get_by_label("Time zone")).to_be_hidden()

    choose_libraries(dialog, [libraries[0]["name"]])
    repeat.select_option(label="Every week")
    expect(dialog.get_by_label("Time zone")).to_have_value(ZONE)  # the browser's own zone
    expect(dialog.get_by_label("Keep")).to_have_value("7")
    dialog.get_by_label("On", exact=True).select_option(label="Wednesday")
    dialog.get_by_label("At", exact=True).fill("07:30")
    expect(dialog.locator("#repeat-summary")).to_have_text(
        f"Every Wednesday at 07:30 ({ZONE} time), keeping the newest 7 runs."
    )
    submit = dialog.get_by_role("button", name="Create Schedule")
    with page.expect_response(
        lambda r: r.url.endswith(SCHEDULES) and r.request.method == "POST"
    ) as info:
        submit.click()
    response = info.value
    assert response.status == 201, response.text()
    sent = response.request.post_data_json
    assert sent["cron"] == "30 7 * * 3"
    assert sent["timezone"] == ZONE
    assert sent["keep"] == 7
    assert sent["request"]["libraryIds"] == [libraries[0]["id"]]
    assert sent["request"]["format"] == "json"
    schedule = response.json()
    expect(dialog).to_be_hidden()

    section = page.get_by_role("region", name="Schedules")
    expect(section).to_be_visible()
    the_row = schedule_row(page, schedule["id"])
    expect(the_row.locator("td.what")).to_have_text(f"Series · JSON · {libraries[0]['name']}")
    expect(the_row.locator("td.repeats")).to_contain_text("Every Wednesday at 07:30")
    expect(the_row.locator("td.repeats")).to_contain_text(f"{ZONE} time")
    expect(the_row.locator('td[data-label="Keeps"]')).to_have_text("7 runs")
    # The next run is the API's, in the browser's local time; nothing has run yet.
    assert schedule["nextRunAt"]
    expect(the_row.locator("td.next-run time")).to_have_attribute("datetime", schedule["nextRunAt"])
    expect(the_row.locator("td.next-run time")).to_contain_text("7:30 AM")  # New York's clock
    expect(the_row.locator("td.next-run .when-relative")).to_have_text(
        re.compile(r"^in (\d+ (day|hour|minute)s?|under a minute)$")
    )
    expect(the_row.locator("td.last-run")).to_have_text("Never")
    # The keyboard lands on the new schedule's Run now; the exports table is untouched.
    expect(the_row.get_by_role("button", name=re.compile("^Run now"))).to_be_focused()
    expect(page.get_by_role("heading", name="No exports yet")).to_be_visible()

    # The schedule is the server's: a reload lists it again.
    page.reload()
    expect(schedule_row(page, schedule["id"]).locator("td.repeats")).to_contain_text("Wednesday")


def test_run_now_produces_a_run(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    schedule = create_schedule(
        demo_system,
        account.id,
        {"request": schedule_request(libraries[:1]), "cron": "0 3 * * *", "timezone": "UTC"},
    )
    sign_in(page, demo_system.api_url, account)
    the_row = schedule_row(page, schedule["id"])
    expect(the_row.locator("td.repeats")).to_contain_text("Every day at 03:00")
    expect(the_row.locator("td.last-run")).to_have_text("Never")

    with page.expect_response(
        lambda r: r.url.endswith(f"{SCHEDULES}/{schedule['id']}/run") and r.request.method == "POST"
    ) as info:
        the_row.get_by_role("button", name=re.compile("^Run now")).click()
    assert info.value.status == 202, info.value.text()
    run = info.value.json()
    assert run["scheduleId"] == schedule["id"]

    # The run is an ordinary export in the table, marked as scheduled, and it completes.
    run_row = wait_status(page, run["id"], "Completed")
    expect(run_row.locator(".scheduled-tag")).to_have_text("Scheduled")
    expect(page.locator("#toast-text")).to_have_text(f"Run started: {run['fileName']}")
    # The schedule now has a last run; the keyboard stayed on its Run now button.
    expect(the_row.locator("td.last-run time")).to_be_visible()
    expect(the_row.get_by_role("button", name=re.compile("^Run now"))).to_be_focused()
    with demo_system.client(account.id) as client:
        stored = client.get(f"{SCHEDULES}/{schedule['id']}").json()
    assert stored["lastExportId"] == run["id"]
    assert stored["lastRunAt"]
    expect(the_row.locator("td.last-run time")).to_have_attribute("datetime", stored["lastRunAt"])


def test_delete_asks_for_confirmation(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    body = {"request": schedule_request(libraries[:1]), "cron": "0 3 1 * *", "keep": 3}
    kept = create_schedule(demo_system, account.id, body)
    doomed = create_schedule(demo_system, account.id, body)
    sign_in(page, demo_system.api_url, account)
    expect(page.locator("#schedule-rows tr")).to_have_count(2)
    delete = schedule_row(page, doomed["id"]).get_by_role(
        "button", name=re.compile("^Delete schedule")
    )

    # By keyboard: Enter asks; the safe choice has focus; Escape keeps the schedule.
    delete.focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("alertdialog", name="Delete schedule?")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("will no longer run")
    expect(confirm).to_contain_text("The exports it made stay until they expire.")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(delete).to_be_focused()
    with demo_system.client(account.id) as client:
        assert client.get(f"{SCHEDULES}/{doomed['id']}").status_code == 200

    # Cancel keeps it too; "Delete schedule" deletes it.
    delete.click()
    confirm.get_by_role("button", name="Cancel").click()
    expect(schedule_row(page, doomed["id"])).to_be_visible()
    delete.click()
    with page.expect_response(
        lambda r: r.url.endswith(f"{SCHEDULES}/{doomed['id']}") and r.request.method == "DELETE"
    ) as info:
        confirm.get_by_role("button", name="Delete schedule").click()
    assert info.value.status == 204
    expect(schedule_row(page, doomed["id"])).to_have_count(0)
    expect(schedule_row(page, kept["id"])).to_be_visible()
    expect(page.locator("#toast-text")).to_have_text(
        "Schedule deleted. Its exports stay until they expire."
    )
    # The keyboard moves to the schedule left in its place.
    expect(
        schedule_row(page, kept["id"]).get_by_role("button", name=re.compile("^Delete schedule"))
    ).to_be_focused()
    with demo_system.client(account.id) as client:
        assert client.get(f"{SCHEDULES}/{doomed['id']}").status_code == 404
        assert [s["id"] for s in client.get(SCHEDULES).json()["schedules"]] == [kept["id"]]

    # The last one gone, the section goes too.
    schedule_row(page, kept["id"]).get_by_role("button", name=re.compile("^Delete")).click()
    confirm.get_by_role("button", name="Delete schedule").click()
    expect(page.get_by_role("region", name="Schedules")).to_be_hidden()


def test_validation_errors_are_shown(page: Page, demo_system: System, demo_database: str) -> None:
    account = make_account(demo_database)
    sign_in(page, demo_system.api_url, account)
    dialog = open_dialog(page)
    repeat = dialog.get_by_label("Run", exact=True)
    submit = dialog.get_by_role("button", name="Create Schedule")
    error = dialog.locator("#form-error")

    def refused(message: str) -> None:
        with page.expect_response(
            lambda r: r.url.endswith(SCHEDULES) and r.request.method == "POST"
        ) as info:
            submit.click()
        assert info.value.status == 400
        assert info.value.json()["message"] == message
        expect(error).to_have_text(message)
        expect(error).to_have_attribute("role", "alert")

    # The server's refusals, in its own words; the keyboard goes to the field at fault.
    repeat.select_option(label="Custom (cron)")
    cron = dialog.get_by_label("Cron expression")
    cron.fill("every day")
    refused("Invalid cron expression: every day")
    expect(cron).to_be_focused()
    expect(cron).to_have_attribute("aria-invalid", "true")

    cron.fill("* * * * *")
    refused("Schedule runs too often: at most once every hour (this cron runs every minute)")

    cron.fill("15 4 * * 1-5")
    zone = dialog.get_by_label("Time zone")
    zone.fill("Mars/Olympus_Mons")
    refused("Unknown time zone: Mars/Olympus_Mons")
    expect(zone).to_be_focused()

    # What the page can tell by itself never reaches the server.
    zone.fill("Europe/Paris")
    keep = dialog.get_by_label("Keep")
    keep.fill("31")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if r.method == "POST" else None)
    submit.click()
    expect(dialog.locator("#repeat-error")).to_have_text("Keep must be between 1 and 30")
    expect(keep).to_be_focused()
    cron.fill("")
    keep.fill("5")
    submit.click()
    expect(dialog.locator("#repeat-error")).to_have_text(
        "Enter a cron expression of five fields, such as 0 3 * * 1-5"
    )
    assert not [u for u in requests if u.endswith(SCHEDULES)]
    assert_accessible(page, "the Repeat options showing an error")

    # Corrected, it is created; "Once, now" again makes an ordinary export.
    cron.fill("15 4 * * 1-5")
    with page.expect_response(lambda r: r.url.endswith(SCHEDULES)) as info:
        submit.click()
    assert info.value.status == 201
    expect(schedule_row(page, info.value.json()["id"]).locator("td.repeats")).to_contain_text(
        "Cron: 15 4 * * 1-5"
    )
    dialog = open_dialog(page)
    expect(dialog.get_by_label("Run", exact=True)).to_have_value("")
    expect(dialog.get_by_role("button", name="Create Export")).to_be_visible()


def test_change_counts_for_two_runs(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    schedule = create_schedule(
        demo_system,
        account.id,
        {"request": schedule_request(libraries), "cron": "0 3 * * *", "timezone": "UTC"},
    )
    runs: list[dict[str, Any]] = []
    with demo_system.client(account.id) as client:
        for denied in (None, "mature"):
            if denied:
                deny_tag(demo_database, account.id, denied)  # the second run loses some series
            started = client.post(f"{SCHEDULES}/{schedule['id']}/run")
            assert started.status_code == 202, started.text
            runs.append(wait_for_export(client, started.json()["id"]))
            assert runs[-1]["status"] == "completed", runs[-1]
        first, second = runs
        changes = client.get(f"{URL}/{second['id']}/changes", params={"since": first["id"]})
        assert changes.status_code == 200, changes.text
        counts = changes.json()["series"]
    assert counts["removed"] > 0 and counts["added"] == 0, counts

    # A second schedule whose CSV runs cannot be compared: the page shows nothing and never asks.
    csv = create_schedule(
        demo_system,
        account.id,
        {"request": schedule_request(libraries, format="csv"), "cron": "0 4 * * *"},
    )
    csv_runs = [
        insert_export(
            demo_database, account.id, libraries[0], status="completed", row_count=3, fmt="csv"
        )
        for _ in range(2)
    ]
    for export_id in csv_runs:
        update_export(demo_database, export_id, schedule_id=csv["id"])

    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/changes" in r.url else None)
    sign_in(page, demo_system.api_url, account)
    newer = row(page, second["id"])
    shown = newer.locator(".changes-counts")
    expect(shown).to_have_text(f"+0 · {MINUS}{counts['removed']:,} · {counts['changed']:,} changed")
    expect(newer.locator(".changes .sr-only")).to_have_text(
        f"0 added, {counts['removed']:,} removed, {counts['changed']:,} changed"
        " since the previous run"
    )
    # The first run has no run before it; the CSV runs are not comparable.
    expect(row(page, first["id"]).locator(".changes")).to_have_count(0)
    for export_id in csv_runs:
        expect(row(page, export_id).locator(".scheduled-tag")).to_be_visible()
        expect(row(page, export_id).locator(".changes")).to_have_count(0)
    assert len(asked) == 1 and asked[0].endswith(
        f"/series/{second['id']}/changes?since={first['id']}"
    ), asked
    assert_accessible(page, "the table with a scheduled run's change counts")


def test_a_scheduled_run_with_no_changes_says_so(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    schedule = create_schedule(
        demo_system,
        account.id,
        {"request": schedule_request(libraries[:1], exportType="series"), "cron": "0 3 * * *"},
    )
    with demo_system.client(account.id) as client:
        for _ in range(2):
            started = client.post(f"{SCHEDULES}/{schedule['id']}/run")
            assert started.status_code == 202, started.text
            assert wait_for_export(client, started.json()["id"])["status"] == "completed"
        newest = started.json()["id"]
    sign_in(page, demo_system.api_url, account)
    expect(row(page, newest).locator(".changes-counts")).to_have_text("No changes")


def test_run_now_refused_shows_the_servers_message(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    schedule = create_schedule(
        demo_system, account.id, {"request": schedule_request(libraries[:1]), "cron": "0 3 * * *"}
    )
    for _ in range(3):  # the user is at the concurrency limit (published: no worker takes them)
        insert_export(demo_database, account.id, libraries[0], status="pending")
    sign_in(page, demo_system.api_url, account)
    button = schedule_row(page, schedule["id"]).get_by_role("button", name=re.compile("^Run now"))
    with page.expect_response(lambda r: r.url.endswith("/run")) as info:
        button.click()
    assert info.value.status == 409
    message = info.value.json()["message"]
    assert message == "You already have 3 active exports (limit: 3)"
    toast = page.locator("#toast")
    expect(toast).to_have_attribute("role", "alert")
    expect(page.locator("#toast-text")).to_have_text(f"Could not run the schedule: {message}")
    expect(button).to_have_text("Run now")  # ready again
    expect(schedule_row(page, schedule["id"]).locator("td.last-run")).to_have_text("Never")
