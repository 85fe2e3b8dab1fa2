"""Helpers for the browser tests: database set-up in a side thread, and page actions.

Playwright's sync API marks its own event loop as running between calls, so ``asyncio.run``
cannot be used in the test's thread; database work runs in a short-lived thread instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from playwright.sync_api import Download, Locator, Page, ViewportSize, expect

from services.cli.demo_seed import hash_password
from tests.conftest import new_user
from tests.system import System, wait_for_export

T = TypeVar("T")
URL = "/api/v1/user/exports/series"
PAGE = "/settings/exports"
# The committed screenshots are refreshed only on request (UPDATE_SCREENSHOTS=1), so a test run
# never dirties the work tree; otherwise they are still taken, into a scratch folder.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "codex-exports-screenshots"
)
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
COMPLETE_TIMEOUT_MS = 120_000


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh loop in another thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    username: str
    password: str


def make_account(database_url: str) -> Account:
    """A fresh user (no grants: every library) who can sign in through the form."""
    username = "e2e-" + uuid.uuid4().hex[:10]
    password = "pw-" + uuid.uuid4().hex[:12]

    async def create() -> uuid.UUID:
        user_id = await new_user(database_url, username=username)
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE users SET password_hash = $1 WHERE id = $2",
                hash_password(password),
                user_id,
            )
        finally:
            await conn.close()
        return user_id

    return Account(run(create), username, password)


def insert_export(
    database_url: str,
    user_id: uuid.UUID,
    library: dict[str, str],
    *,
    status: str = "pending",
    error: str | None = None,
    rows_total: int | None = None,
    rows_written: int = 0,
    row_count: int | None = None,
    file_size_bytes: int | None = None,
    export_type: str = "series",
    fmt: str = "json",
) -> str:
    """A row written straight into ``exports.exports`` (published, so no worker picks it up)."""
    export_id = uuid.uuid4()
    file_name = f"codex-{export_type}-e2e-{export_id.hex[:8]}.{fmt}"

    async def insert() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids,"
                " library_names, fields, book_fields, status, error, rows_total, rows_written,"
                " row_count, file_size_bytes, file_name, object_key, started_at, completed_at,"
                " expires_at, published_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,"
                "  CASE WHEN $9 <> 'pending' THEN now() END,"
                "  CASE WHEN $9 IN ('completed', 'failed', 'cancelled') THEN now() END,"
                "  now() + interval '7 days', now())",
                export_id, user_id, fmt, export_type, [uuid.UUID(library["id"])], [library["name"]],
                ["title", "year"] if export_type != "books" else [],
                ["title"] if export_type != "series" else [],
                status, error, rows_total, rows_written, row_count, file_size_bytes,
                file_name, f"exports/{user_id}/{export_id}/{file_name}",
            )  # fmt: skip
        finally:
            await conn.close()

    run(insert)
    return str(export_id)


def update_export(database_url: str, export_id: str, **values: Any) -> None:
    columns = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, start=2))

    async def update() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                f"UPDATE exports.exports SET {columns} WHERE id = $1",
                uuid.UUID(export_id),
                *values.values(),
            )
        finally:
            await conn.close()

    run(update)


# --- page actions ---------------------------------------------------------------------------


def watch_problems(tab: Page) -> list[str]:
    """The script errors and CSP violations ``tab`` reports from now on (a test asserts none)."""
    problems: list[str] = []
    tab.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    tab.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return problems


def sign_in(page: Page, base_url: str, account: Account) -> None:
    page.goto(base_url + PAGE)
    page.get_by_label("Username").fill(account.username)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Data Exports", level=1)).to_be_visible()
    expect(page.locator("#loading")).to_be_hidden()


def open_dialog(page: Page) -> Locator:
    page.get_by_role("button", name="New Export").first.click()
    dialog = page.get_by_role("dialog", name="New Export")
    expect(dialog).to_be_visible()
    # The catalog and libraries have arrived once the field sections are built.
    expect(dialog.locator("#library-list input").first).to_be_attached()
    expect(dialog.locator(".field-section").first).to_be_attached()
    return dialog


def section(dialog: Locator, kind: str) -> Locator:
    """The "Series fields" or "Book fields" section of the dialog."""
    name = {"series": "Series fields", "books": "Book fields"}[kind]
    return dialog.get_by_role("region", name=name)


def choose_libraries(dialog: Locator, names: Iterable[str] | None) -> None:
    """None: every library (the default); otherwise exactly those named."""
    if names is None:
        dialog.get_by_role("button", name="Select all libraries").click()
        return
    dialog.get_by_role("button", name="Clear libraries").click()
    libraries = dialog.get_by_role("group", name=re.compile("^Libraries"))
    for name in names:
        libraries.get_by_role("checkbox", name=name, exact=True).check()


def only_groups(dialog: Locator, kind: str, groups: Iterable[str]) -> None:
    """Clear a field section, then tick whole groups through their group checkboxes."""
    part = section(dialog, kind)
    part.get_by_role("button", name=re.compile("^Clear")).click()
    for group in groups:
        part.get_by_role("group", name=group, exact=True).get_by_role(
            "checkbox", name=group, exact=True
        ).check()


def submit(page: Page, dialog: Locator) -> dict[str, Any]:
    """Press Create Export; return the 202 body of the POST it sends."""
    with page.expect_response(lambda r: r.url.endswith(URL) and r.request.method == "POST") as info:
        dialog.get_by_role("button", name="Create Export").click()
    response = info.value
    assert response.status == 202, response.text()
    expect(dialog).to_be_hidden()
    body: dict[str, Any] = response.json()
    return body


def row(page: Page, export_id: str) -> Locator:
    return page.locator(f'#export-rows tr[data-id="{export_id}"]')


def wait_status(
    page: Page, export_id: str, label: str, timeout: float = COMPLETE_TIMEOUT_MS
) -> Locator:
    the_row = row(page, export_id)
    expect(the_row.locator(".badge")).to_have_text(label, timeout=timeout)
    return the_row


def download(page: Page, the_row: Locator) -> tuple[Download, bytes]:
    with page.expect_download() as info:
        the_row.get_by_role("button", name=re.compile("^Download")).click()
    dl = info.value
    path = dl.path()
    assert path is not None
    return dl, Path(path).read_bytes()


def shown_count(the_row: Locator) -> int:
    """The Rows cell as a number (the page formats it with the locale's separators)."""
    return int(re.sub(r"\D", "", the_row.locator('td[data-label="Rows"]').inner_text()))


def screenshot(page: Page, name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(
        path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page, animations="disabled"
    )


def no_horizontal_overflow(page: Page) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the document; equal when nothing overflows sideways."""
    sizes: list[int] = page.evaluate(
        "() => [Math.max(document.documentElement.scrollWidth, document.body.scrollWidth),"
        " document.documentElement.clientWidth]"
    )
    return sizes[0], sizes[1]


# --- schedules (SPEC §12) -------------------------------------------------------------------

SCHEDULES = "/api/v1/user/exports/schedules"
MINUS = "\u2212"  # the page writes "removed" counts with a minus sign, not a hyphen


def schedule_request(libraries: Iterable[dict[str, str]], **extra: Any) -> dict[str, Any]:
    """A create body a schedule runs: series as JSON, with their IDs (so runs can be compared)."""
    return {
        "format": "json",
        "exportType": "series",
        "libraryIds": [lib["id"] for lib in libraries],
        "fields": ["series_id", "title", "year"],
        **extra,
    }


def deny_tag(database_url: str, user_id: uuid.UUID, tag: str) -> None:
    """Deny the user a sharing tag of the demo catalog: their next export loses its series."""

    async def grant() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            tag_id = await conn.fetchval("SELECT id FROM sharing_tags WHERE name = $1", tag)
            assert tag_id is not None, f"the demo catalog has no sharing tag {tag!r}"
            await conn.execute(
                "INSERT INTO user_sharing_tags (id, user_id, sharing_tag_id, access_mode,"
                " created_at) VALUES ($1, $2, $3, 'deny', now())",
                uuid.uuid4(),
                user_id,
                tag_id,
            )
        finally:
            await conn.close()

    run(grant)


def schedule_row(page: Page, schedule_id: str) -> Locator:
    return page.locator(f'#schedule-rows tr[data-id="{schedule_id}"]')


def scheduled_account(
    system: System, database_url: str, libraries: list[dict[str, str]]
) -> tuple[Account, dict[str, Any], str]:
    """A user with two schedules, the first run twice with fewer series the second time (so
    its newer run shows change counts): (the account, that schedule, its newer run's id)."""
    account = make_account(database_url)
    with system.client(account.id) as client:
        made = [
            client.post(SCHEDULES, json=body)
            for body in (
                {"request": schedule_request(libraries), "cron": "30 6 * * 1", "timezone": "Europe/Paris"},
                {"request": schedule_request(libraries[:1], format="csv"), "cron": "0 */6 * * *", "keep": 3},
            )
        ]  # fmt: skip
        assert all(r.status_code == 201 for r in made), [r.text for r in made]
        schedule: dict[str, Any] = made[0].json()
        newest = ""
        for denied in (None, "mature"):
            if denied:
                deny_tag(database_url, account.id, denied)
            started = client.post(f"{SCHEDULES}/{schedule['id']}/run")
            assert started.status_code == 202, started.text
            newest = started.json()["id"]
            assert wait_for_export(client, newest)["status"] == "completed"
    return account, schedule, newest
