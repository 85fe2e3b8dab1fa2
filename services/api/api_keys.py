"""API keys for scripts: creation, listing, revocation and the lookup behind ``X-API-Key``.

A key is ``cxk_`` followed by 43 URL-safe characters (256 random bits). It is shown once, at
creation; the database keeps only its SHA-256 digest, a short display prefix and its name.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any
from uuid import UUID

import asyncpg

from services.api import repository
from services.api.errors import ApiError, Conflict, ValidationFailed

KEY_PREFIX = "cxk_"
KEY_BYTES = 32  # 256 bits of randomness
# "cxk_" + 8 characters: enough to tell keys apart in a list, far too few to guess the rest.
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 8
MAX_NAME_LENGTH = 100
MAX_KEYS_PER_USER = 25
# A header longer than any key we issue is refused before hashing.
MAX_KEY_LENGTH = 100
# ``last_used_at`` is written at most once a minute per key, so a busy script does not turn
# every request into a row update.
LAST_USED_RESOLUTION_SECONDS = 60.0


class KeyForbidden(ApiError):
    status = 403
    code = "Forbidden"


class TooManyKeys(Conflict):
    code = "TooManyApiKeys"


def new_key() -> str:
    """A fresh random key with the recognisable ``cxk_`` prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def digest(key: str) -> bytes:
    """The stored form of a key.

    A plain SHA-256 is the right hash here, unlike for passwords: a key holds 256 random bits,
    so nobody can search its space however fast the hash is (slow, salted hashes such as
    argon2 exist to make guessing low-entropy passwords expensive). An unsalted, deterministic
    digest also lets a request find its key through a unique index in one lookup, instead of
    verifying against every stored hash.
    """
    return hashlib.sha256(key.encode("utf-8")).digest()


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX) and len(value) <= MAX_KEY_LENGTH


def clean_name(value: Any) -> str:
    """The key's name, trimmed; refused with a message a person understands."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationFailed("A key name is required")
    if not isinstance(value, str):
        raise ValidationFailed("The key name must be text")
    name = value.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed(f"The key name must be at most {MAX_NAME_LENGTH} characters")
    if not name.isprintable():
        raise ValidationFailed("The key name must be printable text (no control characters)")
    return name


async def create(pool: asyncpg.Pool, user_id: UUID, name: Any) -> tuple[repository.ApiKey, str]:
    """Store a new key for ``user_id``; return it and the secret, which is never stored."""
    clean = clean_name(name)
    secret = new_key()
    async with pool.acquire() as conn, conn.transaction():
        # Count and insert under a per-user lock, so parallel requests cannot pass the limit.
        await repository.lock_api_keys(conn, user_id)
        count = await repository.count_api_keys(conn, user_id)
        if count >= MAX_KEYS_PER_USER:
            raise TooManyKeys(
                f"You already have {count} API keys (limit: {MAX_KEYS_PER_USER}); revoke one first"
            )
        key = await repository.insert_api_key(
            conn, uuid.uuid4(), user_id, clean, secret[:DISPLAY_PREFIX_LENGTH], digest(secret)
        )
    return key, secret


async def list_for_user(pool: asyncpg.Pool, user_id: UUID) -> list[repository.ApiKey]:
    """The caller's keys, newest first."""
    return await repository.api_keys_of(pool, user_id)


async def revoke(pool: asyncpg.Pool, user_id: UUID, key_id: UUID) -> bool:
    """Delete the caller's key; False when it is not theirs (or does not exist)."""
    return await repository.delete_api_key(pool, user_id, key_id)


async def owner_of(pool: asyncpg.Pool, key: str) -> repository.Account | None:
    """The key's owner, its use noted; None for an unknown or revoked key."""
    if not looks_like_key(key):
        return None
    return await repository.api_key_owner(pool, digest(key), LAST_USED_RESOLUTION_SECONDS)
