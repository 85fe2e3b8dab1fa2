"""Break things on purpose: kill workers, stop NATS, the object store and PostgreSQL.

Each test asserts the final rows, the bucket and the downloaded file, not only status codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from tests.integration.lifecycle.conftest import (
    URL,
    Catalog,
    Restartable,
    big_books_request,
    create,
    fresh_user,
    objects,
    wait_until,
)
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration


def _progress(client: httpx.Client, export_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"{URL}/{export_id}").json()
    return body


def _verify_file(client: httpx.Client, done: dict[str, Any], rows: int) -> None:
    assert done["status"] == "completed", done
    content = client.get(f"{URL}/{done['id']}/download").content
    assert hashlib.sha256(content).hexdigest() == done["sha256"]
    parsed = json.loads(content)
    assert len(parsed) == done["rowCount"] == rows


async def test_a_killed_worker_is_taken_over_and_the_file_is_complete(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system: System = system_factory(big_catalog.database_url, "api", "janitor")
    system.start_one("worker", "worker-1")
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog))
        wait_until(lambda: _progress(client, export["id"])["rowsWritten"] > 0)
        system.stop_one("worker-1", kill=True)  # SIGKILL mid-export: no ack, no cleanup
        killed_at = _progress(client, export["id"])
        assert killed_at["status"] == "running" and killed_at["rowsWritten"] < 60_000
        system.start_one("worker", "worker-2")
        done = wait_for_export(client, export["id"], timeout=120)
        _verify_file(client, done, 60_000)
    prefix = f"exports/{user}/{export['id']}/"
    assert objects(restartable, prefix) == [prefix + done["fileName"]]
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        attempt = await conn.fetchval(
            "SELECT attempt FROM exports.exports WHERE id = $1", done["id"]
        )
    finally:
        await conn.close()
    assert attempt == 2


async def test_nats_down_at_create_still_succeeds_and_runs_when_back(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url)
    user = await fresh_user(big_catalog.database_url)
    body = {
        "format": "json",
        "libraryIds": [str(big_catalog.synthetic.library_id)],
        "fields": ["title", "year"],
    }
    restartable.nats.stop()
    try:
        with system.client(user) as client:
            export = create(client, body)  # 202 although the bus is down: the row is the outbox
            await asyncio.sleep(1)
            assert _progress(client, export["id"])["status"] == "pending"
    finally:
        restartable.restart_nats()
    with system.client(user) as client:
        done = wait_for_export(client, export["id"], timeout=90)
        _verify_file(client, done, 1200)
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        assert await conn.fetchval(
            "SELECT published_at IS NOT NULL FROM exports.exports WHERE id = $1", done["id"]
        )
    finally:
        await conn.close()


async def test_object_store_outage_is_retried_then_completes(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url, EXPORTS_MAX_DELIVER="6")
    user = await fresh_user(big_catalog.database_url)
    body = {
        "format": "json",
        "libraryIds": [str(big_catalog.synthetic.library_id)],
        "fields": ["title"],
    }
    restartable.stop_s3()
    try:
        with system.client(user) as client:
            export = create(client, body)
            # A failed attempt hands the export back with the reason kept for people.
            wait_until(
                lambda: (_progress(client, export["id"])["error"] or "").startswith(
                    "the file storage"
                ),
                timeout=60,
            )
    finally:
        restartable.start_s3()
    with system.client(user) as client:
        done = wait_for_export(client, export["id"], timeout=90)
        _verify_file(client, done, 1200)
        assert done["error"] is None


async def test_a_lasting_outage_fails_the_export_with_a_readable_message(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url, EXPORTS_MAX_DELIVER="2")
    user = await fresh_user(big_catalog.database_url)
    body = {
        "format": "csv",
        "libraryIds": [str(big_catalog.synthetic.library_id)],
        "fields": ["title"],
    }
    restartable.stop_s3()
    try:
        with system.client(user) as client:
            export = create(client, body)
            done = wait_for_export(client, export["id"], timeout=90)
    finally:
        restartable.start_s3()
    assert done["status"] == "failed"
    assert (
        done["error"]
        == "The export could not be completed after 2 attempts: the file storage was unreachable or refused the upload."
    )
    assert "Traceback" not in done["error"]


async def test_database_restart_mid_export(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url, EXPORTS_MAX_DELIVER="6")
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog))
        wait_until(lambda: _progress(client, export["id"])["rowsWritten"] > 0)
    restartable.stop_pg()
    await asyncio.sleep(2)
    restartable.start_pg()
    with system.client(user) as client:
        done = wait_for_export(client, export["id"], timeout=120)
        _verify_file(client, done, 60_000)
    prefix = f"exports/{user}/{export['id']}/"
    assert objects(restartable, prefix) == [prefix + done["fileName"]]


async def test_malformed_events_are_rejected_and_consumers_stay_up(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url)
    nc = await nats.connect(restartable.nats.url)
    try:
        js = nc.jetstream()
        for subject, payload in [
            ("export.requested", b"not json"),
            ("export.requested", b'{"type": "export.requested", "export_id": "nope"}'),
            (
                "export.requested",
                json.dumps(
                    {
                        "type": "export.requested",
                        "export_id": "00000000-0000-0000-0000-000000000000",
                        "user_id": "00000000-0000-0000-0000-000000000000",
                    }
                ).encode(),
            ),
            ("export.timer.fired.expire", b"\x00\xff"),
            ("export.timer.fired.expire", b'{"type": "export.timer.expire", "export_id": 5}'),
            ("export.timer.fired.sweep", b'{"type": "something.else"}'),
        ]:
            await js.publish(subject, payload)
        await nc.publish("export.cancel.not-a-uuid", b"")
    finally:
        await nc.close()
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(
            client,
            {
                "format": "md",
                "libraryIds": [str(big_catalog.synthetic.library_id)],
                "fields": ["year"],
            },
        )
        assert wait_for_export(client, export["id"])["status"] == "completed"
    for key in ("worker", "janitor"):
        assert system.processes[key].poll() is None, system.log(key)[-2000:]
    wait_until(lambda: "rejected malformed timer event" in system.log("janitor"), timeout=20)
    assert "rejected malformed export.requested" in system.log("worker")


async def test_sigterm_hands_the_export_back(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system: System = system_factory(big_catalog.database_url, "api", "janitor")
    proc = system.start_one("worker", "worker-1")
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog, "md"))
        wait_until(lambda: _progress(client, export["id"])["rowsWritten"] > 0)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert time.monotonic() - started < 25
        # Handed back at once, not left running until a heartbeat goes stale.
        assert _progress(client, export["id"])["status"] == "pending"
        assert "export handed back on shutdown" in system.log("worker-1")
        system.processes.pop("worker-1")
        system.start_one("worker", "worker-2")
        done = wait_for_export(client, export["id"], timeout=120)
        assert done["status"] == "completed"
        content = client.get(f"{URL}/{done['id']}/download").content
        assert hashlib.sha256(content).hexdigest() == done["sha256"]
        assert sum(1 for line in content.decode().splitlines() if line.startswith("## ")) == 60_000


async def test_duplicate_requests_never_run_an_export_twice(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system: System = system_factory(big_catalog.database_url, "api", "janitor")
    system.start_one("worker", "worker-a")
    system.start_one("worker", "worker-b")
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog, "csv"))
        wait_until(lambda: _progress(client, export["id"])["rowsWritten"] > 0)
        nc = await nats.connect(restartable.nats.url)
        try:
            js = nc.jetstream()
            payload = json.dumps(
                {"type": "export.requested", "export_id": export["id"], "user_id": str(user)}
            ).encode()
            for n in range(3):  # distinct message ids: JetStream delivers every one
                await js.publish(
                    "export.requested", payload, headers={"Nats-Msg-Id": f"dup-{export['id']}-{n}"}
                )
        finally:
            await nc.close()
        done = wait_for_export(client, export["id"], timeout=120)
        assert done["status"] == "completed"
        content = client.get(f"{URL}/{done['id']}/download").content
        assert hashlib.sha256(content).hexdigest() == done["sha256"]
        assert content.count(b"\r\n") == 60_001
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        assert (
            await conn.fetchval("SELECT attempt FROM exports.exports WHERE id = $1", done["id"])
            == 1
        )
    finally:
        await conn.close()
    prefix = f"exports/{user}/{export['id']}/"
    assert objects(restartable, prefix) == [prefix + done["fileName"]]
    started = (system.log("worker-a") + system.log("worker-b")).count("export started")
    assert started == 1
