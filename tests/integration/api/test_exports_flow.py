"""Exports end to end through the real api, worker, JetStream, PostgreSQL and S3."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from minio import Minio

from tests.conftest import Servers, new_user
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"


def _store(srv: Servers) -> Minio:
    return srv.s3_client()


def run_export(client: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    response = client.post(URL, json=body)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] == "pending"
    done = wait_for_export(client, created["id"])
    assert done["status"] == "completed", done
    download = client.get(f"{URL}/{created['id']}/download")
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == done["sha256"]
    assert len(download.content) == done["fileSizeBytes"]
    return done, download.content


def test_example_1_llm_reading_list(
    demo_system: System, owner: uuid.UUID, libraries: list[dict[str, str]]
) -> None:
    """'Send my reading list to ChatGPT': series, JSON, all libraries, LLM preset."""
    with demo_system.client(owner) as client:
        done, content = run_export(
            client,
            {"format": "json", "libraryIds": [lib["id"] for lib in libraries], "preset": "llm"},
        )
    rows = json.loads(content)
    assert isinstance(rows, list) and len(rows) == done["rowCount"] >= 300
    keys = set().union(*(row.keys() for row in rows))
    assert {"series_name", "title", "year", "status", "summary"} <= keys
    assert keys & {"series_id", "library_id", "path", "library_name"} == set()
    assert any("community_avg_rating" in r or "external_ratings" in r for r in rows)
    assert all(None not in r.values() for r in rows)
    assert re.fullmatch(r"codex-series-[a-z0-9-]+-\d{8}T\d{6}Z\.json", done["fileName"])


def test_example_2_backup_is_complete_and_deterministic(
    demo_system: System, owner: uuid.UUID, libraries: list[dict[str, str]]
) -> None:
    """'Backup my catalog': both, JSON, all libraries, select all — identical bytes twice."""
    body = {
        "format": "json",
        "exportType": "both",
        "libraryIds": [lib["id"] for lib in libraries],
        "preset": "all",
    }
    with demo_system.client(owner) as client:
        first, content = run_export(client, body)
        second, again = run_export(client, body)
    assert content == again
    assert first["sha256"] == second["sha256"]
    doc = json.loads(content)
    assert set(doc) == {"series", "books"}
    assert len(doc["books"]) >= 3000 and len(doc["series"]) >= 300
    assert first["rowCount"] == len(doc["series"]) + len(doc["books"])
    book_keys = set().union(*(b.keys() for b in doc["books"]))
    assert {"book_id", "file_size", "file_path", "number", "series_name"} <= book_keys
    series_ids = [s["series_id"] for s in doc["series"]]
    assert len(series_ids) == len(set(series_ids))


def test_example_3_markdown_one_library_metadata_and_counts(
    demo_system: System, owner: uuid.UUID, libraries: list[dict[str, str]]
) -> None:
    """'Share what I'm reading': series, Markdown, one library, Metadata + Counts & Progress."""
    with demo_system.client(owner) as client:
        catalog = client.get(f"{URL}/fields").json()
        fields = [
            f["key"] for f in catalog["fields"] if f["group"] in ("Metadata", "Counts & Progress")
        ]
        done, content = run_export(
            client, {"format": "md", "libraryIds": [libraries[0]["id"]], "fields": fields}
        )
    text = content.decode("utf-8")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(sections) == done["rowCount"] > 0
    assert "- **Title:** " in text and "- **Actual Book Count:** " in text
    assert not any(line.startswith("# ") for line in text.splitlines())
    assert done["fileName"].endswith(".md")
    assert done["libraryNames"] == [libraries[0]["name"]]


def test_example_4_csv_of_book_file_sizes(
    demo_system: System, owner: uuid.UUID, libraries: list[dict[str, str]]
) -> None:
    """'Spreadsheet of book file sizes': books, CSV, Identity + File Info."""
    with demo_system.client(owner) as client:
        catalog = client.get(f"{URL}/fields").json()
        fields = [
            f["key"]
            for f in catalog["bookFields"]
            if f["group"] in ("Identity", "File Info") and not f["isAnchor"]
        ]
        done, content = run_export(
            client,
            {
                "format": "csv",
                "exportType": "books",
                "libraryIds": [lib["id"] for lib in libraries],
                "bookFields": fields,
            },
        )
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))
    assert len(rows) == done["rowCount"] >= 3000
    assert list(rows[0].keys()) == ["book_name", *fields]
    sizes = sorted((int(r["file_size"]) for r in rows), reverse=True)
    assert sizes[0] > sizes[-1] > 0
    assert b"\r\n" in content


