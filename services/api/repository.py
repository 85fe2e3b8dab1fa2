"""Catalog reads the api needs (libraries the caller may read)."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from shared import library_access

_READABLE = "SELECT l.id, l.name FROM libraries l WHERE " + library_access.readable("l.id", "$1")


async def readable_libraries(pool: asyncpg.Pool, user_id: UUID) -> list[tuple[UUID, str]]:
    """Every library the user may read, by name."""
    records = await pool.fetch(_READABLE + ' ORDER BY lower(l.name) COLLATE "C", l.id', user_id)
    return [(r["id"], r["name"]) for r in records]


async def readable_by_id(pool: asyncpg.Pool, user_id: UUID, ids: list[UUID]) -> dict[UUID, str]:
    """Those of ``ids`` the user may read, with their names."""
    records = await pool.fetch(_READABLE + " AND l.id = ANY($2::uuid[])", user_id, ids)
    return {r["id"]: r["name"] for r in records}


async def user_is_active(pool: asyncpg.Pool, user_id: UUID) -> bool | None:
    """Whether the user may act (Codex's ``users.is_active``); None for an unknown user."""
    active: bool | None = await pool.fetchval("SELECT is_active FROM users WHERE id = $1", user_id)
    return active
