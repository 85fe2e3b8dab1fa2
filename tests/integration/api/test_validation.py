"""Every validation message of SPEC §6, exactly, in its order."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from shared.formats import FORMAT_MESSAGE
from tests.conftest import library_ids_by_name, new_user
from tests.system import System

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"


@pytest.fixture(scope="module")
async def caller(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
async def library_ids(demo_database: str) -> list[str]:
    return await library_ids_by_name(demo_database)


def _post(system: System, user: uuid.UUID, body: Any) -> tuple[int, dict[str, Any]]:
    with system.client(user) as client:
        response = client.post(URL, json=body)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"format": "xml"}, FORMAT_MESSAGE),
        ({"format": None}, FORMAT_MESSAGE),
        ({"exportType": "authors"}, "Export type must be 'series', 'books', or 'both'"),
        (
            {"format": "csv", "exportType": "both"},
            "CSV format is not supported for 'both' export type. Use JSON or Markdown.",
        ),
        ({"libraryIds": []}, "At least one library must be selected"),
        ({"libraryIds": None}, "At least one library must be selected"),
        ({"libraryIds": ["not-a-uuid"]}, "Unknown library: not-a-uuid"),
        (
            {"libraryIds": ["00000000-0000-0000-0000-000000000001"]},
            "Unknown library: 00000000-0000-0000-0000-000000000001",
        ),
        ({"fields": []}, "At least one series field must be selected"),
        ({"fields": ["title", "colour"]}, "Unknown series field: colour"),
        ({"exportType": "books", "bookFields": []}, "At least one book field must be selected"),
        ({"exportType": "books", "bookFields": ["isbn"]}, "Unknown book field: isbn"),
        ({"exportType": "both", "bookFields": None}, "At least one book field must be selected"),
        # First failure wins: format before type before libraries before fields.
        (
            {"format": "pdf", "exportType": "x", "libraryIds": []},
            FORMAT_MESSAGE,
        ),
        ({"exportType": "x", "libraryIds": []}, "Export type must be 'series', 'books', or 'both'"),
        (
            {"format": "parquet", "exportType": "both"},
            "Parquet format is not supported for 'both' export type. "
            "Use JSON, JSON Lines, Markdown or Excel.",
        ),
        ({"compression": "zip"}, "Compression must be 'none' or 'gzip'"),
        ({"compression": "zip", "libraryIds": []}, "Compression must be 'none' or 'gzip'"),
        (
            {"format": "csv", "exportType": "both", "compression": "zip"},
            "CSV format is not supported for 'both' export type. Use JSON or Markdown.",
        ),
        ({"libraryIds": [], "fields": ["nope"]}, "At least one library must be selected"),
    ],
)
def test_validation_messages(
    demo_system: System,
    caller: uuid.UUID,
    library_ids: list[str],
    patch: dict[str, Any],
    message: str,
) -> None:
    body: dict[str, Any] = {"format": "json", "libraryIds": library_ids[:1], "fields": ["title"]}
    body.update(patch)
    status, payload = _post(demo_system, caller, body)
    assert status == 400
    assert payload == {"error": "ValidationError", "message": message}


def test_a_library_the_caller_may_not_read_looks_unknown(
    demo_system: System, demo_database: str, library_ids: list[str]
) -> None:
    import asyncio

    async def restricted() -> uuid.UUID:
        user = await new_user(demo_database)
        conn = await asyncpg.connect(demo_database)
        try:
            await conn.execute(
                "INSERT INTO exports.user_library_access (user_id, library_id) VALUES ($1, $2)",
                user,
                uuid.UUID(library_ids[0]),
            )
        finally:
            await conn.close()
        return user

    user = asyncio.run(restricted())
    status, payload = _post(
        demo_system, user, {"format": "json", "libraryIds": [library_ids[1]], "fields": ["title"]}
    )
    assert (status, payload["message"]) == (400, f"Unknown library: {library_ids[1]}")
    with demo_system.client(user) as client:
        libs = client.get("/api/v1/libraries").json()["libraries"]
    assert [lib["id"] for lib in libs] == [library_ids[0]]


def test_malformed_json_body_is_a_clear_400(demo_system: System, caller: uuid.UUID) -> None:
    with demo_system.client(caller) as client:
        response = client.post(
            URL, content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "ValidationError"
    assert body["message"].startswith("The request is malformed")


def test_presets_fill_the_field_lists(
    demo_system: System, caller: uuid.UUID, library_ids: list[str]
) -> None:
    status, payload = _post(
        demo_system,
        caller,
        {"format": "json", "exportType": "both", "libraryIds": library_ids[:1], "preset": "llm"},
    )
    assert status == 202, payload
    assert "series_id" not in payload["fields"] and "path" not in payload["fields"]
    assert payload["fields"][:2] == ["created_at", "title"]  # catalog order
    assert "series_name" in payload["bookFields"]
    status, payload = _post(
        demo_system, caller, {"format": "json", "libraryIds": library_ids[:1], "preset": "gpt"}
    )
    assert (status, payload["message"]) == (400, "Preset must be 'llm' or 'all'")
