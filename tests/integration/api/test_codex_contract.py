"""Codex's front end works unchanged (SPEC §13): every body the export endpoints answer fits
Codex's own schemas (``tests/codex.py``: ``SeriesExportDto``, ``SeriesExportListResponse``,
``ExportFieldCatalogResponse``, required keys, JSON types, nullable types, ``uuid``/``int32``/
``int64`` formats), with the status codes Codex documents (202, 204, 404, 409), for create
bodies exactly as Codex's front end sends them.

Fields this product adds (``libraryNames``, ``sha256``, ``rowsWritten``, ``fileName``, ...) are
additions Codex's schemas allow: none of them forbids additional properties.

To see an export ``running`` or ``pending`` for as long as a check needs, a test holds an
exclusive lock on the catalog's ``series`` table (every export reads it; the api never does):
the worker claims the export (``running``, its heartbeat goes on) and then waits on its first
catalog read, and with both of the demo worker's slots (``EXPORTS_WORKER_CONCURRENCY`` = 2)
waiting, a further export stays ``pending``. Once the lock is released the claimed exports
complete. ``cancelled`` is a pending export cancelled with ``POST /{id}/cancel``; a claimed one is
never cancelled here: when the lock goes, its whole COPY arrives at once, and a cancel noticed on
that last chunk wedges the worker's connection (asyncpg 0.32 waits forever for the
acknowledgement of a cancel sent after the COPY ended), a worker bug these tests do not cover.
``failed`` is a real failure of the worker too: an administrator cancels its waiting catalog
query (``pg_cancel_backend``, SQLSTATE 57014), which the worker does not retry, so the export
fails with a message for people.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from tests.codex import declared_properties, schema_errors
from tests.conftest import library_ids_by_name, new_user
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"
ENDED = ("completed", "failed", "cancelled")
DTO = "SeriesExportDto"


def assert_fits(schema_name: str, body: Any) -> None:
    """``body`` fits Codex's schema; for an export, every property Codex declares is sent, the
    optional ones too (null when unknown), since Codex's page reads them all."""
    errors = schema_errors(schema_name, body)
    assert not errors, f"does not fit Codex's {schema_name}:\n" + "\n".join(errors)
    exports = body["exports"] if schema_name == "SeriesExportListResponse" else [body]
    if schema_name in (DTO, "SeriesExportListResponse"):
        for export in exports:
            assert declared_properties(DTO) <= export.keys(), export


@pytest.fixture(scope="module")
async def library_ids(demo_database: str) -> list[str]:
    return await library_ids_by_name(demo_database)


@pytest.fixture
async def user(demo_database: str) -> uuid.UUID:
    """A fresh user per test: its own list and its own concurrency limit."""
    return await new_user(demo_database)


@pytest.fixture(scope="module")
async def reader(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
def catalog(demo_system: System, reader: uuid.UUID) -> dict[str, Any]:
    """GET /fields, as Codex's page loads it before showing the create form."""
    with demo_system.client(reader) as client:
        response = client.get(f"{URL}/fields")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


class CatalogLock:
    """An exclusive lock on ``series``, held by one connection of the test."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def blocked(self) -> list[int]:
        """The backends (the worker's catalog reads) waiting on this lock."""
        rows = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
            self.conn.get_server_pid(),
        )
        return [r["pid"] for r in rows]

    async def cancel_blocked(self) -> int:
        """Cancel every waiting query, as an administrator would; how many were cancelled."""
        pids = await self.blocked()
        for pid in pids:
            await self.conn.execute("SELECT pg_cancel_backend($1)", pid)
        return len(pids)


@contextlib.asynccontextmanager
async def catalog_locked(database_url: str) -> AsyncIterator[CatalogLock]:
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("LOCK TABLE series IN ACCESS EXCLUSIVE MODE")
            yield CatalogLock(conn)
    finally:
        await conn.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def statuses(client: httpx.Client, ids: list[str]) -> dict[str, str]:
    response = client.get(URL)
    assert response.status_code == 200, response.text
    return {e["id"]: e["status"] for e in response.json()["exports"] if e["id"] in ids}


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json=body)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    assert_fits(DTO, created)
    return created


def finish_all(client: httpx.Client, ids: list[str]) -> None:
    """Wait until the test's exports have ended (the lock released, the claimed ones complete),
    so nothing of the test holds a worker slot."""
    for export_id in ids:
        assert wait_for_export(client, export_id)["status"] in ENDED


def series_body(library_ids: list[str]) -> dict[str, Any]:
    return {
        "format": "json",
        "exportType": "series",
        "libraryIds": library_ids[:1],
        "fields": ["title"],
        "bookFields": [],
    }


# --- GET /fields --------------------------------------------------------------------------------


def test_field_catalog_fits_codex(catalog: dict[str, Any]) -> None:
    assert_fits("ExportFieldCatalogResponse", catalog)
    for section, preset in (("fields", "llmSelect"), ("bookFields", "llmSelectBooks")):
        keys = {f["key"] for f in catalog[section]}
        assert set(catalog["presets"][preset]) <= keys, preset
        assert [f["key"] for f in catalog[section] if f["isAnchor"]] == [catalog[section][0]["key"]]


