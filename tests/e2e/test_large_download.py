"""A large export downloaded through the page in Chromium: the file goes to disk through the
browser's download manager, arrives whole (SHA-256), and the page holds none of it.

JSHeapUsedSize (CDP ``Performance.getMetrics``) alone cannot tell: the page's old
fetch-into-a-Blob kept the file in ``Uint8Array`` chunks, whose bytes are ArrayBuffer backing
stores outside the JS heap (measured with that code on this file: JSHeapUsedSize 2.9 MiB,
backing stores 261 MiB). So the test samples both (``Runtime.getHeapUsage``) and checks that no
script fetched the file. Slow: it builds a 400,000-book synthetic catalog and a 250 MiB file."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from playwright.sync_api import expect, sync_playwright

from services.cli.synthetic import build_synthetic
from tests.conftest import Servers, seeded_database, service_env
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.helpers import DESKTOP, URL, Account, make_account, row, sign_in
from tests.system import System, make_system, wait_for_export

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BOOKS = 400_000
SERIES = 4_000
MIB = 1024 * 1024


@dataclass(frozen=True)
class Big:
    system: System
    account: Account
    export: dict[str, object]


@pytest.fixture(scope="module")
def big(real_servers: Servers, servers_dir: Path) -> Iterator[Big]:
    async def build() -> str:
        url, _ = await seeded_database(
            real_servers, lambda c: build_synthetic(c, series=SERIES, books=BOOKS)
        )
        return url

    url = asyncio.run(build())
    system = make_system(
        service_env(real_servers, url), servers_dir / f"logs-big-{uuid.uuid4().hex[:6]}"
    )
    system.start("api", "worker")
    try:
        account = make_account(url)
        library = asyncio.run(_library(url))
        with system.client(account.id) as client:
            body = {"format": "json", "exportType": "books", "libraryIds": [library]}
            created = client.post(URL, json={**body, "preset": "all"})
            assert created.status_code == 202, created.text
            done = wait_for_export(client, created.json()["id"], timeout=600)
        assert done["status"] == "completed", done
        yield Big(system, account, done)
    finally:
        system.stop()


async def _library(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SELECT id FROM libraries"))
    finally:
        await conn.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_large_export_streams_to_disk_and_not_through_the_pages_memory(
    big: Big, tmp_path: Path
) -> None:
    size = int(str(big.export["fileSizeBytes"]))
    assert size > 200 * MIB
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, downloads_path=str(downloads)
        )
        try:
            context = chromium.new_context(viewport=DESKTOP, accept_downloads=True)
            context.set_default_timeout(60_000)
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            cdp.send("Performance.enable")

            def heap() -> float:
                metrics = cdp.send("Performance.getMetrics")["metrics"]
                return float(next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize"))

            def buffers() -> float:
                # ArrayBuffer backing stores live outside the JS heap: a page reading the file
                # into memory (chunks for a Blob) shows there, not in JSHeapUsedSize.
                usage = cdp.send("Runtime.getHeapUsage")
                return float(
                    usage.get("backingStorageSize", 0) + usage.get("embedderHeapUsedSize", 0)
                )

            sign_in(page, big.system.api_url, big.account)
            the_row = row(page, str(big.export["id"]))
            expect(the_row.locator(".badge")).to_have_text("Completed")
            before = heap()
            peak, samples = before, 0
            peak_buffers = buffers()
            fetched: list[str] = []
            page.on(
                "request",
                lambda r: (
                    fetched.append(r.url)
                    if r.resource_type == "fetch" and r.method == "GET" and "/download" in r.url
                    else None
                ),
            )
            with page.expect_download() as info:
                the_row.get_by_role("button", name=re.compile("^Download")).click()
            download = info.value
            # While the browser writes the file, sample the page's heap and what is on disk.
            deadline = time.monotonic() + 600
            on_disk = 0
            while on_disk < size and time.monotonic() < deadline:
                peak = max(peak, heap())
                peak_buffers = max(peak_buffers, buffers())
                samples += 1
                on_disk = sum(f.stat().st_size for f in downloads.iterdir() if f.is_file())
                time.sleep(0.1)
            assert download.failure() is None
            path = download.path()
            assert path is not None
            peak = max(peak, heap())
            saved = Path(path)
            assert saved.stat().st_size == size
            assert _sha256(saved) == big.export["sha256"]
            assert download.suggested_filename == big.export["fileName"]
            print(
                f"\n{size / MIB:.0f} MiB downloaded through the page: JS heap {before / MIB:.1f}"
                f" MiB before, peak {peak / MIB:.1f} MiB ({peak / size:.1%} of the file);"
                f" array buffers and embedder heap peak {peak_buffers / MIB:.1f} MiB;"
                f" {samples} samples"
            )
            # The page held none of it: its heap and its buffers stay a small fraction of the
            # file, and no script fetched the file (the download manager did).
            assert peak < size / 10, (peak, size)
            assert peak_buffers < size / 10, (peak_buffers, size)
            assert fetched == []
        finally:
            chromium.close()
