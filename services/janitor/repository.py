"""The janitor's SQL: what has expired, what is stuck, what is over a cap."""

from __future__ import annotations

import asyncpg

from shared.repository import _COLUMNS, ExportRow


async def expired(pool: asyncpg.Pool, limit: int = 500) -> list[ExportRow]:
    records = await pool.fetch(
        f"SELECT {_COLUMNS} FROM exports.exports WHERE expires_at <= now()"
        " ORDER BY expires_at LIMIT $1",
        limit,
    )
    return [ExportRow.from_record(r) for r in records]


async def requeue_stale(pool: asyncpg.Pool, stale_after_seconds: float) -> list[ExportRow]:
    """Running rows whose worker stopped beating: back to pending, to be published again."""
    records = await pool.fetch(
        "UPDATE exports.exports SET status = 'pending', worker_id = NULL, heartbeat_at = NULL"
        " WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)"
        f" RETURNING {_COLUMNS}",
        stale_after_seconds,
    )
    return [ExportRow.from_record(r) for r in records]


async def known_keys(pool: asyncpg.Pool, keys: list[str]) -> set[str]:
    records = await pool.fetch(
        "SELECT object_key FROM exports.exports WHERE object_key = ANY($1::text[])", keys
    )
    return {r["object_key"] for r in records}
