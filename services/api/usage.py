"""SQL for the caller's export usage (the figures above the Data Exports table)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

_USAGE = (
    "SELECT coalesce(sum(file_size_bytes) FILTER (WHERE status = 'completed'), 0) AS used_bytes,"
    " count(*) FILTER (WHERE status = 'completed') AS completed,"
    " count(*) FILTER (WHERE status IN ('pending', 'running')) AS active"
    " FROM exports.exports WHERE user_id = $1"
)


@dataclass(frozen=True, slots=True)
class UserUsage:
    """What one user's exports take: stored bytes, kept exports, exports in flight."""

    used_bytes: int
    completed_exports: int
    active_exports: int


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
