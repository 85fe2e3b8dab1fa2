"""Least privilege: each service runs end to end on its own database role, and no more.

Three LOGIN roles (the test PostgreSQL trusts 127.0.0.1), ``codex-exports grant``, then api,
worker and janitor each with its own ``EXPORTS_DATABASE_URL``: an export runs, a key is made
and used, the worker evicts over the cap, the janitor sweeps and expires. Then every write a
service has no business doing is tried and refused by PostgreSQL.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest

from services.cli.synthetic import build_synthetic
from tests.conftest import Servers, create_database, new_user
from tests.integration.security.conftest import KEYS_URL, URL, SystemFactory, key_client, store
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration
SERVICES = ("api", "worker", "janitor")


@dataclass
class Stack:
    system: System
    database_url: str
    roles: dict[str, str]  # service → role
    urls: dict[str, str]  # service → its own database URL
    library: str
    user: uuid.UUID


def _as(url: str, role: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


@pytest.fixture(scope="module")
async def stack(real_servers: Servers, private_systems: SystemFactory) -> AsyncIterator[Stack]:
    url = await create_database(real_servers)
    tag = uuid.uuid4().hex[:8]
    roles = {service: f"codex_{service}_{tag}" for service in SERVICES}
    conn = await asyncpg.connect(url)
    try:
        catalog = await build_synthetic(conn, series=30, books=300)
        for role in roles.values():
            await conn.execute(f'CREATE ROLE "{role}" LOGIN')
    finally:
        await conn.close()
    user = await new_user(url)

    granted = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli.main", "grant", "--database-url", url,
         "--api-role", roles["api"], "--worker-role", roles["worker"], "--janitor-role", roles["janitor"]],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert granted.stdout.startswith("granted: ")

    urls = {service: _as(url, role) for service, role in roles.items()}
    system = private_systems(
        url,
        start=False,
        EXPORTS_MAX_COMPLETED_PER_USER="1",
        EXPORTS_SWEEP_INTERVAL_SECONDS="2",
        EXPORTS_RETENTION_SECONDS="20",
        # Schedules fire every 2 s here (test_a_schedule_fires_on_the_roles).
        EXPORTS_MIN_SCHEDULE_SECONDS="1",
        EXPORTS_SCHEDULE_SPREAD_SECONDS="0",
    )
    for service in SERVICES:
        system.start_one(service, EXPORTS_DATABASE_URL=urls[service])
    system.wait_ready()
    try:
        yield Stack(system, url, roles, urls, str(catalog.library_id), user)
    finally:
        system.stop()
        conn = await asyncpg.connect(url)
        try:
            for role in roles.values():
                await conn.execute(f'DROP OWNED BY "{role}"')
                await conn.execute(f'DROP ROLE "{role}"')
        finally:
            await conn.close()


async def test_an_export_runs_end_to_end_with_each_service_on_its_own_role(
    stack: Stack, real_servers: Servers
) -> None:
    system = stack.system
    conn = await asyncpg.connect(stack.database_url)
    try:
        connected = await conn.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert set(stack.roles.values()) <= {r["usename"] for r in connected}
    body = {"format": "json", "exportType": "both", "libraryIds": [stack.library], "preset": "all"}
    with system.client(stack.user) as client:
        key = client.post(KEYS_URL, json={"name": "least privilege"}).json()
        estimate = client.post(f"{URL}/estimate", json=body)
        assert estimate.status_code == 200, estimate.text
        first = client.post(URL, json=body, headers={"Idempotency-Key": "one"}).json()
        done = wait_for_export(client, first["id"])
        assert done["status"] == "completed"
        assert done["rowCount"] == estimate.json()["series"] + estimate.json()["books"]
        assert client.get(f"{URL}/{first['id']}/download").status_code == 200
        link = client.post(f"{URL}/{first['id']}/download-link").json()["url"]
        assert client.get(link).status_code == 200  # the link decides: the api's role reads it
    with key_client(system, key["key"]) as client:
        second = client.post(URL, json={**body, "format": "md"}).json()
        done = wait_for_export(client, second["id"])
        assert done["status"] == "completed", done
        assert client.get(f"{URL}/{second['id']}/download").status_code == 200
        # The cap keeps one completed export: the worker's role deleted the first.
        assert [e["id"] for e in client.get(URL).json()["exports"]] == [second["id"]]
        third = client.post(URL, json={**body, "format": "csv", "exportType": "series"}).json()
        client.post(f"{URL}/{third['id']}/cancel")
        client.delete(f"{URL}/{third['id']}")
    with system.client(stack.user) as client:
        assert client.delete(f"{KEYS_URL}/{key['id']}").status_code == 204

    # The janitor's role expires the last one (retention 20 s): its row and its file go.
    bucket = system.env["EXPORTS_S3_BUCKET"]
    deadline = time.monotonic() + 60
    conn = await asyncpg.connect(stack.database_url)
    try:
        while (
            await conn.fetchval("SELECT count(*) FROM exports.exports")
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.5)
        assert await conn.fetchval("SELECT count(*) FROM exports.exports") == 0
        # Every deletion (the worker's eviction, the api's delete, the janitor's expiry) was
        # finished by its own role: no tombstone is left.
        assert await conn.fetchval("SELECT count(*) FROM exports.deletions") == 0
    finally:
        await conn.close()
    assert list(store(real_servers).list_objects(bucket, prefix="exports/", recursive=True)) == []

    assert "sweep done" in system.log("janitor")
    for service in SERVICES:
        log = system.log(service)
        assert "permission denied" not in log, f"{service}:\n{log[-3000:]}"
        assert "deferred to the sweep" not in log
        assert system.processes[service].poll() is None


async def test_a_schedule_fires_on_the_roles(stack: Stack) -> None:
    """The janitor's role fires a schedule (reads, locks and updates it, records its runs), the
    api's role answers export.submit with scheduleId, the worker's role keeps only `keep`."""
    system = stack.system
    schedules = "/api/v1/user/exports/schedules"
    body = {
        "request": {"format": "json", "libraryIds": [stack.library], "fields": ["title"]},
        "cron": "*/2 * * * * *",
        "keep": 1,
    }
    with system.client(stack.user) as client:
        schedule = client.post(schedules, json=body)
        assert schedule.status_code == 201, schedule.text
        sid = schedule.json()["id"]
        conn = await asyncpg.connect(stack.database_url)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                made = await conn.fetchval(
                    "SELECT count(*) FROM exports.schedule_runs"
                    " WHERE schedule_id = $1 AND export_id IS NOT NULL",
                    uuid.UUID(sid),
                )
                completed = await conn.fetchval(
                    "SELECT count(*) FROM exports.exports"
                    " WHERE schedule_id = $1 AND status = 'completed'",
                    uuid.UUID(sid),
                )
                if made >= 3 and completed == 1:
                    break
                await asyncio.sleep(0.3)
            assert made >= 3 and completed == 1, (made, completed)
        finally:
            await conn.close()
        assert client.delete(f"{schedules}/{sid}").status_code == 204
    for service in SERVICES:
        log = system.log(service)
        assert "permission denied" not in log, f"{service}:\n{log[-3000:]}"


FORBIDDEN = {
    "api": [
        "INSERT INTO libraries (id, name, path, created_at, updated_at)"
        " VALUES (gen_random_uuid(), 'x', '/x', now(), now())",
        "UPDATE users SET role = 'admin'",
        "DELETE FROM exports.user_library_access",
        "UPDATE series SET name = 'x'",
        "DELETE FROM read_progress",
        "SELECT count(*) FROM exports.schema_migrations",
        "CREATE TABLE exports.evil (id int)",
        "CREATE TABLE public.evil (id int)",
        "TRUNCATE exports.exports",
    ],
    "worker": [
        "INSERT INTO series (id, library_id, path, name, normalized_name, created_at, updated_at)"
        " SELECT gen_random_uuid(), id, 'x', 'x', 'x', now(), now() FROM libraries LIMIT 1",
        "UPDATE books SET deleted = true",
        "DELETE FROM series_metadata",
        "UPDATE libraries SET name = 'x'",
        "SELECT count(*) FROM users",
        "INSERT INTO exports.exports (id) VALUES (gen_random_uuid())",
        "SELECT count(*) FROM exports.api_keys",
        "SELECT count(*) FROM exports.idempotency_keys",
        "UPDATE exports.schedules SET keep = 30",
        "SELECT count(*) FROM exports.schedule_runs",
        "CREATE TABLE exports.evil (id int)",
        "TRUNCATE exports.exports",
    ],
    "janitor": [
        "SELECT count(*) FROM libraries",
        "SELECT count(*) FROM users",
        "DELETE FROM series",
        "INSERT INTO exports.exports (id) VALUES (gen_random_uuid())",
        "SELECT count(*) FROM exports.api_keys",
        "DELETE FROM exports.idempotency_keys",
        "CREATE TABLE exports.evil (id int)",
        "UPDATE exports.deletions SET reason = 'x'",
        "DELETE FROM exports.schedules",
        "DELETE FROM exports.schedule_runs",
    ],
}


@pytest.mark.parametrize(
    ("service", "statement"), [(s, q) for s, queries in FORBIDDEN.items() for q in queries]
)
async def test_what_a_service_may_not_do_is_refused(
    stack: Stack, service: str, statement: str
) -> None:
    conn = await asyncpg.connect(stack.urls[service])
    try:
        assert await conn.fetchval("SELECT current_user") == stack.roles[service]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_what_a_service_needs_is_allowed(stack: Stack) -> None:
    """The control for the refusals above: the same connections can do their own work."""
    allowed = {
        "api": ["SELECT count(*) FROM users", "SELECT count(*) FROM exports.api_keys",
                "DELETE FROM exports.idempotency_keys WHERE false",
                # The estimate reads what an export reads.
                "SELECT count(*) FROM series", "SELECT count(*) FROM read_progress"],
        "worker": ["SELECT count(*) FROM read_progress", "UPDATE exports.exports SET rows_written = 0 WHERE false"],
        "janitor": ["DELETE FROM exports.exports WHERE false"],
    }  # fmt: skip
    tombstones = [  # every service deletes rows: each writes and finishes their tombstones
        "INSERT INTO exports.deletions (object_key, export_id, user_id, reason)"
        " SELECT 'k', gen_random_uuid(), gen_random_uuid(), 'expired' WHERE false",
        "DELETE FROM exports.deletions WHERE false RETURNING reason",
        "SELECT count(*) FROM exports.deletions",
    ]
    for service, statements in allowed.items():
        statements = statements + tombstones
        conn = await asyncpg.connect(stack.urls[service])
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()
