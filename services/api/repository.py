"""The api's SQL: Codex's users, libraries and API keys (read only), this product's API keys,
and the caller's export usage. Rows of ``exports.exports`` are read and written in
``shared.repository``.

Every query of the api outside ``shared`` is here; the modules that decide (``auth``,
``api_keys``, ``codex_keys``, ``service``) call these functions by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from uuid import UUID

import asyncpg

from shared import library_access

# --- Libraries ---------------------------------------------------------------------------------

_READABLE = "SELECT l.id, l.name FROM libraries l WHERE " + library_access.readable("l.id", "$1")


async def readable_libraries(pool: asyncpg.Pool, user_id: UUID) -> list[tuple[UUID, str]]:
    """Every library the user may read, by name."""
    records = await pool.fetch(_READABLE + ' ORDER BY lower(l.name) COLLATE "C", l.id', user_id)
    return [(r["id"], r["name"]) for r in records]


async def readable_by_id(pool: asyncpg.Pool, user_id: UUID, ids: list[UUID]) -> dict[UUID, str]:
    """Those of ``ids`` the user may read, with their names."""
    records = await pool.fetch(_READABLE + " AND l.id = ANY($2::uuid[])", user_id, ids)
    return {r["id"]: r["name"] for r in records}


# --- Users (Codex's) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A Codex user as the api reads it; ``is_active`` is Codex's switch for the account."""

    id: UUID
    username: str
    role: str
    is_active: bool


def _account(record: asyncpg.Record) -> Account:
    return Account(record["id"], record["username"], record["role"], record["is_active"])


async def user_is_active(pool: asyncpg.Pool, user_id: UUID) -> bool | None:
    """Whether the user may act (Codex's ``users.is_active``); None for an unknown user."""
    active: bool | None = await pool.fetchval("SELECT is_active FROM users WHERE id = $1", user_id)
    return active


async def account_by_id(pool: asyncpg.Pool, user_id: UUID) -> Account | None:
    record = await pool.fetchrow(
        "SELECT id, username, role, is_active FROM users WHERE id = $1", user_id
    )
    return None if record is None else _account(record)


async def account_for_sign_in(pool: asyncpg.Pool, username: str) -> tuple[Account, str] | None:
    """The account named ``username`` and its stored password hash; None for nobody."""
    record = await pool.fetchrow(
        "SELECT id, username, role, is_active, password_hash FROM users WHERE username = $1",
        username,
    )
    return None if record is None else (_account(record), record["password_hash"])


# --- This product's API keys (exports.api_keys) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key, without its secret."""

    id: UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None


_KEY_COLUMNS = "id, name, prefix, created_at, last_used_at"


def _api_key(record: asyncpg.Record) -> ApiKey:
    return ApiKey(**{f.name: record[f.name] for f in fields(ApiKey)})


async def lock_api_keys(conn: asyncpg.Connection, user_id: UUID) -> None:
    """Hold the user's key lock until the transaction ends (count and insert under it)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('api_keys:' || $1::uuid::text, 0))",
        user_id,
    )


async def count_api_keys(conn: asyncpg.Connection, user_id: UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM exports.api_keys WHERE user_id = $1", user_id
    )
    return count


async def insert_api_key(
    conn: asyncpg.Connection, key_id: UUID, user_id: UUID, name: str, prefix: str, key_hash: bytes
) -> ApiKey:
    record = await conn.fetchrow(
        "INSERT INTO exports.api_keys (id, user_id, name, prefix, key_hash)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_KEY_COLUMNS}",
        key_id,
        user_id,
        name,
        prefix,
        key_hash,
    )
    return _api_key(record)


async def api_keys_of(pool: asyncpg.Pool, user_id: UUID) -> list[ApiKey]:
    """The user's keys, newest first."""
    records = await pool.fetch(
        f"SELECT {_KEY_COLUMNS} FROM exports.api_keys"
        " WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
        user_id,
    )
    return [_api_key(r) for r in records]


async def delete_api_key(pool: asyncpg.Pool, user_id: UUID, key_id: UUID) -> bool:
    """Delete the user's key; False when it is not theirs (or does not exist)."""
    result: str = await pool.execute(
        "DELETE FROM exports.api_keys WHERE id = $1 AND user_id = $2", key_id, user_id
    )
    return result == "DELETE 1"


# One round trip: find the key by its digest, load its owner, and touch ``last_used_at`` when
# it is older than the resolution. A revoked key has no row, so it stops working at once.
_KEY_OWNER = """
WITH found AS (
    SELECT id, user_id, last_used_at FROM exports.api_keys WHERE key_hash = $1
), touched AS (
    UPDATE exports.api_keys k SET last_used_at = now()
    FROM found
    WHERE k.id = found.id
      AND (found.last_used_at IS NULL
           OR found.last_used_at < now() - make_interval(secs => $2))
)
SELECT u.id, u.username, u.role, u.is_active FROM found JOIN users u ON u.id = found.user_id
"""


async def api_key_owner(
    pool: asyncpg.Pool, key_hash: bytes, touch_after_seconds: float
) -> Account | None:
    """The owner of the key with this digest (None when there is none), noting its use."""
    record = await pool.fetchrow(_KEY_OWNER, key_hash, touch_after_seconds)
    return None if record is None else _account(record)


# --- Codex's API keys (api_keys, read only) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodexKeyState:
    """What decides whether a verified Codex key may act now, and for whom."""

    key_active: bool
    expires_at: datetime | None
    owner: Account


async def active_codex_keys(pool: asyncpg.Pool, prefix: str) -> list[tuple[UUID, str]]:
    """``(id, argon2 key_hash)`` of Codex's active keys with this ``key_prefix``, by id."""
    records = await pool.fetch(
        "SELECT id, key_hash FROM api_keys WHERE key_prefix = $1 AND is_active ORDER BY id",
        prefix,
    )
    return [(r["id"], r["key_hash"]) for r in records]


_CODEX_KEY_STATE = """
SELECT k.is_active AS key_active, k.expires_at, u.id, u.username, u.role, u.is_active
FROM api_keys k JOIN users u ON u.id = k.user_id
WHERE k.id = $1
"""


async def codex_key_state(pool: asyncpg.Pool, key_id: UUID) -> CodexKeyState | None:
    """The key's switch, expiry and owner as they are now; None once the key is gone."""
    record = await pool.fetchrow(_CODEX_KEY_STATE, key_id)
    if record is None:
        return None
    return CodexKeyState(record["key_active"], record["expires_at"], _account(record))


# --- Usage -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserUsage:
    """What one user's exports take: stored bytes, kept exports, exports in flight."""

    used_bytes: int
    completed_exports: int
    active_exports: int


_USAGE = (
    "SELECT coalesce(sum(file_size_bytes) FILTER (WHERE status = 'completed'), 0) AS used_bytes,"
    " count(*) FILTER (WHERE status = 'completed') AS completed,"
    " count(*) FILTER (WHERE status IN ('pending', 'running')) AS active"
    " FROM exports.exports WHERE user_id = $1"
)


async def user_usage(pool: asyncpg.Pool, user_id: UUID) -> UserUsage:
    """The user's own figures; nobody else's exports are counted."""
    record = await pool.fetchrow(_USAGE, user_id)
    if record is None:  # an aggregate without GROUP BY always returns a row; this is for the types
        return UserUsage(used_bytes=0, completed_exports=0, active_exports=0)
    return UserUsage(
        used_bytes=int(record["used_bytes"]),
        completed_exports=int(record["completed"]),
        active_exports=int(record["active"]),
    )
