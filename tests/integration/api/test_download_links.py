"""Download links (SPEC §11): a short-lived URL that downloads one export with no other
credential, Range included, and every way it is refused — through the real api and worker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.api import links
from shared.logs import LINK_TOKEN_PREFIX
from tests.conftest import first_library, new_user
from tests.system import JWT_SECRET, System, wait_for_export

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"


def _sql(database_url: str, sql: str, *args: Any) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def owner(demo_database: str) -> uuid.UUID:
    return asyncio.run(new_user(demo_database))


@pytest.fixture(scope="module")
def library(demo_database: str) -> str:
    return asyncio.run(first_library(demo_database))


def _completed(system: System, user: uuid.UUID, library: str, fmt: str = "csv") -> dict[str, Any]:
    with system.client(user) as client:
        created = client.post(URL, json={"format": fmt, "libraryIds": [library], "preset": "all"})
        assert created.status_code == 202, created.text
        done = wait_for_export(client, created.json()["id"])
    assert done["status"] == "completed", done
    return done


def _link(system: System, user: uuid.UUID, export_id: str) -> httpx.Response:
    with system.client(user) as client:
        return client.post(f"{URL}/{export_id}/download-link")


def _anonymous(system: System, url: str, **headers: str) -> httpx.Response:
    """A request with nothing but the link: no Authorization, no key, no cookie."""
    return httpx.get(system.api_url + url, headers=headers, timeout=30)


def _refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "Unauthorized", "message": message}


def test_a_link_downloads_the_whole_file_and_ranges_without_credentials(
    demo_system: System, owner: uuid.UUID, library: str
) -> None:
    done = _completed(demo_system, owner, library)
    before = datetime.now(UTC)
    answer = _link(demo_system, owner, done["id"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert set(body) == {"url", "expiresAt"}
    assert body["url"].startswith(f"{URL}/{done['id']}/download?token={LINK_TOKEN_PREFIX}")
    # EXPORTS_DOWNLOAD_LINK_SECONDS: 60 by default.
    expires = datetime.fromisoformat(body["expiresAt"])
    assert before + timedelta(seconds=58) <= expires <= datetime.now(UTC) + timedelta(seconds=61)

    whole = _anonymous(demo_system, body["url"])
    assert whole.status_code == 200
    assert hashlib.sha256(whole.content).hexdigest() == done["sha256"]
    assert whole.headers["content-disposition"].startswith("attachment;")
    assert whole.headers["etag"] == f'"{done["sha256"]}"'
    content = whole.content

    part = _anonymous(demo_system, body["url"], Range="bytes=10-99")
    assert (part.status_code, part.content) == (206, content[10:100])
    assert part.headers["content-range"] == f"bytes 10-99/{len(content)}"
    # How a browser resumes: Range from what it has, If-Range with the ETag it was given.
    resumed = _anonymous(
        demo_system,
        body["url"],
        Range=f"bytes={len(content) - 7}-",
        **{"If-Range": whole.headers["etag"]},
    )
    assert (resumed.status_code, resumed.content) == (206, content[-7:])
    # The link decides even beside a bad bearer token: it is what a download manager follows.
    beside = _anonymous(demo_system, body["url"], Authorization="Bearer nonsense")
    assert beside.status_code == 200


def test_every_refusal_of_a_link(
    demo_system: System, demo_database: str, owner: uuid.UUID, library: str
) -> None:
    first = _completed(demo_system, owner, library)
    second = _completed(demo_system, owner, library, fmt="json")
    url = _link(demo_system, owner, first["id"]).json()["url"]
    token = url.split("token=", 1)[1]

    # Expired: signed with the service's secret an hour ago (expiry is the token's own).
    old = links.sign(
        JWT_SECRET,
        owner,
        uuid.UUID(first["id"]),
        first["sha256"],
        60,
        now=datetime.now(UTC) - timedelta(hours=1),
    )
    _refused(
        _anonymous(demo_system, f"{URL}/{first['id']}/download?token={old.token}"), links.EXPIRED
    )

    # Another export: this link opens only the one it was made for.
    _refused(_anonymous(demo_system, f"{URL}/{second['id']}/download?token={token}"), links.INVALID)

    # Tampered: the MAC, the payload (user or expiry), or no token shape at all.
    version, payload, mac = token.split(".")
    flipped_mac = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    longer = links.sign(
        "someone-else's-secret-" + "x" * 20, owner, uuid.UUID(first["id"]), first["sha256"], 3600
    )
    for bad in (
        f"{version}.{payload}.{flipped_mac}",
        f"{version}.{longer.token.split('.')[1]}.{mac}",
        longer.token,
        "nonsense",
        "",
        f"{version}.!!!.{mac}",
        "x" * 5000,
    ):
        _refused(
            _anonymous(demo_system, f"{URL}/{first['id']}/download?token={bad}"), links.INVALID
        )

    # The file replaced (its SHA-256 changed): the link was for the old bytes.
    _sql(
        demo_database,
        "UPDATE exports.exports SET sha256 = $2 WHERE id = $1",
        uuid.UUID(first["id"]),
        "0" * 64,
    )
    _refused(_anonymous(demo_system, url), links.INVALID)
    _sql(
        demo_database,
        "UPDATE exports.exports SET sha256 = $2 WHERE id = $1",
        uuid.UUID(first["id"]),
        first["sha256"],
    )
    assert _anonymous(demo_system, url).status_code == 200

    # The owner deactivated in Codex: the link stops with their other credentials.
    _sql(demo_database, "UPDATE users SET is_active = false WHERE id = $1", owner)
    try:
        _refused(_anonymous(demo_system, url), links.INVALID)
    finally:
        _sql(demo_database, "UPDATE users SET is_active = true WHERE id = $1", owner)
    assert _anonymous(demo_system, url).status_code == 200

    # Deleted: the record and the file are gone, and so is the link.
    with demo_system.client(owner) as client:
        assert client.delete(f"{URL}/{first['id']}").status_code == 204
    _refused(_anonymous(demo_system, url), links.INVALID)


def test_a_link_is_only_for_a_completed_export_of_ones_own(
    demo_system: System, demo_database: str, owner: uuid.UUID, library: str
) -> None:
    pending = uuid.uuid4()
    _sql(
        demo_database,
        "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids,"
        " library_names, fields, book_fields, file_name, object_key, expires_at, published_at)"
        " VALUES ($1, $2, 'json', 'series', $3, '{x}', '{title}', '{}', 'x.json', $4,"
        " now() + interval '1 day', now())",
        pending,
        owner,
        [uuid.UUID(library)],
        f"exports/{owner}/{pending}/x.json",
    )
    answer = _link(demo_system, owner, str(pending))
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "NotReady",
        "message": "Export is not ready for download (status: pending)",
    }
    done = _completed(demo_system, owner, library)
    stranger = asyncio.run(new_user(demo_database))
    for export_id in (done["id"], str(uuid.uuid4())):
        other = _link(demo_system, stranger, export_id)
        assert other.status_code == 404
        assert other.json() == {"error": "NotFound", "message": "Export not found"}
    # A link needs a signed-in caller (or a key) to be made.
    assert httpx.post(demo_system.api_url + f"{URL}/{done['id']}/download-link").status_code == 401


def test_link_tokens_never_reach_a_log_line(
    demo_system: System, owner: uuid.UUID, library: str
) -> None:
    done = _completed(demo_system, owner, library)
    url = _link(demo_system, owner, done["id"]).json()["url"]
    token = url.split("token=", 1)[1]
    assert _anonymous(demo_system, url).status_code == 200
    assert _anonymous(demo_system, url, Range="bytes=0-9").status_code == 206
    wrong = token[:-3] + "zzz"
    assert _anonymous(demo_system, url.replace(token, wrong)).status_code == 401
    # A token-shaped value elsewhere in the URL (a path) is redacted as well.
    assert _anonymous(demo_system, f"{URL}/{token}").status_code in (400, 401)

    lines = [json.loads(line) for line in demo_system.log("api").splitlines() if line.strip()]
    text = demo_system.log("api")
    for secret in (token, wrong, token.split(".")[2], token.split(".")[1]):
        assert secret not in text
    # The access log has the requests, each with its query's token redacted.
    access = [e for e in lines if e.get("logger") == "services.api.access"]
    downloads = [e for e in access if e["path"].startswith(f"{URL}/{done['id']}/download?")]
    assert {e["status"] for e in downloads} >= {"200", "206", "401"}
    assert all(e["path"].endswith("?token=[redacted]") for e in downloads), downloads