@pytest.mark.parametrize(
    ("fmt", "export_type"),
    [
        ("json", "series"),
        ("json", "books"),
        ("json", "both"),
        ("csv", "series"),
        ("csv", "books"),
        ("md", "series"),
        ("md", "books"),
        ("md", "both"),
    ],
)
def test_every_format_and_type(
    demo_system: System,
    owner: uuid.UUID,
    libraries: list[dict[str, str]],
    fmt: str,
    export_type: str,
) -> None:
    body = {
        "format": fmt,
        "exportType": export_type,
        "libraryIds": [libraries[1]["id"]],
        "preset": "all",
    }
    with demo_system.client(owner) as client:
        done, content = run_export(client, body)
    assert done["fileName"].startswith(f"codex-{export_type}-") and done["fileName"].endswith(
        f".{fmt}"
    )
    text = content.decode("utf-8")
    if fmt == "json":
        doc = json.loads(text)
        count = len(doc) if export_type != "both" else len(doc["series"]) + len(doc["books"])
    elif fmt == "csv":
        count = len(list(csv.reader(io.StringIO(text, newline="")))) - 1
    else:
        count = sum(1 for line in text.splitlines() if line.startswith("## "))
        assert ("# Series" in text.splitlines()) == (export_type == "both")
    assert count == done["rowCount"] > 0
    assert done["rowsWritten"] == done["rowsTotal"] == done["rowCount"]


