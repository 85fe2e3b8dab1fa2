"""The page with download links and estimates (SPEC §11), in a real Chromium: Download hands
a link to the browser's download manager (no fetch, no Blob), a transfer cut by the network is
resumed by the browser or finished by a second click, the dialog's estimate follows the
choices (debounced, a superseded request aborted), and Run again queues an ended export anew."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from tests.e2e.helpers import (
    PHONE,
    URL,
    insert_export,
    make_account,
    open_dialog,
    row,
    section,
    sign_in,
    submit,
    wait_status,
)
from tests.system import System

pytestmark = pytest.mark.e2e
ESTIMATE_URL = URL + "/estimate"
ESTIMATE = re.compile(r"^about ([\d,]+) series · ([\d.]+) (B|KB|MB)$")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _export_through_the_page(page: Page) -> str:
    """Create, through the dialog, a Both + JSON export of every field; return its id."""
    dialog = open_dialog(page)
    dialog.get_by_role("radio", name="Both").check()
    for kind in ("series", "books"):
        section(dialog, kind).get_by_role("button", name=re.compile("^Select all")).click()
    created = submit(page, dialog)
    wait_status(page, created["id"], "Completed")
    return str(created["id"])


def test_download_goes_through_a_link_to_the_download_manager(
    page: Page, demo_system: System, demo_database: str
) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    export_id = _export_through_the_page(page)
    seen: list[Request] = []
    page.on("request", lambda r: seen.append(r) if "/download" in r.url else None)
    with page.expect_download() as info:
        row(page, export_id).get_by_role("button", name=re.compile("^Download")).click()
    download = info.value
    path = download.path()
    assert path is not None
    done = page.evaluate(
        "async (id) => (await fetch(`/api/v1/user/exports/series/${id}`, {headers: "
        "{Authorization: `Bearer ${sessionStorage.getItem('codex-exports.token')}`}})).json()",
        export_id,
    )
    assert _sha256(Path(path)) == done["sha256"]
    assert download.suggested_filename == done["fileName"]
    # The page asked for a link, and fetched nothing else: no GET of the file went through
    # its scripts (a fetch into a Blob would show here); the download manager made the GET,
    # with the link alone, as the api's access log shows.
    kinds = [(r.method, r.url.split("?")[0].rsplit("/", 1)[1], r.resource_type) for r in seen]
    assert kinds.count(("POST", "download-link", "fetch")) == 1, kinds
    assert not [r for r in seen if r.resource_type == "fetch" and r.method == "GET"], kinds
    logged = f"GET {URL}/{export_id}/download?token=[redacted] 200"
    assert logged in demo_system.log("api")


# --- a proxy that cuts a download in the middle ---------------------------------------------


@dataclass
class CuttingProxy:
    """A TCP proxy in front of the api (its own event loop, in a thread): the first response
    to a download link is cut after ``cut_after`` bytes, everything else passes through."""

    upstream_port: int
    cut_after: int
    port: int = 0
    cuts: int = 0
    requests: list[str] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: bool
    ) -> None:
        sent = 0
        try:
            while data := await reader.read(65536):
                if cut and sent + len(data) >= self.cut_after:
                    writer.write(data[: self.cut_after - sent])
                    await writer.drain()
                    self.cuts += 1
                    writer.transport.abort()  # a broken connection, not a clean end
                    return
                writer.write(data)
                await writer.drain()
                sent += len(data)
        except (ConnectionError, OSError):
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            head = await client_r.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            client_w.close()
            return
        request = head.decode("latin-1")
        self.requests.append(request)
        # One request per connection ("Connection: close" to the api, which says so to the
        # browser), so every request comes through here and each response is judged alone.
        lines = [
            line for line in request.split("\r\n") if not line.lower().startswith("connection:")
        ]
        head = "\r\n".join([*lines[:-2], "Connection: close", "", ""]).encode("latin-1")
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_w.write(head)
        cut = "/download?token=" in request.split("\r\n", 1)[0] and self.cuts == 0
        await asyncio.gather(
            self._pipe(client_r, up_w, False),
            self._pipe(up_r, client_w, cut),
            return_exceptions=True,
        )

    def start(self) -> None:
        ready = threading.Event()

        async def main() -> None:
            self._stopping = asyncio.Event()
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stopping.wait()
            server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await server.wait_closed()

        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(main(),), daemon=True
        )
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stopping.set)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def cutting_proxy(demo_system: System) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(int(demo_system.api_url.rsplit(":", 1)[1]), cut_after=600_000)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def test_a_download_cut_by_the_network_is_resumed_or_finished_by_a_second_click(
    browser: Browser, demo_system: System, demo_database: str, cutting_proxy: CuttingProxy
) -> None:
    base = f"http://127.0.0.1:{cutting_proxy.port}"
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        sign_in(page, base, make_account(demo_database))
        export_id = _export_through_the_page(page)
        done = page.evaluate(
            "async (id) => (await fetch(`/api/v1/user/exports/series/${id}`, {headers: "
            "{Authorization: `Bearer ${sessionStorage.getItem('codex-exports.token')}`}})).json()",
            export_id,
        )
        assert done["fileSizeBytes"] > 2 * cutting_proxy.cut_after  # the cut is mid-file
        button = row(page, export_id).get_by_role("button", name=re.compile("^Download"))
        with page.expect_download() as info:
            button.click()
        first = info.value
        failure = first.failure()  # waits for the end: finished (resumed) or failed
        assert cutting_proxy.cuts == 1
        if failure is None:
            how = "resumed by the browser"
            path = first.path()
            resumes = [r for r in cutting_proxy.requests if "\r\nrange: bytes=" in r.lower()]
            assert resumes, "finished after a cut without resuming?"
            # Resumed on the same link, guarded by the file's ETag (its SHA-256).
            assert all("/download?token=" in r.split("\r\n", 1)[0] for r in resumes)
            assert all(f'if-range: "{done["sha256"]}"' in r.lower() for r in resumes), resumes
        else:
            how = f"failed ({failure}), then a second click"
            with page.expect_download() as info:
                button.click()
            second = info.value
            assert second.failure() is None
            path = second.path()
        assert path is not None
        assert _sha256(Path(path)) == done["sha256"]
        print(f"\ncut after {cutting_proxy.cut_after} of {done['fileSizeBytes']} bytes: {how}")
    finally:
        context.close()


# --- the estimate in the dialog -------------------------------------------------------------


def _estimate(text: str) -> tuple[int, float]:
    match = ESTIMATE.match(text)
    assert match, text
    units = {"B": 1, "KB": 1024, "MB": 1024**2}
    return int(match[1].replace(",", "")), float(match[2]) * units[match[3]]


def test_the_estimate_follows_the_choices_debounced_and_aborted(
    page: Page, demo_system: System, demo_database: str
) -> None:
    sign_in(page, demo_system.api_url, make_account(demo_database))
    page.clock.install()
    posts: list[Request] = []
    page.on("request", lambda r: posts.append(r) if r.url.endswith(ESTIMATE_URL) else None)
    aborted: list[Request] = []
    page.on(
        "requestfailed",
        lambda r: aborted.append(r) if r.url.endswith(ESTIMATE_URL) else None,
    )
    dialog = page.get_by_role("dialog", name="New Export")
    page.get_by_role("button", name="New Export").first.click()
    expect(dialog.locator(".field-section").first).to_be_attached()
    shown = dialog.locator("#export-estimate")
    expect(shown).to_have_text("Estimating size…")
    assert posts == []  # the dialog's set-up changes were one wait, not a request each
    page.clock.run_for(400)
    expect(shown).to_have_text(ESTIMATE)
    assert len(posts) == 1
    llm_series, llm_bytes = _estimate(shown.inner_text())

    # Five changes in a row: one request, for the last of them.
    series = section(dialog, "series")
    for name in ("Series ID", "Path", "Publisher", "Tags", "Library Name"):
        series.get_by_role("checkbox", name=name, exact=True).check()
    assert len(posts) == 1
    expect(shown).to_have_text("Estimating size…")
    page.clock.run_for(400)
    expect(shown).to_have_text(ESTIMATE)
    assert len(posts) == 2
    assert '"path"' in (posts[1].post_data or "") and '"tags"' in (posts[1].post_data or "")
    more_series, more_bytes = _estimate(shown.inner_text())
    assert more_series == llm_series and more_bytes > llm_bytes

    # A request still in flight is aborted when the choices change again.
    held: list[Route] = []
    page.route("**" + ESTIMATE_URL, lambda route: held.append(route))
    series.get_by_role("button", name=re.compile("^Select all")).click()
    page.clock.run_for(400)
    for _ in range(200):  # each call lets Playwright deliver the page's events
        if held:
            break
        page.evaluate("() => 0")
    assert len(posts) == 3 and len(held) == 1
    series.get_by_role("button", name=re.compile("^Clear")).click()
    series.get_by_role("checkbox", name="Title", exact=True).check()
    page.clock.run_for(400)
    expect(page.locator("#export-estimate")).to_have_text("Estimating size…")
    assert len(posts) == 4
    page.unroute("**" + ESTIMATE_URL)
    for route in held:
        try:
            route.continue_()
        except Exception:  # the page aborted it: nothing to continue
            pass
    expect(shown).to_have_text(ESTIMATE)
    assert [r.post_data for r in aborted] == [posts[2].post_data]
    title_series, title_bytes = _estimate(shown.inner_text())
    assert title_series == llm_series and title_bytes < llm_bytes

    # Nothing to estimate without a library.
    dialog.get_by_role("button", name="Clear libraries").click()
    page.clock.run_for(400)
    expect(shown).to_have_text("")
    assert len(posts) == 4


# --- Run again, and a failed export's error where nothing hovers ------------------------------


def test_run_again_queues_the_same_request_as_a_new_export(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    failed = insert_export(
        demo_database, account.id, libraries[0], status="failed", error="Ran out of time"
    )
    sign_in(page, demo_system.api_url, account)
    with page.expect_response(lambda r: r.url.endswith(URL) and r.request.method == "POST") as info:
        row(page, failed).get_by_role("button", name=re.compile("^Run again")).click()
    response = info.value
    assert response.status == 202, response.text()
    sent: dict[str, Any] = response.request.post_data_json
    assert sent == {
        "format": "json",
        "exportType": "series",
        "libraryIds": [libraries[0]["id"]],
        "fields": ["title", "year"],
    }
    again = response.json()
    assert again["id"] != failed
    wait_status(page, again["id"], "Completed")
    # The new export is first (newest first), the failed one stays.
    expect(page.locator("#export-rows tr").first).to_have_attribute("data-id", again["id"])
    expect(row(page, failed)).to_be_visible()
    assert again["fields"] == ["title", "year"] and again["libraryIds"] == [libraries[0]["id"]]

    # The server's refusal (three exports in flight) is shown, and nothing changes.
    for _ in range(3):
        insert_export(demo_database, account.id, libraries[0], status="pending")
    row(page, failed).get_by_role("button", name=re.compile("^Run again")).click()
    expect(page.locator("#toast")).to_contain_text("You already have 3 active exports (limit: 3)")
    with demo_system.client(account.id) as client:
        assert len(client.get(URL).json()["exports"]) == 5  # nothing more was queued


def test_a_failed_exports_error_is_in_its_row_where_nothing_hovers(
    browser: Browser, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    account = make_account(demo_database)
    error = "The catalog database could not be reached; please try again later"
    failed = insert_export(demo_database, account.id, libraries[0], status="failed", error=error)
    for viewport, touch, visible in (
        (PHONE, True, True),  # a phone
        ({"width": 1024, "height": 768}, True, True),  # a tablet: wide, and no hover either
        ({"width": 1280, "height": 800}, False, False),  # a desktop: the badge's hover text
    ):
        context = browser.new_context(viewport=viewport, is_mobile=touch, has_touch=touch)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            sign_in(page, demo_system.api_url, account)
            text = row(page, failed).locator(".status-error")
            expect(text).to_have_text(error)
            if visible:
                expect(text).to_be_visible()
            else:
                expect(text).to_be_hidden()
                expect(row(page, failed).locator(".badge")).to_have_attribute("title", error)
        finally:
            context.close()
