"""Another user's export is indistinguishable from a missing one, by every way in."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from tests.conftest import Servers, library_ids_by_name, new_user
from tests.integration.security.conftest import URL, create_key, key_client
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


async def _row(database_url: str, export_id: str) -> dict[str, Any] | None:
    conn = await asyncpg.connect(database_url)
    try:
        record = await conn.fetchrow(
            "SELECT * FROM exports.exports WHERE id = $1", uuid.UUID(export_id)
        )
    finally:
        await conn.close()
    return None if record is None else dict(record)


def _probes(client: httpx.Client, export_id: str) -> list[tuple[str, int, Any]]:
    """Every per-export call, as (call, status, body)."""
    calls = {
        "get": lambda: client.get(f"{URL}/{export_id}"),
        "download": lambda: client.get(f"{URL}/{export_id}/download"),
        "download-range": lambda: client.get(
            f"{URL}/{export_id}/download", headers={"Range": "bytes=0-9"}
        ),
        "events": lambda: client.get(f"{URL}/{export_id}/events"),
        "cancel": lambda: client.post(f"{URL}/{export_id}/cancel"),
        "delete": lambda: client.delete(f"{URL}/{export_id}"),
    }
    results = []
    for name, call in calls.items():
        response = call()
        results.append((name, response.status_code, response.json()))
    return results


@contextmanager
def _ways_in(system: System, user: uuid.UUID) -> Iterator[list[httpx.Client]]:
    """The user's clients: a Bearer token and an API key."""
    key = create_key(system, user)["key"]
    with system.client(user) as by_token, key_client(system, key) as by_key:
        yield [by_token, by_key]


async def test_another_users_export_answers_exactly_like_a_missing_one(
    demo_system: System, demo_database: str
) -> None:
    alice, mallory = await new_user(demo_database), await new_user(demo_database)
    library = (await library_ids_by_name(demo_database))[0]
    with demo_system.client(alice) as client:
        created = client.post(
            URL, json={"format": "json", "libraryIds": [library], "fields": ["title"]}
        ).json()
        done = wait_for_export(client, created["id"])
        assert done["status"] == "completed"
        original = client.get(f"{URL}/{created['id']}/download").content

    with _ways_in(demo_system, mallory) as clients:
        for client in clients:
            theirs = _probes(client, created["id"])
            missing = _probes(client, str(uuid.uuid4()))
            assert theirs == missing
            assert {status for _, status, _ in theirs} == {404}
            assert {json.dumps(body) for _, _, body in theirs} == {
                json.dumps({"error": "NotFound", "message": "Export not found"})
            }
            assert client.get(URL).json() == {"exports": []}
            assert client.get("/api/v1/user/exports/usage").json()["completedExports"] == 0

    # Nothing happened to it.
    with demo_system.client(alice) as client:
        assert client.get(f"{URL}/{created['id']}").json() == done
        assert client.get(f"{URL}/{created['id']}/download").content == original


async def test_an_in_flight_export_cannot_be_cancelled_or_deleted_by_another_user(
    demo_system: System, demo_database: str
) -> None:
    alice, mallory = await new_user(demo_database), await new_user(demo_database)
    library = uuid.UUID((await library_ids_by_name(demo_database))[0])
    export_id = uuid.uuid4()
    conn = await asyncpg.connect(demo_database)
    try:
        # A run held by a worker whose heartbeat stays fresh for an hour: nobody touches it
        # but its owner.
        await conn.execute(
            "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids,"
            " library_names, fields, book_fields, file_name, object_key, expires_at, status,"
            " worker_id, heartbeat_at, started_at, published_at, attempt) VALUES ($1, $2, 'json',"
            " 'series', $3, '{L}', '{title}', '{}', 'f.json', $4, now() + interval '1 day',"
            " 'running', 'elsewhere', now() + interval '1 hour', now(), now(), 1)",
            export_id, alice, [library], f"exports/{alice}/{export_id}/f.json",
        )  # fmt: skip
        before = dict(await conn.fetchrow("SELECT * FROM exports.exports WHERE id = $1", export_id))
        with _ways_in(demo_system, mallory) as clients:
            for client in clients:
                for probe in (
                    client.post(f"{URL}/{export_id}/cancel"),
                    client.delete(f"{URL}/{export_id}"),
                ):
                    assert (probe.status_code, probe.json()) == (
                        404,
                        {"error": "NotFound", "message": "Export not found"},
                    )
        after = dict(await conn.fetchrow("SELECT * FROM exports.exports WHERE id = $1", export_id))
        assert after == before
    finally:
        await conn.execute("DELETE FROM exports.exports WHERE id = $1", export_id)
        await conn.close()


