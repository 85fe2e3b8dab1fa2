"""API keys: shown once, stored hashed, accepted everywhere, revoked at once, owner-scoped."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import first_library, new_user
from tests.integration.security.conftest import KEYS_URL, URL, create_key, key_client
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration

BAD_CREDENTIALS = {"error": "Unauthorized", "message": "Invalid or expired credentials"}
KEY_NOT_FOUND = {"error": "NotFound", "message": "API key not found"}


async def _key_rows(database_url: str, user: uuid.UUID) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetch("SELECT * FROM exports.api_keys WHERE user_id = $1", user)
    finally:
        await conn.close()


async def test_create_shows_the_key_once_and_stores_only_its_digest(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    with demo_system.client(user) as client:
        response = client.post(KEYS_URL, json={"name": "  nightly backup  "})
        assert response.status_code == 201, response.text
        assert response.headers["cache-control"] == "no-store"
        created = response.json()
        assert set(created) == {"id", "name", "prefix", "createdAt", "key"}
        assert created["name"] == "nightly backup"
        key = created["key"]
        assert key.startswith("cxk_") and len(key) == 47
        assert created["prefix"] == key[:12]

        listed = client.get(KEYS_URL)
        assert listed.status_code == 200
        [item] = listed.json()["apiKeys"]
        assert item == {
            "id": created["id"],
            "name": "nightly backup",
            "prefix": created["prefix"],
            "createdAt": created["createdAt"],
            "lastUsedAt": None,
        }
        assert key not in listed.text and key[12:] not in listed.text

    [row] = await _key_rows(demo_database, user)
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
    stored = " ".join(str(v) for v in dict(row).values())
    assert key[12:] not in stored


async def test_a_key_works_on_every_authenticated_endpoint(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    library = await first_library(demo_database)
    key = create_key(demo_system, user)["key"]
    with key_client(demo_system, key) as client:
        assert client.get("/api/v1/auth/me").json()["id"] == str(user)
        assert client.get("/api/v1/libraries").status_code == 200
        assert client.get(f"{URL}/fields").status_code == 200
        assert client.get("/api/v1/user/exports/usage").status_code == 200
        assert client.get(KEYS_URL).status_code == 200
        created = client.post(
            URL, json={"format": "csv", "libraryIds": [library], "fields": ["title"]}
        )
        assert created.status_code == 202, created.text
        export_id = created.json()["id"]
        assert wait_for_export(client, export_id)["status"] == "completed"
        assert [e["id"] for e in client.get(URL).json()["exports"]] == [export_id]
        download = client.get(f"{URL}/{export_id}/download")
        assert download.status_code == 200 and download.content.startswith(b"series_name,title")
        events = client.get(f"{URL}/{export_id}/events")
        assert events.status_code == 200 and "event: status" in events.text
        assert client.post(f"{URL}/{export_id}/cancel").status_code == 409
        assert client.delete(f"{URL}/{export_id}").status_code == 204
        assert client.get(f"{URL}/{export_id}").status_code == 404


async def test_a_key_cannot_create_keys(demo_system: System, demo_database: str) -> None:
    user = await new_user(demo_database)
    key = create_key(demo_system, user)["key"]
    with key_client(demo_system, key) as client:
        response = client.post(KEYS_URL, json={"name": "child"})
    assert response.status_code == 403
    assert response.json() == {
        "error": "Forbidden",
        "message": "API keys can only be created from a signed-in session",
    }
    assert len(await _key_rows(demo_database, user)) == 1


async def test_a_revoked_key_is_refused_at_once(demo_system: System, demo_database: str) -> None:
    user = await new_user(demo_database)
    created = create_key(demo_system, user)
    with key_client(demo_system, created["key"]) as by_key, demo_system.client(user) as session:
        assert by_key.get(URL).status_code == 200
        assert session.delete(f"{KEYS_URL}/{created['id']}").status_code == 204
        refused = by_key.get(URL)
        assert refused.status_code == 401
        assert refused.json() == BAD_CREDENTIALS
        assert refused.headers["www-authenticate"] == "Bearer"
        again = session.delete(f"{KEYS_URL}/{created['id']}")
        assert (again.status_code, again.json()) == (404, KEY_NOT_FOUND)
        assert session.get(KEYS_URL).json() == {"apiKeys": []}


async def test_a_key_can_revoke_itself(demo_system: System, demo_database: str) -> None:
    """A script may retire its own key (revoking only ever removes access)."""
    user = await new_user(demo_database)
    created = create_key(demo_system, user)
    with key_client(demo_system, created["key"]) as client:
        assert client.delete(f"{KEYS_URL}/{created['id']}").status_code == 204
        assert client.get(KEYS_URL).status_code == 401


async def test_another_users_key_looks_missing_and_survives(
    demo_system: System, demo_database: str
) -> None:
    alice, mallory = await new_user(demo_database), await new_user(demo_database)
    alices = create_key(demo_system, alice)
    with demo_system.client(mallory) as client:
        theirs = client.delete(f"{KEYS_URL}/{alices['id']}")
        missing = client.delete(f"{KEYS_URL}/{uuid.uuid4()}")
        assert (
            (theirs.status_code, theirs.json())
            == (missing.status_code, missing.json())
            == (404, KEY_NOT_FOUND)
        )
        assert client.get(KEYS_URL).json() == {"apiKeys": []}
    with key_client(demo_system, alices["key"]) as client:
        assert client.get("/api/v1/auth/me").json()["id"] == str(alice)


async def test_last_used_is_recorded_at_most_once_a_minute(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    key = create_key(demo_system, user)["key"]
    with key_client(demo_system, key) as client:
        client.get(URL)
        [first] = await _key_rows(demo_database, user)
        assert first["last_used_at"] is not None
        for _ in range(5):
            client.get(URL)
        [later] = await _key_rows(demo_database, user)
        assert later["last_used_at"] == first["last_used_at"]
    with demo_system.client(user) as client:
        [item] = client.get(KEYS_URL).json()["apiKeys"]
    assert item["lastUsedAt"] is not None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "A key name is required"),
        ({"name": None}, "A key name is required"),
        ({"name": "   "}, "A key name is required"),
        ({"name": "x" * 101}, "The key name must be at most 100 characters"),
        ({"name": "line\nbreak"}, "The key name must be printable text (no control characters)"),
        ({"name": "bell\x07"}, "The key name must be printable text (no control characters)"),
    ],
)
async def test_key_names_are_checked(
    demo_system: System, demo_database: str, body: dict[str, Any], message: str
) -> None:
    user = await new_user(demo_database)
    with demo_system.client(user) as client:
        response = client.post(KEYS_URL, json=body)
    assert (response.status_code, response.json()) == (
        400,
        {"error": "ValidationError", "message": message},
    )


async def test_wrong_types_and_bodies_are_clear_400s(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    with demo_system.client(user) as client:
        for response in (
            client.post(KEYS_URL, json={"name": 5}),
            client.post(
                KEYS_URL, content=b"{not json", headers={"Content-Type": "application/json"}
            ),
            client.delete(f"{KEYS_URL}/not-a-uuid"),
        ):
            assert response.status_code == 400, response.text
            assert set(response.json()) == {"error", "message"}
            assert response.json()["message"].startswith("The request is malformed")


async def test_at_most_25_keys_even_when_created_at_once(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    statuses: list[int] = []
    token = demo_system.token(user)

    def make() -> None:
        with httpx.Client(
            base_url=demo_system.api_url, headers={"Authorization": f"Bearer {token}"}
        ) as c:
            for _ in range(6):
                statuses.append(c.post(KEYS_URL, json={"name": "k"}).status_code)

    threads = [threading.Thread(target=make) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(201) == 25 and statuses.count(409) == 5
    with demo_system.client(user) as client:
        refused = client.post(KEYS_URL, json={"name": "one more"})
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "TooManyApiKeys",
        "message": "You already have 25 API keys (limit: 25); revoke one first",
    }
    assert len(await _key_rows(demo_database, user)) == 25


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": "cxk_" + "A" * 43},  # well-formed, never issued
        {"X-API-Key": "not-a-key"},
        {"X-API-Key": "cxk_" + "A" * 5000},
        {"X-API-Key": "cxk_'; DROP TABLE exports.api_keys; --"},
    ],
    ids=["unknown", "no-prefix", "huge", "sql"],
)
def test_bad_keys_get_the_same_401(demo_system: System, headers: dict[str, str]) -> None:
    started = time.monotonic()
    response = httpx.get(demo_system.api_url + URL, headers=headers, timeout=30)
    assert (response.status_code, response.json()) == (401, BAD_CREDENTIALS)
    assert time.monotonic() - started < 5


async def test_a_bad_bearer_token_wins_over_a_good_key(
    demo_system: System, demo_database: str
) -> None:
    user = await new_user(demo_database)
    key = create_key(demo_system, user)["key"]
    response = await asyncio.to_thread(
        httpx.get,
        demo_system.api_url + URL,
        headers={"X-API-Key": key, "Authorization": "Bearer not.a.token"},
        timeout=30,
    )
    assert (response.status_code, response.json()) == (401, BAD_CREDENTIALS)
