"""Download links (SPEC §11): a URL that downloads one export without any other credential.

``POST /{id}/download-link`` answers ``{"url": ".../download?token=…", "expiresAt"}``, so a
browser can hand the file to its own download manager (an ``<a href download>``): the file
streams to disk, shows the browser's progress, and an interrupted transfer is resumed by the
browser with ``Range``/``If-Range`` on the same URL.

The token is ``cxd1.<payload>.<mac>`` (base64url, no padding):

- payload: the owner's user id (16 bytes) and the expiry (8 bytes, Unix seconds, big-endian);
- mac: HMAC-SHA256 over the version, the payload, the export's id and its SHA-256, keyed by a
  key derived from ``EXPORTS_JWT_SECRET`` for this use only (a JWT is never a link, nor a link a
  JWT; every api replica derives the same key).

The export id comes from the URL's path and the SHA-256 from the export's row, so neither needs
to travel in the token: a link opens no other export (the path's id is in the MAC), and stops
working when the export is deleted or its file replaced (the row, or its SHA-256, no longer
matches). It lasts ``EXPORTS_DOWNLOAD_LINK_SECONDS`` (60): long enough for a browser to start
the download and resume it after a short cut, short enough that a link pasted into a chat, or
kept in a browser's download history or a proxy's error log, has expired by the time anyone
else reads it.

Refusals are 401 with a message a person can act on; only expiry is told apart (its time is the
token's own, so telling it reveals nothing). A link that does not verify, names another export,
or whose export was deleted or replaced answers the same, so a forged link cannot probe which
export ids exist for which user. Tokens never reach a log line: ``shared.logs`` redacts them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg

from services.api import repository
from services.api.errors import Unauthorized
from shared import repository as exports_repo
from shared.logs import LINK_TOKEN_PREFIX

VERSION = LINK_TOKEN_PREFIX.rstrip(".")
_KEY_LABEL = b"codex-exports download link v1"
_PAYLOAD = struct.Struct(">16sQ")  # user id, expiry (Unix seconds)
_MAC_BYTES = 32
# A token longer than this is no token of ours: refused before any decoding.
MAX_TOKEN_CHARS = 200

EXPIRED = "This download link has expired. Start the download again from the Data Exports page."
INVALID = (
    "This download link is not valid: it was changed, it belongs to another export, or its "
    "export was deleted or replaced. Start the download again from the Data Exports page."
)


@dataclass(frozen=True, slots=True)
class Link:
    token: str
    expires_at: datetime


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: bytes, export_id: UUID, sha256: str) -> bytes:
    message = VERSION.encode() + b"\x00" + payload + export_id.bytes + bytes.fromhex(sha256)
    return hmac.new(_key(secret), message, hashlib.sha256).digest()


def sign(
    secret: str,
    user_id: UUID,
    export_id: UUID,
    sha256: str,
    ttl_seconds: int,
    *,
    now: datetime | None = None,
) -> Link:
    """A link token for one export's current file, valid ``ttl_seconds`` from ``now``."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    expires = issued + timedelta(seconds=ttl_seconds)
    payload = _PAYLOAD.pack(user_id.bytes, int(expires.timestamp()))
    mac = _mac(secret, payload, export_id, sha256)
    return Link(f"{VERSION}.{_b64(payload)}.{_b64(mac)}", expires)


@dataclass(frozen=True, slots=True)
class Claims:
    """What a well-formed token says, before its MAC is checked against an export."""

    user_id: UUID
    expires_at: datetime
    payload: bytes
    mac: bytes


def parse(token: str) -> Claims:
    """The token's claims; 401 ``INVALID`` when it is not one of ours."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN_CHARS or len(parts) != 3 or parts[0] != VERSION:
        raise Unauthorized(INVALID)
    try:
        payload, mac = _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        raise Unauthorized(INVALID) from None
    if len(payload) != _PAYLOAD.size or len(mac) != _MAC_BYTES:
        raise Unauthorized(INVALID)
    user, expiry = _PAYLOAD.unpack(payload)
    try:
        expires_at = datetime.fromtimestamp(expiry, UTC)
    except (OverflowError, OSError, ValueError):
        raise Unauthorized(INVALID) from None
    return Claims(UUID(bytes=user), expires_at, payload, mac)


def verify(
    secret: str,
    claims: Claims,
    export_id: UUID,
    row: exports_repo.ExportRow | None,
    *,
    now: datetime | None = None,
) -> exports_repo.ExportRow:
    """The export the link opens; 401 when it expired, or does not match ``row``'s file."""
    if claims.expires_at <= (now or datetime.now(UTC)):
        raise Unauthorized(EXPIRED)
    if row is None or row.sha256 is None or row.id != export_id:
        raise Unauthorized(INVALID)
    expected = _mac(secret, claims.payload, export_id, row.sha256)
    if not hmac.compare_digest(expected, claims.mac):
        raise Unauthorized(INVALID)
    return row


async def export_for_link(
    pool: asyncpg.Pool, secret: str, export_id: UUID, token: str
) -> exports_repo.ExportRow:
    """The export a link token opens, checked against the database now (401 otherwise).

    The owner must still be an active user: a link stops with its owner's other credentials.
    """
    claims = parse(token)
    if claims.expires_at <= datetime.now(UTC):
        raise Unauthorized(EXPIRED)
    active = await repository.user_is_active(pool, claims.user_id)
    row = await exports_repo.get_for_user(pool, export_id, claims.user_id) if active else None
    return verify(secret, claims, export_id, row)
