"""The janitor's SQL: what has expired, what is stuck, what is over a cap."""

from __future__ import annotations

import asyncpg

from shared import metrics
from shared.metrics import StateSnapshot
from shared.repository import ROW_COLUMNS, ExportRow


async def expired(pool: asyncpg.Pool, limit: int = 500) -> list[ExportRow]:
    records = await pool.fetch(
        f"SELECT {ROW_COLUMNS} FROM exports.exports WHERE expires_at <= now()"
        " ORDER BY expires_at LIMIT $1",
        limit,
    )
    return [ExportRow.from_record(r) for r in records]


async def requeue_stale(pool: asyncpg.Pool, stale_after_seconds: float) -> list[ExportRow]:
    """Running rows whose worker stopped beating: back to pending, to be published again."""
    records = await pool.fetch(
        "UPDATE exports.exports SET status = 'pending', worker_id = NULL, heartbeat_at = NULL"
        " WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)"
        f" RETURNING {ROW_COLUMNS}",
        stale_after_seconds,
    )
    return [ExportRow.from_record(r) for r in records]


async def known_keys(pool: asyncpg.Pool, keys: list[str]) -> set[str]:
    records = await pool.fetch(
        "SELECT object_key FROM exports.exports WHERE object_key = ANY($1::text[])", keys
    )
    return {r["object_key"] for r in records}


# One read-only aggregate, kept next to the gauges it feeds. The table holds at most
# (max_completed_per_user + max_concurrent_per_user) rows per user, so a scan is cheap.
STATE_SQL = """
SELECT
  count(*) FILTER (WHERE status = 'pending') AS pending,
  count(*) FILTER (WHERE status = 'running') AS running,
  count(*) FILTER (WHERE status = 'completed') AS completed,
  count(*) FILTER (WHERE status = 'failed') AS failed,
  count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
  coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')), 0)
    AS oldest_pending_seconds,
  coalesce(extract(epoch FROM now() - min(started_at) FILTER (WHERE status = 'running')), 0)
    AS oldest_running_seconds,
  coalesce(extract(epoch FROM now() - min(heartbeat_at) FILTER (WHERE status = 'running')), 0)
    AS heartbeat_age_seconds,
  count(*) FILTER (WHERE status = 'pending' AND published_at IS NULL) AS outbox_backlog,
  coalesce(extract(epoch FROM now() - min(created_at)
    FILTER (WHERE status = 'pending' AND published_at IS NULL)), 0) AS outbox_oldest_seconds,
  coalesce(sum(file_size_bytes) FILTER (WHERE status = 'completed'), 0) AS storage_bytes
FROM exports.exports
"""


async def read_state(db: asyncpg.Pool | asyncpg.Connection) -> StateSnapshot:
    """Run :data:`STATE_SQL` on a pool or connection, for the state gauges."""
    row = await db.fetchrow(STATE_SQL)
    return StateSnapshot(
        records={status: int(row[status]) for status in metrics.STATUSES},
        oldest_pending_seconds=float(row["oldest_pending_seconds"]),
        oldest_running_seconds=float(row["oldest_running_seconds"]),
        heartbeat_age_seconds=float(row["heartbeat_age_seconds"]),
        outbox_backlog=int(row["outbox_backlog"]),
        outbox_oldest_seconds=float(row["outbox_oldest_seconds"]),
        storage_bytes=int(row["storage_bytes"]),
    )