# --- POST create, exactly as Codex's front end sends it ---------------------------------------


def _front_end_body(kind: str, catalog: dict[str, Any], library_ids: list[str]) -> dict[str, Any]:
    """What Codex's create modal (web/src/pages/settings/SeriesExportsSettings.tsx) posts: all
    five keys, always; the list of the type not chosen is left as the form holds it (empty by
    default); "Select all" is every non-anchor key; "LLM Select" copies the preset; ticking
    checkboxes group by group can give any order, so one list here is reversed."""
    series_all = [f["key"] for f in catalog["fields"] if not f["isAnchor"]]
    books_llm = list(catalog["presets"]["llmSelectBooks"])
    if kind == "series":
        return {
            "format": "json",
            "exportType": "series",
            "libraryIds": library_ids,
            "fields": list(catalog["presets"]["llmSelect"]),
            "bookFields": [],
        }
    if kind == "books":
        return {
            "format": "csv",
            "exportType": "books",
            "libraryIds": library_ids[:1],
            "fields": [],
            "bookFields": books_llm,
        }
    if kind == "both":
        return {
            "format": "md",
            "exportType": "both",
            "libraryIds": library_ids[::-1],
            "fields": series_all[::-1],
            "bookFields": books_llm,
        }
    # Codex's schema requires only format, libraryIds and fields: exportType defaults to series.
    return {"format": "json", "libraryIds": library_ids[:1], "fields": ["title", "year"]}


@pytest.mark.parametrize("kind", ["series", "books", "both", "minimal"])
def test_create_with_the_front_end_body_runs_to_completion(
    demo_system: System,
    user: uuid.UUID,
    catalog: dict[str, Any],
    library_ids: list[str],
    kind: str,
) -> None:
    body = _front_end_body(kind, catalog, library_ids)
    with demo_system.client(user) as client:
        created = create(client, body)
        assert created["status"] == "pending"
        assert created["exportType"] == body.get("exportType", "series")
        assert created["format"] == body["format"]
        assert created["libraryIds"] == list(dict.fromkeys(body["libraryIds"]))
        if created["exportType"] != "books":
            assert set(created["fields"]) == set(body["fields"])
        if created["exportType"] != "series":
            assert set(created["bookFields"]) == set(body["bookFields"])
        assert created["completedAt"] is None and created["rowCount"] is None

        done = wait_for_export(client, created["id"])
        assert done["status"] == "completed", done
        assert_fits(DTO, done)
        assert isinstance(done["rowCount"], int) and done["rowCount"] > 0
        assert isinstance(done["fileSizeBytes"], int) and done["fileSizeBytes"] > 0
        assert done["startedAt"] is not None and done["completedAt"] is not None
        download = client.get(f"{URL}/{created['id']}/download")
        assert download.status_code == 200
        assert len(download.content) == done["fileSizeBytes"]


# --- GET list: every status -------------------------------------------------------------------


async def test_list_fits_codex_with_exports_in_every_status(
    demo_system: System, demo_database: str, user: uuid.UUID, library_ids: list[str]
) -> None:
    body = series_body(library_ids)
    ids: list[str] = []
    with demo_system.client(user) as client:
        empty = client.get(URL)
        assert empty.status_code == 200
        assert empty.json() == {"exports": []}
        assert_fits("SeriesExportListResponse", empty.json())

        completed = wait_for_export(client, create(client, body)["id"])
        assert completed["status"] == "completed", completed

        async with catalog_locked(demo_database) as lock:
            doomed = create(client, body)["id"]
            wait_until(lambda: statuses(client, [doomed])[doomed] == "running", "a claim")
            deadline = time.monotonic() + 30
            while not await lock.blocked():
                assert time.monotonic() < deadline, "the worker never read the catalog"
                await asyncio.sleep(0.05)
            assert await lock.cancel_blocked() >= 1
        failed = wait_for_export(client, doomed)
        assert failed["status"] == "failed", failed
        assert failed["error"] and "Traceback" not in failed["error"]

        try:
            async with catalog_locked(demo_database):
                ids = [create(client, body)["id"] for _ in range(3)]
                # Two worker slots: two exports running (waiting on the lock), one pending.
                wait_until(
                    lambda: (
                        sorted(statuses(client, ids).values()) == ["pending", "running", "running"]
                    ),
                    "two running exports and one pending",
                )
                pending = next(i for i, s in statuses(client, ids).items() if s == "pending")
                cancel = client.post(f"{URL}/{pending}/cancel")
                assert cancel.status_code == 200, cancel.text
                assert_fits(DTO, cancel.json())
                assert cancel.json()["status"] == "cancelled"
                ids.append(create(client, body)["id"])  # pending behind the two running

                listed = client.get(URL)
                assert listed.status_code == 200
                assert_fits("SeriesExportListResponse", listed.json())
                exports = listed.json()["exports"]
                by_status = {e["status"]: e for e in exports}
                assert set(by_status) == {"pending", "running", "completed", "failed", "cancelled"}
                # The nullable keys both ways: an unknown fact is null, a known one typed.
                assert by_status["pending"]["startedAt"] is None
                assert isinstance(by_status["running"]["startedAt"], str)
                assert by_status["running"]["rowCount"] is None
                assert by_status["running"]["fileSizeBytes"] is None
                assert by_status["running"]["completedAt"] is None
                assert isinstance(by_status["completed"]["completedAt"], str)
                assert isinstance(by_status["completed"]["rowCount"], int)
                assert by_status["completed"]["error"] is None
                assert isinstance(by_status["failed"]["error"], str)
                assert isinstance(by_status["cancelled"]["completedAt"], str)
                created_at = [e["createdAt"] for e in exports]
                assert created_at == sorted(created_at, reverse=True)  # newest first
        finally:
            finish_all(client, ids)
        final = client.get(URL).json()
        assert_fits("SeriesExportListResponse", final)
        assert sorted(e["status"] for e in final["exports"]) == [
            "cancelled",
            "completed",
            "completed",
            "completed",
            "completed",
            "failed",
        ]


