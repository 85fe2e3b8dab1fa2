"""Text PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone surrogates), sent raw.

JSON allows both (``"\\u0000"``, ``"\\ud800"``); each must get a 4xx with the usual error body,
never a 5xx, a reset connection or an unanswered request.
"""

from __future__ import annotations

import json
import uuid

import httpx
import nats
import pytest

from tests.conftest import Servers, first_library, new_user
from tests.system import System

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"


@pytest.fixture(scope="module")
async def caller(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
async def library(demo_database: str) -> str:
    return await first_library(demo_database)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/auth/login", '{"username": "\\ud800", "password": "x"}', 401),
        ("/api/v1/auth/login", '{"username": "a\\u0000b", "password": "x"}', 401),
        ("/api/v1/auth/login", '{"username": "demo", "password": "\\ud800\\u0000"}', 401),
        (
            "/api/v1/auth/login",
            json.dumps({"username": "u" * 100_000, "password": "p" * 100_000}),
            401,
        ),
        ("/api/v1/user/api-keys", '{"name": "\\ud800"}', 400),
        ("/api/v1/user/api-keys", '{"name": "a\\u0000"}', 400),
        (URL, '{"format": "\\ud800"}', 400),
        (URL, '{"format": "json", "libraryIds": ["LIB"], "fields": ["title\\u0000"]}', 400),
        pytest.param(
            URL,
            '{"format": "json", "libraryIds": ["LIB"], "fields": ["\\ud800"]}',
            400,
        ),
        pytest.param(
            URL,
            '{"format": "json", "libraryIds": ["\\ud800"]}',
            400,
        ),
        pytest.param(
            URL,
            '{"format": "json", "libraryIds": ["LIB"], "preset": []}',
            400,
        ),
        pytest.param(
            URL,
            '{"format": "json", "libraryIds": ["LIB"], "preset": {}}',
            400,
        ),
    ],
)
def test_unstorable_text_gets_a_4xx(
    demo_system: System, caller: uuid.UUID, library: str, path: str, body: str, status: int
) -> None:
    response = httpx.post(
        demo_system.api_url + path,
        content=body.replace("LIB", library).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {demo_system.token(caller)}",
        },
        timeout=30,
    )
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "message"}


@pytest.mark.parametrize(
    "key",
    ["a\x00b", "\ud800", "k" * 201, ""],
    ids=["nul", "surrogate", "too-long", "empty"],
)
async def test_bus_submit_answers_every_idempotency_key(
    demo_system: System, real_servers: Servers, caller: uuid.UUID, library: str, key: str
) -> None:
    body = {
        "userId": str(caller),
        "request": {"format": "json", "libraryIds": [library], "fields": ["title"]},
        "idempotencyKey": key,
    }
    nc = await nats.connect(real_servers.nats_url)
    try:
        reply = await nc.request("export.submit", json.dumps(body).encode(), timeout=5)
    finally:
        await nc.close()
    answer = json.loads(reply.data)
    assert answer["error"] == "ValidationError", answer
