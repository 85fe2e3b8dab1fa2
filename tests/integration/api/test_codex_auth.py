"""Codex's auth, exactly (SPEC §3, ../shared/codex/AUTH.md): its API keys, its inactive users,
its OIDC users. The test plays Codex: it writes Codex's ``users`` and ``api_keys`` rows itself."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import nats
import pytest
from argon2 import PasswordHasher

from shared.codex_tables import insert_rows
from tests.conftest import Servers, first_library, new_user
from tests.system import System

pytestmark = pytest.mark.integration

URL = "/api/v1/user/exports/series"
# Codex's argon2 crate defaults (AUTH.md): argon2id, m=19456 KiB, t=2, p=1.
CODEX_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def codex_key() -> tuple[str, str]:
    """A key as Codex makes it: ``codex_<16 hex>_<32 hex>``, and its stored prefix."""
    prefix = "codex_" + secrets.token_hex(8)
    return prefix + "_" + secrets.token_hex(16), prefix


async def add_codex_key(
    database_url: str,
    user_id: uuid.UUID,
    *,
    active: bool = True,
    expires_at: datetime | None = None,
) -> tuple[str, uuid.UUID]:
    """Store a key in Codex's ``api_keys`` the way Codex does; return the key and its row id."""
    key, prefix = codex_key()
    key_id = uuid.uuid4()
    conn = await asyncpg.connect(database_url)
    try:
        await insert_rows(
            conn,
            "api_keys",
            [
                {
                    "id": key_id,
                    "user_id": user_id,
                    "name": "codex script",
                    "key_hash": CODEX_HASHER.hash(key),
                    "key_prefix": prefix,
                    "is_active": active,
                    "expires_at": expires_at,
                }
            ],
        )
    finally:
        await conn.close()
    return key, key_id


async def execute(database_url: str, sql: str, *args: object) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


def with_key(system: System, key: str) -> httpx.Client:
    return httpx.Client(base_url=system.api_url, headers={"X-API-Key": key}, timeout=30)


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    message: str = response.json()["message"]
    return message


