"""Crash-safe deletions (``shared.retention`` with ``shared.repository``'s tombstones) and the
worker's completion under its row lock, on the real PostgreSQL and S3 servers.

A crash is made by running a deletion's steps only partly (what a killed process leaves) or by
killing a real process at the step (``os.kill(SIGKILL)`` inside the completion); every test then
checks rows, objects, incomplete uploads and tombstones, and that the next sweep
(``retention.finish_deletions``, no age grace) finishes at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import urllib3
from minio import Minio
from prometheus_client import REGISTRY

from services.cli import servers
from shared import object_store, retention
from shared import repository as exports_repo
from shared.formats import ExportFormat, ExportType
from shared.repository import ExportRow
from tests.conftest import Servers
from tests.integration.shared.conftest import scratch_bucket

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024
WORKER = "test-worker:1"
REASONS = ("expired", "completed_cap", "storage_cap", "deleted")


@pytest.fixture(scope="module")
def store(real_servers: Servers) -> Iterator[tuple[Minio, str]]:
    with scratch_bucket(real_servers, "retention") as made:
        yield made


def _objects(client: Minio, bucket: str, prefix: str = "exports/") -> set[str]:
    return {o.object_name or "" for o in client.list_objects(bucket, prefix=prefix, recursive=True)}


def _uploads(client: Minio, bucket: str, prefix: str = "exports/") -> list[str]:
    return [u.object_name for u in client._list_multipart_uploads(bucket, prefix=prefix).uploads]


async def _tombstones(pool: asyncpg.Pool) -> dict[str, str]:
    records = await pool.fetch("SELECT object_key, reason FROM exports.deletions")
    return {r["object_key"]: r["reason"] for r in records}


def _counted(reason: str) -> float:
    return REGISTRY.get_sample_value("exports_deletions_total", {"reason": reason}) or 0.0


async def _running(pool: asyncpg.Pool, worker_id: str = WORKER) -> ExportRow:
    """A new export claimed by ``worker_id``."""
    user, export_id = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    new = exports_repo.NewExport(
        id=export_id,
        user_id=user,
        format=ExportFormat.CSV,
        export_type=ExportType.SERIES,
        library_ids=[uuid.uuid4()],
        library_names=["L"],
        fields=["title"],
        book_fields=[],
        file_name="f.csv",
        object_key=f"exports/{user}/{export_id}/f.csv",
        created_at=now,
        expires_at=now + timedelta(days=1),
    )
    async with pool.acquire() as conn:
        await exports_repo.insert_export(conn, new, max_active=3)
    claimed = await exports_repo.claim(pool, export_id, worker_id, stale_after_seconds=60)
    assert claimed is not None
    return claimed


async def _sealed(
    store: tuple[Minio, str], row: ExportRow, data: bytes
) -> object_store.StreamingUpload:
    client, bucket = store
    upload = object_store.StreamingUpload(
        client, bucket, row.object_key, "text/csv", part_size=PART
    )
    upload.start()
    await upload.write(data)
    await upload.seal()
    return upload


async def _complete(
    pool: asyncpg.Pool,
    row: ExportRow,
    upload: object_store.StreamingUpload,
    data: bytes,
    worker_id: str = WORKER,
) -> ExportRow | None:
    """The worker's completion, as ``services.worker.service.run`` does it."""
    try:
        return await exports_repo.complete(
            pool,
            row.id,
            worker_id,
            row_count=1,
            file_size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            publish=upload.complete,
        )
    finally:
        await upload.abort()


async def _completed(pool: asyncpg.Pool, store: tuple[Minio, str]) -> ExportRow:
    row = await _running(pool)
    data = os.urandom(1000)
    done = await _complete(pool, row, await _sealed(store, row, data), data)
    assert done is not None and done.status == "completed"
    assert row.object_key in _objects(*store)
    return done


# --- deletions cut short ----------------------------------------------------------------------


async def test_a_deletion_cut_after_its_row_is_finished_by_the_next_sweep(
    pool: asyncpg.Pool, store: tuple[Minio, str]
) -> None:
    client, bucket = store
    rows = {reason: await _completed(pool, store) for reason in REASONS}
    before = {reason: _counted(reason) for reason in REASONS}
    for reason, row in rows.items():
        # Step 1 only: the row deleted with its tombstone; then the process died.
        assert await exports_repo.delete_any(pool, row.id, reason) is not None
    keys = {row.object_key: reason for reason, row in rows.items()}
    assert await _tombstones(pool) == keys
    assert set(keys) <= _objects(client, bucket)  # the files, which no row names any more
    assert all([await exports_repo.get_any(pool, row.id) is None for row in rows.values()])

    # The next sweep finishes every one at once, however young (no orphan age to wait for).
    assert await retention.finish_deletions(pool, client, bucket, None) == len(REASONS)
    assert await _tombstones(pool) == {}
    assert not set(keys) & _objects(client, bucket)
    assert {reason: _counted(reason) - before[reason] for reason in REASONS} == dict.fromkeys(
        REASONS, 1.0
    )
    assert await retention.finish_deletions(pool, client, bucket, None) == 0