def test_download_headers_range_and_etag(
    demo_system: System, owner: uuid.UUID, libraries: list[dict[str, str]]
) -> None:
    with demo_system.client(owner) as client:
        done, content = run_export(
            client, {"format": "csv", "libraryIds": [libraries[0]["id"]], "preset": "all"}
        )
        path = f"{URL}/{done['id']}/download"
        full = client.get(path)
        headers = full.headers
        assert headers["content-type"] == "text/csv; charset=utf-8"
        assert int(headers["content-length"]) == len(content)
        assert headers["etag"] == f'"{done["sha256"]}"'
        assert headers["accept-ranges"] == "bytes"
        disposition = headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert (
            f'filename="{done["fileName"]}"' in disposition and "filename*=UTF-8''" in disposition
        )
        import base64

        assert (
            headers["repr-digest"]
            == "sha-256=:" + base64.b64encode(bytes.fromhex(done["sha256"])).decode() + ":"
        )

        part = client.get(path, headers={"Range": "bytes=10-99"})
        assert part.status_code == 206
        assert part.content == content[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{len(content)}"
        tail = client.get(path, headers={"Range": "bytes=-25"})
        assert (tail.status_code, tail.content) == (206, content[-25:])
        resume = client.get(
            path, headers={"Range": f"bytes={len(content) - 5}-", "If-Range": headers["etag"]}
        )
        assert (resume.status_code, resume.content) == (206, content[-5:])
        stale = client.get(path, headers={"Range": "bytes=0-4", "If-Range": '"other"'})
        assert (stale.status_code, stale.content) == (200, content)
        beyond = client.get(path, headers={"Range": f"bytes={len(content) + 10}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{len(content)}"
        cached = client.get(path, headers={"If-None-Match": headers["etag"]})
        assert cached.status_code == 304


def test_not_ready_and_gone(
    demo_system: System,
    real_servers: Servers,
    demo_database: str,
    owner: uuid.UUID,
    libraries: list[dict[str, str]],
) -> None:
    import asyncio

    async def pending_row() -> str:
        conn = await asyncpg.connect(demo_database)
        try:
            export_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids, library_names,"
                " fields, book_fields, file_name, object_key, expires_at, published_at)"
                " VALUES ($1, $2, 'json', 'series', $3, $4, '{title}', '{}', 'x.json', $5,"
                " now() + interval '1 day', now())",
                export_id,
                owner,
                [uuid.UUID(libraries[0]["id"])],
                [libraries[0]["name"]],
                f"exports/{owner}/{export_id}/x.json",
            )
            return str(export_id)
        finally:
            await conn.close()

    with demo_system.client(owner) as client:
        waiting = asyncio.run(pending_row())
        response = client.get(f"{URL}/{waiting}/download")
        assert response.status_code == 409
        assert response.json() == {
            "error": "NotReady",
            "message": "Export is not ready for download (status: pending)",
        }
        client.delete(f"{URL}/{waiting}")

        done, _ = run_export(
            client, {"format": "json", "libraryIds": [libraries[0]["id"]], "fields": ["title"]}
        )
        key = f"exports/{owner}/{done['id']}/{done['fileName']}"
        _store(real_servers).remove_object("codex-exports", key)
        gone = client.get(f"{URL}/{done['id']}/download")
        assert gone.status_code == 410
        assert gone.json()["error"] == "Gone"


def test_users_are_isolated(
    demo_system: System, real_servers: Servers, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    import asyncio

    alice, bob = asyncio.run(new_user(demo_database)), asyncio.run(new_user(demo_database))
    with demo_system.client(alice) as a, demo_system.client(bob) as b:
        done, _ = run_export(
            a, {"format": "json", "libraryIds": [libraries[0]["id"]], "fields": ["title"]}
        )
        export_id = done["id"]
        missing = str(uuid.uuid4())
        for other in (export_id, missing):
            for method, path in (("GET", ""), ("GET", "/download"), ("DELETE", "")):
                response = b.request(method, f"{URL}/{other}{path}")
                assert response.status_code == 404, (method, path)
                assert response.json() == {"error": "NotFound", "message": "Export not found"}
        assert b.get(URL).json() == {"exports": []}
        assert [e["id"] for e in a.get(URL).json()["exports"]] == [export_id]
        key = f"exports/{alice}/{export_id}/{done['fileName']}"
        store = _store(real_servers)
        assert store.stat_object("codex-exports", key).size == done["fileSizeBytes"]
        assert a.delete(f"{URL}/{export_id}").status_code == 204
        assert a.get(f"{URL}/{export_id}").status_code == 404
        assert a.delete(f"{URL}/{export_id}").status_code == 404
        assert (
            list(store.list_objects("codex-exports", prefix=f"exports/{alice}/", recursive=True))
            == []
        )


def test_list_is_newest_first(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    import asyncio

    user = asyncio.run(new_user(demo_database))
    with demo_system.client(user) as client:
        ids = [
            run_export(
                client, {"format": fmt, "libraryIds": [libraries[2]["id"]], "fields": ["year"]}
            )[0]["id"]
            for fmt in ("json", "csv", "md")
        ]
        listed = client.get(URL).json()["exports"]
    assert [e["id"] for e in listed] == ids[::-1]
    assert {e["format"] for e in listed} == {"json", "csv", "md"}


def test_authentication_is_required_everywhere(demo_system: System) -> None:
    some = str(uuid.uuid4())
    for method, path in (
        ("GET", URL),
        ("POST", URL),
        ("GET", f"{URL}/fields"),
        ("GET", f"{URL}/{some}"),
        ("GET", f"{URL}/{some}/download"),
        ("POST", f"{URL}/{some}/download-link"),
        ("POST", f"{URL}/estimate"),
        ("DELETE", f"{URL}/{some}"),
        ("GET", "/api/v1/libraries"),
    ):
        for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
            response = httpx.request(method, demo_system.api_url + path, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"] == "Unauthorized"
            assert response.json()["message"]


def test_fields_catalog(demo_system: System, owner: uuid.UUID) -> None:
    with demo_system.client(owner) as client:
        doc = client.get(f"{URL}/fields").json()
    assert doc["fields"][0] == {
        "key": "series_name",
        "label": "Series Name",
        "group": "Identity",
        "multiValue": False,
        "userSpecific": False,
        "isAnchor": True,
    }
    assert len(doc["fields"]) == 27 and len(doc["bookFields"]) == 27
    assert doc["presets"]["llmSelect"][0] == "title"
    assert "number" in doc["presets"]["llmSelectBooks"]
    progress = next(f for f in doc["fields"] if f["key"] == "progress")
    assert progress["userSpecific"] is True and progress["group"] == "Counts & Progress"


def test_login_returns_a_working_token(demo_system: System) -> None:
    response = httpx.post(
        demo_system.api_url + "/api/v1/auth/login", json={"username": "demo", "password": "demo"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "expiresAt"}
    me = httpx.get(
        demo_system.api_url + "/api/v1/auth/me",
        headers={"Authorization": f"Bearer {body['token']}"},
    )
    assert me.json()["username"] == "demo"
    wrong = httpx.post(
        demo_system.api_url + "/api/v1/auth/login", json={"username": "demo", "password": "nope"}
    )
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "Unauthorized", "message": "Invalid username or password"}