async def test_a_codex_api_key_works_on_every_export_endpoint(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    key, _ = await add_codex_key(demo_database, user)
    library = await first_library(demo_database)
    with with_key(demo_system, key) as client:
        assert client.get(URL + "/fields").status_code == 200
        created = client.post(
            URL, json={"format": "json", "libraryIds": [library], "fields": ["title"]}
        )
        assert created.status_code == 202, created.text
        export_id = created.json()["id"]
        assert [e["id"] for e in client.get(URL).json()["exports"]] == [export_id]
        deadline = time.monotonic() + 60
        while client.get(f"{URL}/{export_id}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the export did not complete"
            await asyncio.sleep(0.2)
        download = client.get(f"{URL}/{export_id}/download")
        assert download.status_code == 200
        assert json.loads(download.content)
        with client.stream("GET", f"{URL}/{export_id}/events") as events:
            assert events.status_code == 200
            assert events.headers["content-type"].startswith("text/event-stream")
        assert client.post(f"{URL}/{export_id}/cancel").status_code == 409  # already ended
        assert client.delete(f"{URL}/{export_id}").status_code == 204
        assert client.get(f"{URL}/{export_id}").status_code == 404


async def test_codex_key_refusals_use_codex_messages(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    key, _ = await add_codex_key(demo_database, user)
    inactive, _ = await add_codex_key(demo_database, user, active=False)
    expired, _ = await add_codex_key(
        demo_database, user, expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    later, _ = await add_codex_key(
        demo_database, user, expires_at=datetime.now(UTC) + timedelta(days=1)
    )
    wrong_secret = key[: -len("0" * 32)] + ("0" * 32 if not key.endswith("0" * 32) else "1" * 32)
    with httpx.Client(base_url=demo_system.api_url, timeout=30) as client:

        def get(value: str) -> httpx.Response:
            return client.get(URL, headers={"X-API-Key": value})

        assert get(key).status_code == 200
        assert get(later).status_code == 200
        assert refusal(get(inactive)) == "Invalid API key"
        assert refusal(get(expired)) == "API key has expired"
        assert refusal(get(wrong_secret)) == "Invalid API key"
        assert refusal(get("codex_nothex_" + "0" * 32)) == "Invalid API key"
        assert refusal(get(codex_key()[0])) == "Invalid API key"  # well formed, never stored


async def test_a_deactivated_key_or_user_stops_working_at_once_despite_the_cache(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    key, key_id = await add_codex_key(demo_database, user)
    with with_key(demo_system, key) as client:
        assert client.get(URL).status_code == 200
        assert client.get(URL).status_code == 200  # verified once, then remembered
        await execute(demo_database, "UPDATE api_keys SET is_active = false WHERE id = $1", key_id)
        assert refusal(client.get(URL)) == "Invalid API key"
        await execute(demo_database, "UPDATE api_keys SET is_active = true WHERE id = $1", key_id)
        assert client.get(URL).status_code == 200
        await execute(
            demo_database,
            "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1",
            key_id,
        )
        assert refusal(client.get(URL)) == "API key has expired"
        await execute(demo_database, "UPDATE api_keys SET expires_at = NULL WHERE id = $1", key_id)
        await execute(demo_database, "UPDATE users SET is_active = false WHERE id = $1", user)
        assert refusal(client.get(URL)) == "User account is inactive"


async def test_an_inactive_user_is_refused_whatever_the_credential(
    demo_system: System, demo_database: str, real_servers: Servers
) -> None:
    password = "inactive-" + secrets.token_hex(4)
    username = "inactive-" + uuid.uuid4().hex[:8]
    user = await new_user(demo_database, username=username)
    await execute(
        demo_database,
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        user,
        CODEX_HASHER.hash(password),
    )
    codex, _ = await add_codex_key(demo_database, user)
    with demo_system.client(user) as client:
        own = client.post("/api/v1/user/api-keys", json={"name": "own"})
        assert own.status_code == 201, own.text
        own_key = own.json()["key"]
    library = await first_library(demo_database)
    await execute(demo_database, "UPDATE users SET is_active = false WHERE id = $1", user)

    with demo_system.client(user) as client:  # a valid JWT
        assert refusal(client.get(URL)) == "User account is inactive"
    for key in (codex, own_key):
        with with_key(demo_system, key) as client:
            assert refusal(client.get(URL)) == "User account is inactive"
    with httpx.Client(base_url=demo_system.api_url, timeout=30) as client:
        login = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert refusal(login) == "User account is inactive"
    bus = await nats.connect(demo_system.env["EXPORTS_NATS_URL"])
    try:
        body = {"userId": str(user), "request": {"format": "json", "libraryIds": [library]}}
        reply = await bus.request("export.submit", json.dumps(body).encode(), timeout=10)
    finally:
        await bus.close()
    assert json.loads(reply.data) == {
        "error": "Unauthorized",
        "message": "User account is inactive",
    }


async def test_an_oidc_user_never_signs_in_with_a_password(
    demo_system: System, demo_database: str
) -> None:
    username = "oidc-" + uuid.uuid4().hex[:8]
    user = await new_user(demo_database, username=username)
    placeholder = f"oidc:{uuid.uuid4()}"
    await execute(
        demo_database, "UPDATE users SET password_hash = $2 WHERE id = $1", user, placeholder
    )
    async with httpx.AsyncClient(base_url=demo_system.api_url, timeout=30) as client:
        for password in (placeholder, "", "oidc:", placeholder.removeprefix("oidc:")):
            login = await client.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
            assert login.status_code in (400, 401), login.text
            assert "token" not in login.json()
    with demo_system.client(user) as client:  # Codex's own JWT for the same user still works
        assert client.get(URL).status_code == 200