async def test_a_deletion_cut_after_its_object_is_finished_and_counted_once(
    pool: asyncpg.Pool, store: tuple[Minio, str]
) -> None:
    client, bucket = store
    row = await _completed(pool, store)
    before = _counted("completed_cap")
    assert await exports_repo.delete_any(pool, row.id, "completed_cap") is not None
    await object_store.remove(client, bucket, row.object_key)  # step 2; died before step 3
    assert await _tombstones(pool) == {row.object_key: "completed_cap"}
    assert _counted("completed_cap") == before  # not counted until it is finished
    assert await retention.finish_deletions(pool, client, bucket, None) == 1
    assert await _tombstones(pool) == {}
    assert _counted("completed_cap") == before + 1


async def test_a_deletion_is_done_once_whoever_races_for_it(
    pool: asyncpg.Pool, store: tuple[Minio, str]
) -> None:
    client, bucket = store
    row = await _completed(pool, store)
    before = _counted("expired")
    # Two janitors on the same expiry, and a sweep finishing tombstones at the same moment.
    results = await asyncio.gather(
        retention.remove(pool, client, bucket, None, row, "expired"),
        retention.remove(pool, client, bucket, None, row, "expired"),
        retention.finish_deletions(pool, client, bucket, None),
    )
    assert sorted(results[:2]) == [False, True]
    assert await _tombstones(pool) == {}
    assert row.object_key not in _objects(client, bucket)
    assert _counted("expired") == before + 1


async def test_the_owners_delete_holds_when_the_store_is_away(
    pool: asyncpg.Pool, store: tuple[Minio, str]
) -> None:
    client, bucket = store
    row = await _completed(pool, store)
    away = Minio(  # nothing listens there: refused at once (no retries)
        f"127.0.0.1:{servers.free_port()}",
        access_key="k",
        secret_key="s" * 20,
        secure=False,
        http_client=urllib3.PoolManager(retries=0),
    )
    gone = await retention.delete_for_user(pool, away, bucket, row.id, row.user_id)
    assert gone is not None and gone.id == row.id  # the record is gone: the delete succeeded
    assert await _tombstones(pool) == {row.object_key: "deleted"}
    assert row.object_key in _objects(client, bucket)
    assert await retention.finish_deletions(pool, client, bucket, None) == 1
    assert row.object_key not in _objects(client, bucket)
    assert await _tombstones(pool) == {}


# --- the worker's completion holds its row ----------------------------------------------------


@pytest.mark.parametrize("meanwhile", ["deleted", "cancelled", "taken over", "requeued"])
async def test_no_object_is_made_for_a_row_that_changed_before_completion(
    pool: asyncpg.Pool, store: tuple[Minio, str], meanwhile: str
) -> None:
    client, bucket = store
    row = await _running(pool)
    data = os.urandom(PART + 10)
    upload = await _sealed(store, row, data)  # every part uploaded; the last moment
    if meanwhile == "deleted":
        assert await retention.delete_for_user(pool, client, bucket, row.id, row.user_id)
    elif meanwhile == "cancelled":
        assert await exports_repo.cancel_for_user(pool, row.id, row.user_id)
    else:
        await pool.execute(
            "UPDATE exports.exports SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
            row.id,
        )
        if meanwhile == "taken over":
            assert await exports_repo.claim(pool, row.id, "other:2", stale_after_seconds=1)
        else:
            await pool.execute(
                "UPDATE exports.exports SET status = 'pending', worker_id = NULL WHERE id = $1",
                row.id,
            )
    assert await _complete(pool, row, upload, data) is None
    assert row.object_key not in _objects(client, bucket)
    assert _uploads(client, bucket, f"exports/{row.user_id}/") == []
    assert await _tombstones(pool) == {}


