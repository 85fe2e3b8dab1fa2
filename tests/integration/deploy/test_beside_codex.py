"""The product beside a real Codex database: Codex's own schema, the production way of starting.

A database gets Codex 2.2.0's catalog schema exactly as ``../shared/codex/schema.sql`` gives it
(not our migration of it) and rows written as Codex writes them. Then, as an operator would:
``codex-exports migrate`` (no ``--catalog``), ``codex-exports grant`` for three LOGIN roles, and
the three services started from environment variables, each on its own role. Every endpoint
and consumer runs. A fingerprint of everything of Codex's (tables, columns, defaults,
constraints, indexes, triggers, grants and every row) is the same before and after ``migrate``,
and before and after the whole run; ``grant`` changes nothing but the grants it gives.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from argon2 import PasswordHasher

from services.cli import servers
from services.cli.synthetic import build_synthetic
from shared.codex_tables import CODEX_TABLES, insert_rows
from tests.conftest import Servers, service_env
from tests.system import System, make_system, wait_for_export

pytestmark = pytest.mark.integration

CODEX = Path(__file__).resolve().parents[4] / "shared" / "codex"
URL = "/api/v1/user/exports/series"
SERVICES = ("api", "worker", "janitor")
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)  # Codex's parameters


def codex_schema() -> str:
    path = CODEX / "schema.sql"
    if not path.is_file():
        pytest.fail(f"Codex's schema is missing: {path} (the shared/ folder beside the repo)")
    return path.read_text(encoding="utf-8")


async def fingerprint(conn: asyncpg.Connection, *, grants: bool = True) -> dict[str, Any]:
    """Everything of Codex's in schema ``public``: shape, grants and a digest of every row."""
    shape = await conn.fetch(
        """
        SELECT 'column' AS kind, c.relname || '.' || a.attname AS name,
               concat_ws(' ', a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                         pg_get_expr(d.adbin, d.adrelid)) AS detail
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0
          AND NOT a.attisdropped
        UNION ALL
        SELECT 'relation', c.relname, c.relkind::text || ' ' || coalesce(c.reloptions::text, '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'constraint', t.relname || '.' || k.conname, pg_get_constraintdef(k.oid)
        FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        -- Foreign-key triggers are named by OID: name them by table, constraint and action.
        SELECT 'trigger',
               c.relname || '.' || coalesce(k.conname, g.tgname) || '.' || g.tgtype::text,
               g.tgfoid::regproc::text
        FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_constraint k ON k.oid = g.tgconstraint
        WHERE n.nspname = 'public'
        UNION ALL
        SELECT 'grant', c.relname, coalesce(c.relacl::text, '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND $1
        UNION ALL
        SELECT 'schema', nspname, coalesce(nspacl::text, '') || ' ' || nspowner::regrole::text
        FROM pg_namespace WHERE nspname = 'public' AND $1
        ORDER BY 1, 2
        """,
        grants,
    )
    rows = {}
    for table in CODEX_TABLES:
        rows[table] = tuple(
            await conn.fetchrow(
                # Digest of every row, in a fixed order, computed by the server (no row is
                # held here); table names are constants.
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                f' FROM "{table}" t'
            )
        )
    return {"shape": [tuple(r) for r in shape], "rows": rows}


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def as_role(url: str, role: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


@dataclass
class Codex:
    """A Codex database with some of Codex's rows, and what the test knows of them."""

    url: str
    library: str
    user: uuid.UUID
    username: str
    password: str
    api_key: str


async def _codex_database(srv: Servers) -> Codex:
    name = "codex_" + uuid.uuid4().hex[:10]
    admin = await asyncpg.connect(srv.postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = srv.database_url(name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(codex_schema())
        catalog = await build_synthetic(conn, series=20, books=120, username="codex-reader")
        password = "pw-" + secrets.token_hex(6)
        key_prefix = "codex_" + secrets.token_hex(8)
        api_key = key_prefix + "_" + secrets.token_hex(16)
        await conn.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1",
            catalog.user_id,
            HASHER.hash(password),
        )
        await insert_rows(
            conn,
            "api_keys",
            [
                {
                    "user_id": catalog.user_id,
                    "name": "script",
                    "key_hash": HASHER.hash(api_key),
                    "key_prefix": key_prefix,
                }
            ],
        )
    finally:
        await conn.close()
    return Codex(url, str(catalog.library_id), catalog.user_id, "codex-reader", password, api_key)


@pytest.fixture(scope="module")
async def codex(real_servers: Servers) -> Codex:
    return await _codex_database(real_servers)


async def _fingerprint(url: str, *, grants: bool = True) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        return await fingerprint(conn, grants=grants)
    finally:
        await conn.close()


async def test_the_standalone_catalog_is_codex_schema_exactly(real_servers: Servers) -> None:
    """``migrate --catalog`` creates Codex's tables as schema.sql does: the same shape."""
    ours = (await _migrated_standalone(real_servers))["shape"]
    codex = (await _fingerprint((await _codex_database(real_servers)).url))["shape"]

    def comparable(shape: list[tuple[str, ...]]) -> set[tuple[str, ...]]:
        # Plain (non-unique) indexes are not part of Codex's reference shape (schema.sql leaves
        # them out); the standalone catalog adds a few of its own for the exports' joins.
        return {
            row
            for row in shape
            if not (row[0] == "index" and "UNIQUE" not in row[2] and "pkey" not in row[1])
            and not row[1].startswith("idx_x_")
        }

    assert comparable(ours) == comparable(codex)
    assert {row[1].split(".")[0] for row in ours if row[0] == "column"} == set(CODEX_TABLES)


async def _migrated_standalone(srv: Servers) -> dict[str, Any]:
    from shared.migrate import create_migrated_database

    url = await create_migrated_database(
        srv.postgres_url, "s_" + uuid.uuid4().hex[:10], catalog=True
    )
    return await _fingerprint(url)


async def test_migrate_against_codex_creates_only_the_exports_schema(
    real_servers: Servers,
) -> None:
    codex = await _codex_database(real_servers)
    before = await _fingerprint(codex.url)
    env = service_env(real_servers, codex.url)
    migrated = cli(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "exports/" in migrated.stdout and "catalog/" not in migrated.stdout
    assert await _fingerprint(codex.url) == before
    again = cli(env, "migrate")
    assert again.returncode == 0, again.stderr
    assert "nothing (up to date)" in again.stdout
    conn = await asyncpg.connect(codex.url)
    try:
        schemas = {
            r["nspname"]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%'"
                " AND nspname <> 'information_schema'"
            )
        }
        ours = {
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'exports' AND c.relkind = 'r'"
            )
        }
    finally:
        await conn.close()
    assert schemas == {"public", "exports"}
    assert {"exports", "idempotency_keys", "api_keys", "user_library_access"} <= ours
    assert await _fingerprint(codex.url) == before
    # The control: one changed timestamp or one new grant does change the fingerprint.
    conn = await asyncpg.connect(codex.url)
    try:
        await conn.execute(
            "UPDATE books SET updated_at = updated_at + interval '1 microsecond'"
            " WHERE id = (SELECT id FROM books ORDER BY id LIMIT 1)"
        )
        changed = await fingerprint(conn)
        await conn.execute("GRANT SELECT ON books TO PUBLIC")
        granted = await fingerprint(conn)
    finally:
        await conn.close()
    assert changed != before
    assert changed["shape"] == before["shape"]
    assert granted["shape"] != changed["shape"]


@dataclass
class Running:
    system: System
    codex: Codex
    roles: dict[str, str]


@pytest.fixture(scope="module")
async def running(
    codex: Codex, real_servers: Servers, servers_dir: Path
) -> AsyncIterator[tuple[Running, dict[str, Any]]]:
    tag = uuid.uuid4().hex[:8]
    roles = {service: f"beside_{service}_{tag}" for service in SERVICES}
    env = service_env(real_servers, codex.url)
    assert cli(env, "migrate").returncode == 0

    conn = await asyncpg.connect(codex.url)
    try:
        for role in roles.values():
            await conn.execute(f'CREATE ROLE "{role}" LOGIN')
    finally:
        await conn.close()
    granted = cli(
        env,
        "grant",
        "--database-url",
        codex.url,
        "--api-role",
        roles["api"],
        "--worker-role",
        roles["worker"],
        "--janitor-role",
        roles["janitor"],
    )
    assert granted.returncode == 0, granted.stderr
    before = await _fingerprint(codex.url)
    bus = servers.start_nats(servers_dir / f"nats-beside-{tag}")
    system = make_system(
        service_env(
            real_servers,
            codex.url,
            EXPORTS_NATS_URL=bus.url,
            EXPORTS_S3_BUCKET=f"beside-{tag}",
            EXPORTS_RETENTION_SECONDS="15",
            EXPORTS_SWEEP_INTERVAL_SECONDS="2",
        ),
        servers_dir / f"logs-beside-{tag}",
    )
    for service in SERVICES:
        system.start_one(service, EXPORTS_DATABASE_URL=as_role(codex.url, roles[service]))
    system.wait_ready()
    try:
        yield Running(system, codex, roles), before
    finally:
        system.stop()
        bus.stop()


def _exercise_http(run: Running) -> None:
    codex, system = run.codex, run.system
    library = codex.library
    with httpx.Client(base_url=system.api_url, timeout=30) as anonymous:
        login = anonymous.post(
            "/api/v1/auth/login", json={"username": codex.username, "password": codex.password}
        )
        assert login.status_code == 200, login.text
        assert anonymous.get(URL).status_code == 401
    token = login.json()["token"]
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": codex.api_key}):
        with httpx.Client(base_url=system.api_url, headers=headers, timeout=30) as client:
            assert client.get("/api/v1/libraries").status_code == 200
            assert client.get(URL + "/fields").status_code == 200
            made = []
            for body in (
                {"format": "json", "exportType": "both", "libraryIds": [library], "preset": "all"},
                {"format": "csv", "exportType": "books", "libraryIds": [library], "bookFields": ["title"]},
                {"format": "md", "libraryIds": [library], "fields": ["title", "progress", "user_rating"]},
            ):  # fmt: skip
                created = client.post(URL, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
                assert created.status_code == 202, created.text
                made.append(created.json()["id"])
            for export_id in made:
                done = wait_for_export(client, export_id)
                assert done["status"] == "completed", done
                assert client.get(f"{URL}/{export_id}").status_code == 200
                full = client.get(f"{URL}/{export_id}/download")
                assert full.status_code == 200
                part = client.get(f"{URL}/{export_id}/download", headers={"Range": "bytes=0-9"})
                assert part.status_code == 206
                with client.stream("GET", f"{URL}/{export_id}/events") as events:
                    assert events.status_code == 200
            assert client.get(URL).status_code == 200
            cancelled = client.post(
                URL, json={"format": "json", "libraryIds": [library], "fields": ["title"]}
            )
            assert cancelled.status_code == 202
            client.post(f"{URL}/{cancelled.json()['id']}/cancel")
            assert client.delete(f"{URL}/{made[0]}").status_code == 204
            # Schedules (SPEC §12): create, run now (the worker reads the keep), list, delete.
            schedules = "/api/v1/user/exports/schedules"
            schedule = client.post(
                schedules,
                json={
                    "request": {"format": "json", "libraryIds": [library], "fields": ["title"]},
                    "cron": "0 3 * * *",
                    "keep": 1,
                },
            )
            assert schedule.status_code == 201, schedule.text
            sid = schedule.json()["id"]
            for _ in range(2):
                ran = client.post(f"{schedules}/{sid}/run")
                assert ran.status_code == 202, ran.text
                assert wait_for_export(client, ran.json()["id"])["status"] == "completed"
            assert client.get(schedules).status_code == 200
            assert client.delete(f"{schedules}/{sid}").status_code == 204
    with system.client(codex.user) as client:
        key = client.post("/api/v1/user/api-keys", json={"name": "own"})
        assert key.status_code == 201, key.text
        assert client.get("/api/v1/user/api-keys").status_code == 200
        assert client.delete(f"/api/v1/user/api-keys/{key.json()['id']}").status_code == 204


async def _exercise_bus(run: Running) -> None:
    bus = await nats.connect(run.system.env["EXPORTS_NATS_URL"])
    try:
        body = {
            "userId": str(run.codex.user),
            "request": {"format": "json", "libraryIds": [run.codex.library], "fields": ["title"]},
        }
        reply = json.loads((await bus.request("export.submit", json.dumps(body).encode(), 10)).data)
        assert reply["status"] == "pending", reply
        await bus.publish("export.requested", b"not json at all")  # rejected, logged, no crash
    finally:
        await bus.close()


async def test_every_endpoint_and_consumer_leaves_codex_as_it_was(
    running: tuple[Running, dict[str, Any]],
) -> None:
    run, before = running
    conn = await asyncpg.connect(run.codex.url)
    try:
        connected = {
            r["usename"]
            for r in await conn.fetch(
                "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database()"
            )
        }
    finally:
        await conn.close()
    assert set(run.roles.values()) <= connected
    await asyncio.to_thread(_exercise_http, run)
    await _exercise_bus(run)
    # The janitor expires everything (retention 15 s, sweep every 2 s): its consumers ran too.
    deadline = time.monotonic() + 90
    conn = await asyncpg.connect(run.codex.url)
    try:
        while await conn.fetchval("SELECT count(*) FROM exports.exports"):
            assert time.monotonic() < deadline, "the janitor did not expire every export"
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    assert "sweep done" in run.system.log("janitor")
    for service in SERVICES:
        log = run.system.log(service)
        assert "permission denied" not in log, f"{service}:\n{log[-3000:]}"
        assert run.system.processes[service].poll() is None, service
    assert await _fingerprint(run.codex.url) == before


async def test_grant_gives_only_select_on_codex_tables(
    running: tuple[Running, dict[str, Any]],
) -> None:
    run, _ = running
    conn = await asyncpg.connect(run.codex.url)
    try:
        rows = await conn.fetch(
            "SELECT grantee, table_name, privilege_type FROM information_schema.table_privileges"
            " WHERE table_schema = 'public' AND grantee = ANY($1::text[])",
            list(run.roles.values()),
        )
    finally:
        await conn.close()
    assert rows, "grant gave the services nothing to read"
    assert {r["privilege_type"] for r in rows} == {"SELECT"}
    by_role = {
        role: {r["table_name"] for r in rows if r["grantee"] == role} for role in run.roles.values()
    }
    assert "users" not in by_role[run.roles["worker"]]
    assert by_role[run.roles["janitor"]] == set()
