"""Catalog reads on a streaming read replica, job state on the primary (``shared.catalog_db``).

Which server ran what is read from ``pg_stat_statements`` on each: the export's ``COPY`` and
counts run on the replica and never on the primary. A replica whose replay is paused behind a
catalog change fails the attempt (retried, then failed with a message), never writes a file
without the change, and once it replays the export completes with it. A replica that is down
fails the export with a message naming the catalog database, and the job row on the primary
says so.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import pytest

from tests.conftest import new_user
from tests.integration.replica.conftest import (
    MAX_LAG_SECONDS,
    Replication,
    reset_statements,
    statements,
)
from tests.system import System, export_and_download, wait_for_export

pytestmark = pytest.mark.integration

URL = "/api/v1/user/exports/series"


def _body(library: str, fmt: str = "json") -> dict[str, Any]:
    return {"format": fmt, "exportType": "both", "libraryIds": [library], "preset": "all"}


async def _row(replication: Replication, export_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(replication.primary_url())
    try:
        row = await conn.fetchrow(
            "SELECT status, attempt, error, worker_id, object_key FROM exports.exports"
            " WHERE id = $1",
            uuid.UUID(export_id),
        )
    finally:
        await conn.close()
    assert row is not None
    return row


def _catalog_statements(queries: list[str]) -> list[str]:
    """The statements that read the exported catalog: the ``COPY`` and the counts."""
    return [q for q in queries if "series" in q and ("COPY" in q or "count(" in q.lower())]


@pytest.mark.parametrize("fmt", ["json", "xlsx"])
async def test_an_export_reads_the_catalog_on_the_replica(
    replication: Replication, replica_system: System, fmt: str
) -> None:
    library = replication.library
    user = await new_user(replication.primary_url())
    assert await replication.caught_up()
    await reset_statements(replication.primary_url())
    await reset_statements(replication.replica_url())
    with replica_system.client(user) as client:
        done, download = export_and_download(client, _body(library, fmt))
    assert done["rowCount"] > 0
    on_replica = _catalog_statements(await statements(replication.replica_url()))
    on_primary = _catalog_statements(await statements(replication.primary_url()))
    if fmt == "json":
        # The database renders JSON: its COPY ran on the replica.
        assert any(q.lstrip().upper().startswith("COPY") for q in on_replica), on_replica
    else:
        # Excel is written from typed rows, read through a cursor on the replica.
        assert any("FROM series" in q or "JOIN series" in q for q in on_replica), on_replica
    assert any("count(" in q.lower() for q in on_replica), on_replica
    assert not on_primary, on_primary
    # The job state is on the primary: the completed row, its claim and its file.
    row = await _row(replication, done["id"])
    assert row["status"] == "completed"
    assert row["worker_id"]
    assert download.content


async def _rename_first_series(replication: Replication, library: str, name: str) -> None:
    conn = await asyncpg.connect(replication.primary_url())
    try:
        await conn.execute(
            "UPDATE series SET name = $1 WHERE id ="
            " (SELECT id FROM series WHERE library_id = $2::uuid ORDER BY id LIMIT 1)",
            name,
            library,
        )
    finally:
        await conn.close()


def _series_names(content: bytes) -> set[str]:
    document = json.loads(content)
    return {s["series_name"] for s in document["series"]}


async def test_a_lagging_replica_fails_the_export_never_a_stale_file(
    replication: Replication, replica_system: System
) -> None:
    library = replication.library
    user = await new_user(replication.primary_url())
    assert await replication.caught_up()
    await replication.pause_replay()
    try:
        name = f"Renamed while the replica lags {uuid.uuid4().hex[:6]}"
        await _rename_first_series(replication, library, name)
        with replica_system.client(user) as client:
            created = client.post(URL, json=_body(library))
            assert created.status_code == 202, created.text
            failed = wait_for_export(client, created.json()["id"], timeout=60)
    finally:
        await replication.resume_replay()
    assert failed["status"] == "failed", failed
    assert failed["error"] == (
        "The export could not be completed after 2 attempts: the catalog read replica was "
        f"more than {MAX_LAG_SECONDS} s behind the primary database."
    )
    row = await _row(replication, failed["id"])
    assert (row["status"], row["attempt"]) == ("failed", 2)
    assert not list(
        replica_system_store(replica_system).list_objects(
            "codex-exports", prefix=row["object_key"], recursive=True
        )
    )

    # Caught up, the same request gives a file with the change.
    assert await replication.caught_up()
    with replica_system.client(user) as client:
        _, download = export_and_download(client, _body(library))
    assert name in _series_names(download.content)


async def test_an_export_waits_for_the_replica_to_catch_up(
    replication: Replication, replica_system: System
) -> None:
    """Paused while the first attempt waits, resumed before the second: the second attempt
    completes, with the change the replica had not replayed when the export started."""
    library = replication.library
    user = await new_user(replication.primary_url())
    assert await replication.caught_up()
    await replication.pause_replay()
    try:
        name = f"Renamed before the replay resumed {uuid.uuid4().hex[:6]}"
        await _rename_first_series(replication, library, name)
        with replica_system.client(user) as client:
            created = client.post(URL, json=_body(library))
            assert created.status_code == 202, created.text
            export_id = created.json()["id"]
            deadline = time.monotonic() + 60
            # The first attempt gives up waiting and is handed back with its reason.
            while (row := await _row(replication, export_id))["error"] is None:
                assert time.monotonic() < deadline, "the first attempt never gave up"
                await asyncio.sleep(0.1)
            assert row["status"] == "pending", row
            assert "behind the primary" in row["error"]
            await replication.resume_replay()
            done = wait_for_export(client, export_id, timeout=60)
            assert done["status"] == "completed", done
            download = client.get(f"{URL}/{export_id}/download")
    finally:
        await replication.resume_replay()
    assert download.status_code == 200
    assert name in _series_names(download.content)


async def test_a_replica_that_is_down_fails_the_export_with_a_clear_error(
    replication: Replication, replica_system: System
) -> None:
    library = replication.library
    user = await new_user(replication.primary_url())
    assert await replication.caught_up()
    await replication.stop_replica()
    try:
        with replica_system.client(user) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["failing"] == ["catalog database"]
            estimate = client.post(f"{URL}/estimate", json=_body(library))
            assert estimate.status_code == 503
            assert estimate.json() == {
                "error": "Unavailable",
                "message": "The library catalog cannot be read right now; please try again shortly",
            }
            # Creating is job state (the primary) and still works; the export cannot run.
            created = client.post(URL, json=_body(library))
            assert created.status_code == 202, created.text
            failed = wait_for_export(client, created.json()["id"], timeout=60)
    finally:
        await replication.start_replica()
    assert failed["status"] == "failed", failed
    assert failed["error"] == (
        "The export could not be completed after 2 attempts: "
        "the catalog database (read replica) was unavailable."
    )
    row = await _row(replication, failed["id"])
    assert (row["status"], row["attempt"]) == ("failed", 2)
    assert "catalog database unavailable" in replica_system.log("worker")

    # Back up, exports run again (the pools reconnect).
    assert await replication.caught_up()
    with replica_system.client(user) as client:
        done, _ = export_and_download(client, _body(library))
    assert done["rowCount"] > 0


async def test_a_replica_lost_while_an_export_reads_it_is_retried_on_the_primary_row(
    replication: Replication, replica_system: System
) -> None:
    """The replica goes away while the export's query runs on it: the attempt fails with the
    catalog's reason (not as an upload error), the row on the primary is handed back with it,
    and the export completes once the replica is back.

    The query is held on the replica deterministically: an ACCESS EXCLUSIVE lock taken on the
    primary is replayed on the replica, where the export's reads of ``books`` wait for it."""
    library = replication.library
    user = await new_user(replication.primary_url())
    # A worker allowed more attempts than the replica's restart may cost.
    replica_system.stop_one("worker")
    replica_system.start_one("worker", key="patient-worker", EXPORTS_MAX_DELIVER="6")
    replica_system.wait_started("patient-worker")
    locker = await asyncpg.connect(replication.primary_url())
    try:
        locking = locker.transaction()
        await locking.start()
        await locker.execute("LOCK TABLE books IN ACCESS EXCLUSIVE MODE")
        with replica_system.client(user) as client:
            created = client.post(URL, json=_body(library))
            assert created.status_code == 202, created.text
            export_id = created.json()["id"]
            # The export's catalog query waits for the lock on the replica, not the primary.
            deadline = time.monotonic() + 60
            while not await _waiting_on_replica(replication):
                assert time.monotonic() < deadline, "the export never queried the replica"
                await asyncio.sleep(0.1)
            await replication.stop_replica()
            try:
                while (row := await _row(replication, export_id))["error"] is None:
                    assert time.monotonic() < deadline + 60, "the attempt never failed"
                    await asyncio.sleep(0.1)
                assert row["status"] == "pending", row
                assert row["error"] == "the catalog database (read replica) was unavailable"
            finally:
                await locking.rollback()
                await replication.start_replica()
            done = wait_for_export(client, export_id, timeout=90)
            assert done["status"] == "completed", done
            download = client.get(f"{URL}/{export_id}/download")
        assert download.status_code == 200
        document = json.loads(download.content)
        assert done["rowCount"] == len(document["series"]) + len(document["books"])
        assert "catalog database unavailable" in replica_system.log("patient-worker")
    finally:
        await locker.close()
        replica_system.stop_one("patient-worker")
        replica_system.start_one("worker")
        replica_system.wait_started("worker")


async def _waiting_on_replica(replication: Replication) -> bool:
    """Whether a backend on the replica waits for a lock while reading the catalog."""
    conn = await asyncpg.connect(replication.replica_url())
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return bool(waiting)


def replica_system_store(system: System) -> Any:
    from minio import Minio

    env = system.env
    return Minio(
        env["EXPORTS_S3_ENDPOINT"],
        access_key=env["EXPORTS_S3_ACCESS_KEY"],
        secret_key=env["EXPORTS_S3_SECRET_KEY"],
        secure=False,
    )
