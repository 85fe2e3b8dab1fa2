"""``services.api.links``: what a download-link token binds, and how each refusal reads."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.api import links
from services.api.errors import Unauthorized
from shared import repository as exports_repo
from shared.formats import ExportFormat, ExportStatus, ExportType

SECRET = "unit-test-secret-" + "s" * 32
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def _row(user: uuid.UUID, export_id: uuid.UUID, sha: str = SHA) -> exports_repo.ExportRow:
    return exports_repo.ExportRow(
        id=export_id, user_id=user, format=ExportFormat.CSV, export_type=ExportType.SERIES,
        library_ids=[], library_names=[], fields=[], book_fields=[],
        status=ExportStatus.COMPLETED, rows_total=1, rows_written=1, row_count=1,
        file_size_bytes=1, sha256=sha, file_name="x.csv", object_key="k", error=None, attempt=1,
        worker_id=None, heartbeat_at=None, request_id=None, created_at=NOW, started_at=NOW,
        completed_at=NOW, expires_at=NOW + timedelta(days=7), published_at=NOW,
    )  # fmt: skip


def _refusal(token: str, export_id: uuid.UUID, row: exports_repo.ExportRow | None) -> str:
    with pytest.raises(Unauthorized) as caught:
        links.verify(SECRET, links.parse(token), export_id, row, now=NOW + timedelta(seconds=1))
    return caught.value.message


def test_a_link_opens_its_export_until_it_expires() -> None:
    user, export_id = uuid.uuid4(), uuid.uuid4()
    link = links.sign(SECRET, user, export_id, SHA, 60, now=NOW)
    assert link.expires_at == NOW + timedelta(seconds=60)
    assert link.token.startswith("cxd1.") and len(link.token) < 100
    claims = links.parse(link.token)
    assert claims.user_id == user
    row = _row(user, export_id)
    assert links.verify(SECRET, claims, export_id, row, now=NOW + timedelta(seconds=59)) is row
    with pytest.raises(Unauthorized) as caught:
        links.verify(SECRET, claims, export_id, row, now=NOW + timedelta(seconds=60))
    assert caught.value.message == links.EXPIRED


def test_every_mismatch_is_the_same_refusal() -> None:
    user, export_id, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    token = links.sign(SECRET, user, export_id, SHA, 60, now=NOW).token
    row = _row(user, export_id)
    assert _refusal(token, other, replace(row, id=other)) == links.INVALID  # another export
    assert _refusal(token, export_id, None) == links.INVALID  # deleted (or not the user's)
    assert _refusal(token, export_id, replace(row, sha256="cd" * 32)) == links.INVALID
    forged = links.sign("another-secret-" + "x" * 32, user, export_id, SHA, 60, now=NOW).token
    assert _refusal(forged, export_id, row) == links.INVALID
    version, _, mac = token.split(".")
    someone = links.sign(SECRET, uuid.uuid4(), export_id, SHA, 60, now=NOW).token.split(".")[1]
    assert _refusal(f"{version}.{someone}.{mac}", export_id, row) == links.INVALID


@pytest.mark.parametrize(
    "token",
    ["", "cxd1", "cxd1..", "jwt.like.token", "cxd1.!!.!!", "cxd1.AAAA.AAAA", "cxd1." + "A" * 300],
)
def test_malformed_tokens_are_refused_before_any_lookup(token: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        links.parse(token)
    assert caught.value.message == links.INVALID