async def test_a_delete_during_completion_waits_for_it_then_removes_the_file(
    pool: asyncpg.Pool, store: tuple[Minio, str]
) -> None:
    client, bucket = store
    row = await _running(pool)
    data = os.urandom(1000)
    upload = await _sealed(store, row, data)
    deleting: list[asyncio.Task[ExportRow | None]] = []

    async def publish() -> None:
        await upload.complete()
        # The owner deletes now: the row is held, so the delete waits for the commit.
        deleting.append(
            asyncio.create_task(
                retention.delete_for_user(pool, client, bucket, row.id, row.user_id)
            )
        )
        await asyncio.sleep(0.5)
        assert not deleting[0].done()
        assert row.object_key in _objects(client, bucket)

    done = await exports_repo.complete(
        pool,
        row.id,
        WORKER,
        row_count=1,
        file_size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        publish=publish,
    )
    assert done is not None and done.status == "completed"
    gone = await deleting[0]
    assert gone is not None and gone.status == "completed"
    assert row.object_key not in _objects(client, bucket)
    assert await _tombstones(pool) == {}


# A worker's last steps, killed (SIGKILL) after the object was made and before the commit.
CRASH = """
import asyncio, hashlib, os, signal, uuid
import asyncpg
from minio import Minio
from shared import object_store
from shared import repository as exports_repo

async def main():
    pool = await asyncpg.create_pool(os.environ["DSN"], min_size=1, max_size=2)
    client = Minio(os.environ["S3"], access_key=os.environ["KEY"], secret_key=os.environ["SECRET"],
                   secure=False)
    upload = object_store.StreamingUpload(client, os.environ["BUCKET"], os.environ["OBJECT"],
                                          "text/csv", part_size=5 * 1024 * 1024)
    upload.start()
    data = bytes.fromhex(os.environ["DATA"])
    await upload.write(data)
    await upload.seal()

    async def publish():
        await upload.complete()
        os.kill(os.getpid(), signal.SIGKILL)

    await exports_repo.complete(pool, uuid.UUID(os.environ["EXPORT"]), os.environ["WORKER"],
                                row_count=1, file_size_bytes=len(data),
                                sha256=hashlib.sha256(data).hexdigest(), publish=publish)

asyncio.run(main())
"""


async def _crash_after_publish(
    real_servers: Servers, database_url: str, store: tuple[Minio, str], row: ExportRow, data: bytes
) -> None:
    env = {
        **os.environ,
        "DSN": database_url,
        "S3": real_servers.s3_endpoint,
        "KEY": real_servers.s3_access_key,
        "SECRET": real_servers.s3_secret_key,
        "BUCKET": store[1],
        "OBJECT": row.object_key,
        "DATA": data.hex(),
        "EXPORT": str(row.id),
        "WORKER": WORKER,
    }
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", CRASH], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]


async def test_a_worker_killed_after_making_its_object_leaves_a_running_row_with_it(
    pool: asyncpg.Pool, store: tuple[Minio, str], real_servers: Servers, fresh_database: str
) -> None:
    client, bucket = store
    row = await _running(pool)
    data = os.urandom(2000)
    await _crash_after_publish(real_servers, fresh_database, store, row, data)
    # The object exists and so does its row, still running (the commit never came), unlocked.
    current = await exports_repo.get_any(pool, row.id)
    assert current is not None and (current.status, current.worker_id) == ("running", WORKER)
    assert row.object_key in _objects(client, bucket)
    async with pool.acquire() as conn, conn.transaction():
        locked = "SELECT 1 FROM exports.exports WHERE id = $1 FOR UPDATE NOWAIT"
        assert await conn.fetchval(locked, row.id) == 1

    # Its heartbeat goes stale; the next worker runs it again and writes the same key.
    await pool.execute(
        "UPDATE exports.exports SET heartbeat_at = now() - interval '1 hour' WHERE id = $1", row.id
    )
    again = await exports_repo.claim(pool, row.id, "next:2", stale_after_seconds=60)
    assert again is not None
    done = await _complete(pool, again, await _sealed(store, again, data), data, "next:2")
    assert done is not None and done.sha256 == hashlib.sha256(data).hexdigest()
    assert _objects(client, bucket, f"exports/{row.user_id}/") == {row.object_key}
    response = client.get_object(bucket, row.object_key)
    try:
        assert hashlib.sha256(response.read()).hexdigest() == done.sha256
    finally:
        response.close()
        response.release_conn()


async def test_a_delete_after_such_a_crash_removes_the_object(
    pool: asyncpg.Pool, store: tuple[Minio, str], real_servers: Servers, fresh_database: str
) -> None:
    client, bucket = store
    row = await _running(pool)
    await _crash_after_publish(real_servers, fresh_database, store, row, os.urandom(2000))
    assert row.object_key in _objects(client, bucket)
    # The owner deletes the export that never completed: its tombstone covers the file.
    assert await retention.delete_for_user(pool, client, bucket, row.id, row.user_id)
    assert _objects(client, bucket, f"exports/{row.user_id}/") == set()
    assert await _tombstones(pool) == {}