# --- GET /{id} ----------------------------------------------------------------------------------


async def test_get_one_fits_codex_and_is_404_when_unknown_or_not_yours(
    demo_system: System, demo_database: str, user: uuid.UUID, library_ids: list[str]
) -> None:
    other = await new_user(demo_database)
    with demo_system.client(user) as client:
        export_id = create(client, series_body(library_ids))["id"]
        one = client.get(f"{URL}/{export_id}")
        assert one.status_code == 200
        assert_fits(DTO, one.json())
        assert one.json()["id"] == export_id
        assert wait_for_export(client, export_id)["status"] == "completed"
        assert client.get(f"{URL}/{uuid.uuid4()}").status_code == 404
    with demo_system.client(other) as client:
        for method, path in [
            ("GET", f"{URL}/{export_id}"),
            ("GET", f"{URL}/{export_id}/download"),
            ("DELETE", f"{URL}/{export_id}"),
        ]:
            response = client.request(method, path)
            assert response.status_code == 404, (method, path, response.text)
        listed = client.get(URL).json()
        assert listed == {"exports": []}
    with demo_system.client(user) as client:
        assert client.get(f"{URL}/{export_id}").status_code == 200  # the owner's, untouched


# --- DELETE /{id} -------------------------------------------------------------------------------


def test_delete_is_204_then_404(
    demo_system: System, user: uuid.UUID, library_ids: list[str]
) -> None:
    with demo_system.client(user) as client:
        export_id = create(client, series_body(library_ids))["id"]
        assert wait_for_export(client, export_id)["status"] == "completed"
        deleted = client.delete(f"{URL}/{export_id}")
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert client.get(f"{URL}/{export_id}").status_code == 404
        assert client.get(f"{URL}/{export_id}/download").status_code == 404
        assert client.delete(f"{URL}/{export_id}").status_code == 404
        assert client.delete(f"{URL}/{uuid.uuid4()}").status_code == 404
        assert client.get(URL).json() == {"exports": []}


# --- 409s ---------------------------------------------------------------------------------------


async def test_download_before_completion_is_409(
    demo_system: System, demo_database: str, user: uuid.UUID, library_ids: list[str]
) -> None:
    body = series_body(library_ids)
    ids: list[str] = []
    with demo_system.client(user) as client:
        try:
            async with catalog_locked(demo_database):
                ids = [create(client, body)["id"] for _ in range(3)]
                wait_until(
                    lambda: {"pending", "running"} <= set(statuses(client, ids).values()),
                    "a running and a pending export",
                )
                current = statuses(client, ids)
                for export_id, status in current.items():
                    response = client.get(f"{URL}/{export_id}/download")
                    assert response.status_code == 409, response.text
                    assert response.json()["message"] == (
                        f"Export is not ready for download (status: {status})"
                    )
                pending = next(i for i, s in current.items() if s == "pending")
                assert client.post(f"{URL}/{pending}/cancel").status_code == 200
                cancelled = client.get(f"{URL}/{pending}/download")
                assert cancelled.status_code == 409
                assert cancelled.json()["message"] == (
                    "Export is not ready for download (status: cancelled)"
                )
        finally:
            finish_all(client, ids)


async def test_concurrency_limit_is_409(
    demo_system: System, demo_database: str, user: uuid.UUID, library_ids: list[str]
) -> None:
    body = series_body(library_ids)
    ids: list[str] = []
    with demo_system.client(user) as client:
        try:
            async with catalog_locked(demo_database):
                ids = [create(client, body)["id"] for _ in range(3)]  # the default limit, 3
                refused = client.post(URL, json=body)
                assert refused.status_code == 409, refused.text
                assert refused.json() == {
                    "error": "TooManyActiveExports",
                    "message": "You already have 3 active exports (limit: 3)",
                }
                assert len(client.get(URL).json()["exports"]) == 3
        finally:
            finish_all(client, ids)
        # Once they ended, the same body is accepted again.
        again = create(client, body)
        assert wait_for_export(client, again["id"])["status"] == "completed"
