"""Expiry on NATS timers, the periodic sweep, and the caps of SPEC §7."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import asyncpg
import pytest

from tests.integration.lifecycle.conftest import (
    URL,
    Catalog,
    Restartable,
    create,
    fresh_user,
    objects,
    wait_until,
)
from tests.system import wait_for_export

pytestmark = pytest.mark.integration


def _small(catalog: Catalog, fmt: str = "json") -> dict[str, Any]:
    return {"format": fmt, "libraryIds": [str(catalog.synthetic.library_id)], "fields": ["title"]}


async def _row_exists(database_url: str, export_id: str) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        return bool(
            await conn.fetchval("SELECT 1 FROM exports.exports WHERE id = $1", uuid.UUID(export_id))
        )
    finally:
        await conn.close()


async def test_timer_expires_file_and_record(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    # The sweep is hourly here, so only the per-export @at timer can do this.
    system = system_factory(big_catalog.database_url, EXPORTS_RETENTION_SECONDS="4")
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(client, _small(big_catalog))
        done = wait_for_export(client, export["id"])
        assert done["status"] == "completed"
        prefix = f"exports/{user}/{export['id']}/"
        assert objects(restartable, prefix)
        wait_until(lambda: client.get(f"{URL}/{export['id']}").status_code == 404, timeout=30)
    assert objects(restartable, prefix) == []
    assert "export removed (expired)" in system.log("janitor")


async def test_failed_and_cancelled_exports_expire_too(
    big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(
        big_catalog.database_url, "api", "janitor", EXPORTS_RETENTION_SECONDS="3"
    )
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(client, _small(big_catalog))  # no worker: stays pending
        assert client.post(f"{URL}/{export['id']}/cancel").json()["status"] == "cancelled"
        wait_until(lambda: client.get(f"{URL}/{export['id']}").status_code == 404, timeout=30)


async def test_overdue_timers_fire_after_a_nats_restart(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url, EXPORTS_RETENTION_SECONDS="6")
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(client, _small(big_catalog))
        assert wait_for_export(client, export["id"])["status"] == "completed"
    restartable.nats.stop()
    await asyncio.sleep(8)  # the expiry passes while the bus is down
    assert await _row_exists(big_catalog.database_url, export["id"])
    restartable.restart_nats()
    with system.client(user) as client:
        wait_until(lambda: client.get(f"{URL}/{export['id']}").status_code == 404, timeout=60)
    assert objects(restartable, f"exports/{user}/{export['id']}/") == []


async def test_sweep_catches_what_timers_and_workers_missed(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    database = big_catalog.database_url
    user = await fresh_user(database)
    library = big_catalog.synthetic.library_id
    conn = await asyncpg.connect(database)
    ids = {name: uuid.uuid4() for name in ("expired", "stale", "unpublished")}
    try:
        insert = (
            "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids, library_names,"
            " fields, book_fields, file_name, object_key, status, heartbeat_at, worker_id, created_at,"
            " expires_at, published_at) VALUES ($1, $2, 'json', 'series', $3, '{Synthetic}', '{title}', '{}',"
            " 'f.json', $4, $5, $6, $7, $8, $9, $10)"
        )
        import datetime as dt

        utc = dt.datetime.now(dt.UTC)
        await conn.execute(
            insert,
            ids["expired"],
            user,
            [library],
            f"exports/{user}/{ids['expired']}/f.json",
            "completed",
            None,
            None,
            utc - dt.timedelta(days=8),
            utc - dt.timedelta(days=1),
            utc,
        )
        await conn.execute(
            insert,
            ids["stale"],
            user,
            [library],
            f"exports/{user}/{ids['stale']}/f.json",
            "running",
            utc - dt.timedelta(hours=1),
            "dead-worker:1",
            utc,
            utc + dt.timedelta(days=1),
            utc,
        )
        await conn.execute(
            insert,
            ids["unpublished"],
            user,
            [library],
            f"exports/{user}/{ids['unpublished']}/f.json",
            "pending",
            None,
            None,
            utc - dt.timedelta(minutes=5),
            utc + dt.timedelta(days=1),
            None,
        )
    finally:
        await conn.close()
    store = restartable.store()
    orphan = f"exports/{user}/{uuid.uuid4()}/orphan.json"
    store.put_object("codex-exports", orphan, io.BytesIO(b"[]"), 2)
    store.put_object(
        "codex-exports", f"exports/{user}/{ids['expired']}/f.json", io.BytesIO(b"[]"), 2
    )
    # A multipart upload a crashed worker left unfinished.
    upload_id = store._create_multipart_upload(
        "codex-exports", f"exports/{user}/{uuid.uuid4()}/x.json", {}
    )
    assert upload_id

    system = system_factory(
        database, EXPORTS_SWEEP_INTERVAL_SECONDS="2", EXPORTS_ORPHAN_AGE_SECONDS="0"
    )
    with system.client(user) as client:
        wait_until(lambda: client.get(f"{URL}/{ids['expired']}").status_code == 404, timeout=30)
        for name in ("stale", "unpublished"):
            assert wait_for_export(client, str(ids[name]), timeout=60)["status"] == "completed", (
                name
            )
    remaining = set(objects(restartable, f"exports/{user}/"))
    assert orphan not in remaining
    assert f"exports/{user}/{ids['expired']}/f.json" not in remaining
    assert {f"exports/{user}/{ids[n]}/f.json" for n in ("stale", "unpublished")} <= remaining
    uploads = store._list_multipart_uploads("codex-exports", prefix=f"exports/{user}/").uploads
    assert uploads == []


async def test_completed_cap_per_user(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url, EXPORTS_MAX_COMPLETED_PER_USER="2")
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        made = []
        for fmt in ("json", "csv", "md"):
            export = create(client, _small(big_catalog, fmt))
            assert wait_for_export(client, export["id"])["status"] == "completed"
            made.append(export["id"])
        wait_until(lambda: len(client.get(URL).json()["exports"]) == 2, timeout=20)
        kept = [e["id"] for e in client.get(URL).json()["exports"]]
    assert kept == made[:0:-1]  # the two newest, newest first
    assert objects(restartable, f"exports/{user}/{made[0]}/") == []


async def test_global_storage_cap_evicts_the_oldest(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    probe = system_factory(big_catalog.database_url)
    user = await fresh_user(big_catalog.database_url)
    with probe.client(user) as client:
        first = create(client, _small(big_catalog))
        size = wait_for_export(client, first["id"])["fileSizeBytes"]
    probe.stop()
    # Room for two and a half files: older exports (of any user) go first, then ``first``.
    cap = int(size * 2.5)
    system = system_factory(big_catalog.database_url, EXPORTS_STORAGE_CAP_BYTES=str(cap))
    with system.client(user) as client:
        second = create(client, _small(big_catalog, "json"))
        assert wait_for_export(client, second["id"])["status"] == "completed"
        third = create(client, _small(big_catalog, "json"))
        assert wait_for_export(client, third["id"])["status"] == "completed"
        wait_until(lambda: client.get(f"{URL}/{first['id']}").status_code == 404, timeout=20)
        assert [e["id"] for e in client.get(URL).json()["exports"]] == [third["id"], second["id"]]
    assert objects(restartable, f"exports/{user}/{first['id']}/") == []
    assert "export removed (storage_cap)" in system.log("worker")
