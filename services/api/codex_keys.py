"""Codex's own API keys (``X-API-Key: codex_<16 hex>_<32 hex>``), verified as Codex does.

Codex stores each key in its ``api_keys`` table: ``key_prefix`` (``codex_<16 hex>``), an argon2id
PHC ``key_hash`` of the whole key, ``is_active``, ``expires_at`` and the owner. A request's key is
looked up by its prefix and verified against each active row's hash (../shared/codex/AUTH.md).

argon2 costs tens of milliseconds by design, so a script sending many requests would pay it on
each one. A verified key is remembered for at most :data:`CACHE_SECONDS`, keyed by the key's
SHA-256 (never the key itself), and forgotten on any refusal. The cache only spares the argon2
step: every request still reads the key's row and its owner, so a key or a user that Codex
deactivates (or a key that expires) is refused from the next request on, well within that time.

Nothing is written to Codex's table (Codex's own ``last_used_at`` is Codex's to keep).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.api import repository

# codex_ + 16 hex (the stored prefix), then _ + 32 hex (the secret).
_KEY = re.compile(r"(codex_[0-9a-f]{16})_[0-9a-f]{32}")
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 4096
_hasher = PasswordHasher()

INVALID = "Invalid API key"
EXPIRED = "API key has expired"
INACTIVE_USER = "User account is inactive"


def looks_like_key(value: str) -> bool:
    """Whether ``value`` has the shape of a Codex key (its only possible owner is Codex)."""
    return value.startswith("codex_")


class KeyRefused(Exception):
    """A Codex key that does not authenticate; the message is Codex's own."""


class VerifiedKeys:
    """Which key digests verified, and when: at most ``CACHE_SECONDS`` old, bounded in size."""

    def __init__(self, ttl: float = CACHE_SECONDS, entries: int = CACHE_ENTRIES) -> None:
        self.ttl = ttl
        self.entries = entries
        self._seen: OrderedDict[bytes, tuple[float, UUID]] = OrderedDict()

    def get(self, digest: bytes) -> UUID | None:
        hit = self._seen.get(digest)
        if hit is None:
            return None
        at, key_id = hit
        if time.monotonic() - at > self.ttl:
            del self._seen[digest]
            return None
        return key_id

    def put(self, digest: bytes, key_id: UUID) -> None:
        self._seen[digest] = (time.monotonic(), key_id)
        self._seen.move_to_end(digest)
        while len(self._seen) > self.entries:
            self._seen.popitem(last=False)

    def drop(self, digest: bytes) -> None:
        self._seen.pop(digest, None)


def _verify(stored: str, key: str) -> bool:
    try:
        return _hasher.verify(stored, key)
    except (VerificationError, InvalidHashError):
        return False


async def _find(pool: asyncpg.Pool, key: str, prefix: str) -> UUID | None:
    """The id of the active key row whose argon2 hash ``key`` matches, if any."""
    for key_id, key_hash in await repository.active_codex_keys(pool, prefix):
        if await asyncio.to_thread(_verify, key_hash, key):
            return key_id
    return None


async def owner_of(pool: asyncpg.Pool, cache: VerifiedKeys, key: str) -> repository.Account:
    """The key's owner; :class:`KeyRefused` with Codex's message."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise KeyRefused(INVALID)
    digest = hashlib.sha256(key.encode("ascii")).digest()
    key_id = cache.get(digest)
    if key_id is None:
        key_id = await _find(pool, key, match.group(1))
        if key_id is None:
            cache.drop(digest)
            raise KeyRefused(INVALID)
        cache.put(digest, key_id)
    state = await repository.codex_key_state(pool, key_id)
    refusal = None
    if state is None or not state.key_active:
        refusal = INVALID
    elif state.expires_at is not None and state.expires_at <= datetime.now(UTC):
        refusal = EXPIRED
    elif not state.owner.is_active:
        refusal = INACTIVE_USER
    if refusal is not None:
        cache.drop(digest)
        raise KeyRefused(refusal)
    assert state is not None  # noqa: S101 - refusal is set whenever it is None
    return state.owner