async def test_ownership_and_keys_come_from_the_server_not_the_body(
    demo_system: System, demo_database: str
) -> None:
    alice, mallory = await new_user(demo_database), await new_user(demo_database)
    library = (await library_ids_by_name(demo_database))[0]
    hostile = {
        "format": "json",
        "libraryIds": [library],
        "fields": ["title"],
        "userId": str(alice),
        "user_id": str(alice),
        "id": str(uuid.uuid4()),
        "objectKey": "../../etc/passwd",
        "fileName": "../../evil.sh",
        "status": "completed",
    }
    with demo_system.client(mallory) as client:
        response = client.post(URL, json=hostile)
        assert response.status_code == 202, response.text
        export = response.json()
        assert export["id"] != hostile["id"] and export["status"] == "pending"
        assert wait_for_export(client, export["id"])["status"] == "completed"
    row = await _row(demo_database, export["id"])
    assert row is not None and row["user_id"] == mallory
    assert re.fullmatch(
        rf"exports/{mallory}/{export['id']}/codex-series-[a-z0-9-]+-\d{{8}}T\d{{6}}Z\.json",
        row["object_key"],
    )
    with demo_system.client(alice) as client:
        assert client.get(URL).json() == {"exports": []}


async def test_bus_submit_creates_exports_owned_by_the_named_user_only(
    demo_system: System, demo_database: str, real_servers: Servers
) -> None:
    alice, bob = await new_user(demo_database), await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    conn = await asyncpg.connect(demo_database)
    try:
        # Bob may read only the first library.
        await conn.execute(
            "INSERT INTO exports.user_library_access (user_id, library_id) VALUES ($1, $2)",
            bob,
            uuid.UUID(libraries[0]),
        )
    finally:
        await conn.close()
    nc = await nats.connect(real_servers.nats_url)
    try:

        async def submit(payload: dict[str, Any]) -> dict[str, Any]:
            reply = await nc.request("export.submit", json.dumps(payload).encode(), timeout=10)
            result: dict[str, Any] = json.loads(reply.data)
            return result

        mine = await submit(
            {
                "userId": str(alice),
                "request": {
                    "format": "csv",
                    "libraryIds": [libraries[0]],
                    "fields": ["title"],
                    "userId": str(bob),
                    "objectKey": "exports/elsewhere/x",
                },
                "user_id": str(bob),
            }
        )
        assert mine["status"] == "pending", mine
        row = await _row(demo_database, mine["id"])
        assert row is not None and row["user_id"] == alice
        assert row["object_key"].startswith(f"exports/{alice}/{mine['id']}/codex-series-")
        # A library Bob may not read is unknown to him on the bus as over HTTP.
        refused = await submit(
            {"userId": str(bob), "request": {"format": "json", "libraryIds": [libraries[1]]}}
        )
        assert refused == {
            "error": "ValidationError",
            "message": f"Unknown library: {libraries[1]}",
        }
    finally:
        await nc.close()
    with demo_system.client(bob) as client:
        assert client.get(URL).json() == {"exports": []}
        assert client.get(f"{URL}/{mine['id']}").status_code == 404
    with demo_system.client(alice) as client:
        assert wait_for_export(client, mine["id"])["status"] == "completed"
