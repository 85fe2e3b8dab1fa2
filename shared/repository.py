"""SQL for ``exports.exports``: the one place that reads and writes export rows, and their
tombstones (``exports.deletions``: every deletion of a row leaves one, in the same statement).

Every read a user can trigger is scoped by ``user_id``; the worker and janitor use the
unscoped calls, named so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.dto import ExportPublic
from shared.formats import (
    ACTIVE_STATUSES,
    ENDED_STATUSES,
    Compression,
    ExportFormat,
    ExportStatus,
    ExportType,
)

ACTIVE = tuple(s.value for s in ACTIVE_STATUSES)
ENDED = tuple(s.value for s in ENDED_STATUSES)

# Every column of ``exports.exports``, in ExportRow's order: what each statement returns.
ROW_COLUMNS = (
    "id, user_id, format, export_type, library_ids, library_names, fields, book_fields, status,"
    " rows_total, rows_written, row_count, file_size_bytes, sha256, file_name, object_key, error,"
    " attempt, worker_id, heartbeat_at, request_id, created_at, started_at, completed_at,"
    " expires_at, published_at, compression, schedule_id, lane"
)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One row of ``exports.exports``."""

    id: UUID
    user_id: UUID
    format: ExportFormat
    export_type: ExportType
    library_ids: list[UUID]
    library_names: list[str]
    fields: list[str]
    book_fields: list[str]
    status: ExportStatus
    rows_total: int | None
    rows_written: int
    row_count: int | None
    file_size_bytes: int | None
    sha256: str | None
    file_name: str
    object_key: str
    error: str | None
    attempt: int
    worker_id: str | None
    heartbeat_at: datetime | None
    request_id: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime
    published_at: datetime | None
    compression: Compression = Compression.NONE
    schedule_id: UUID | None = None  # the schedule this export is a run of (SPEC §12)
    lane: str = "large"  # shared.lanes.Lane; chosen at create, never changed

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ExportRow:
        values: dict[str, Any] = {f.name: record[f.name] for f in fields(cls)}
        for name in ("library_ids", "library_names", "fields", "book_fields"):
            values[name] = list(values[name] or [])
        values["format"] = ExportFormat(values["format"])
        values["export_type"] = ExportType(values["export_type"])
        values["status"] = ExportStatus(values["status"])
        values["compression"] = Compression(values["compression"])
        return cls(**values)

    def public(self) -> ExportPublic:
        return ExportPublic(
            id=self.id,
            format=self.format,
            compression=self.compression,
            export_type=self.export_type,
            status=self.status,
            library_ids=self.library_ids,
            library_names=self.library_names,
            fields=self.fields,
            book_fields=self.book_fields,
            rows_total=self.rows_total,
            rows_written=self.rows_written,
            row_count=self.row_count,
            file_size_bytes=self.file_size_bytes,
            sha256=self.sha256,
            file_name=self.file_name,
            error=self.error,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
            expires_at=self.expires_at,
            schedule_id=self.schedule_id,
        )


def _row(record: asyncpg.Record | None) -> ExportRow | None:
    return None if record is None else ExportRow.from_record(record)


class ConcurrencyLimitReached(Exception):
    """The user already has the maximum number of pending or running exports."""

    def __init__(self, active: int, limit: int) -> None:
        super().__init__(f"You already have {active} active exports (limit: {limit})")
        self.active = active
        self.limit = limit


@dataclass(frozen=True, slots=True)
class NewExport:
    id: UUID
    user_id: UUID
    format: ExportFormat
    export_type: ExportType
    library_ids: list[UUID]
    library_names: list[str]
    fields: list[str]
    book_fields: list[str]
    file_name: str
    object_key: str
    created_at: datetime
    expires_at: datetime
    request_id: str | None = None
    compression: Compression = Compression.NONE
    schedule_id: UUID | None = None
    lane: str = "large"


async def insert_export(
    conn: asyncpg.Connection,
    new: NewExport,
    *,
    max_active: int,
    idempotency_key: str | None = None,
) -> tuple[ExportRow, bool]:
    """Insert ``new`` unless the user is at the limit; return (row, created).

    The count and the insert run in one transaction under a per-user advisory lock, so no
    number of simultaneous requests can push a user past ``max_active``. With an
    idempotency key already used by this user in the last 24 h, the first export is returned.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))", new.user_id
        )
        if idempotency_key is not None:
            existing = await conn.fetchrow(
                f"SELECT {ROW_COLUMNS} FROM exports.exports e WHERE e.id = ("
                " SELECT export_id FROM exports.idempotency_keys"
                " WHERE user_id = $1 AND key = $2 AND created_at > now() - interval '24 hours')",
                new.user_id,
                idempotency_key,
            )
            if existing is not None:
                return ExportRow.from_record(existing), False
        active = await conn.fetchval(
            "SELECT count(*) FROM exports.exports WHERE user_id = $1 AND status = ANY($2::text[])",
            new.user_id,
            list(ACTIVE),
        )
        if active >= max_active:
            raise ConcurrencyLimitReached(active, max_active)
        record = await conn.fetchrow(
            "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids,"
            " library_names, fields, book_fields, file_name, object_key, created_at, expires_at,"
            " request_id, compression, schedule_id, lane)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
            f" RETURNING {ROW_COLUMNS}",
            new.id,
            new.user_id,
            new.format,
            new.export_type,
            new.library_ids,
            new.library_names,
            new.fields,
            new.book_fields,
            new.file_name,
            new.object_key,
            new.created_at,
            new.expires_at,
            new.request_id,
            new.compression,
            new.schedule_id,
            new.lane,
        )
        if idempotency_key is not None:
            await conn.execute(
                "INSERT INTO exports.idempotency_keys (user_id, key, export_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (user_id, key) DO UPDATE"
                " SET export_id = EXCLUDED.export_id, created_at = now()",
                new.user_id,
                idempotency_key,
                new.id,
            )
        return ExportRow.from_record(record), True


async def get_for_user(pool: asyncpg.Pool, export_id: UUID, user_id: UUID) -> ExportRow | None:
    """The caller's own export, or None (another user's export looks missing)."""
    return _row(
        await pool.fetchrow(
            f"SELECT {ROW_COLUMNS} FROM exports.exports WHERE id = $1 AND user_id = $2",
            export_id,
            user_id,
        )
    )


async def list_for_user(pool: asyncpg.Pool, user_id: UUID) -> list[ExportRow]:
    """The caller's exports, newest first."""
    records = await pool.fetch(
        f"SELECT {ROW_COLUMNS} FROM exports.exports WHERE user_id = $1"
        " ORDER BY created_at DESC, id DESC",
        user_id,
    )
    return [ExportRow.from_record(r) for r in records]


# One statement deletes the row and inserts the tombstone of its object key (a data-modifying
# CTE is one atomic statement): no moment exists where the row is gone and nothing says that
# its file must go. Of two deleters only one gets the row back (and the tombstone made).
_DELETE_WITH_TOMBSTONE = (
    "WITH gone AS (DELETE FROM exports.exports WHERE {where} RETURNING *),"
    " tombstone AS (INSERT INTO exports.deletions (object_key, export_id, user_id, reason)"
    " SELECT object_key, id, user_id, $2 FROM gone ON CONFLICT (object_key) DO NOTHING)"
    f" SELECT {ROW_COLUMNS} FROM gone"
)


async def delete_for_user(
    pool: asyncpg.Pool, export_id: UUID, user_id: UUID, reason: str = "deleted"
) -> ExportRow | None:
    """Delete the caller's export record, leaving its tombstone; None if it was not theirs.

    ``shared.retention`` removes the file after, then the tombstone.
    """
    sql = _DELETE_WITH_TOMBSTONE.format(where="id = $1 AND user_id = $3")
    return _row(await pool.fetchrow(sql, export_id, reason, user_id))


async def cancel_for_user(pool: asyncpg.Pool, export_id: UUID, user_id: UUID) -> ExportRow | None:
    """Move the caller's in-flight export to ``cancelled``; None if it is not in flight."""
    return _row(
        await pool.fetchrow(
            "UPDATE exports.exports SET status = 'cancelled', completed_at = now(),"
            " error = NULL WHERE id = $1 AND user_id = $2 AND status = ANY($3::text[])"
            f" RETURNING {ROW_COLUMNS}",
            export_id,
            user_id,
            list(ACTIVE),
        )
    )


async def get_any(pool: asyncpg.Pool, export_id: UUID) -> ExportRow | None:
    """Unscoped read, for the worker and janitor."""
    return _row(
        await pool.fetchrow(f"SELECT {ROW_COLUMNS} FROM exports.exports WHERE id = $1", export_id)
    )


async def delete_any(pool: asyncpg.Pool, export_id: UUID, reason: str) -> ExportRow | None:
    """Unscoped delete, for expiry and the caps: the row, or None if someone else took it.

    Leaves the tombstone of its object key (``reason`` says why); ``shared.retention`` removes
    the file and then the tombstone.
    """
    return _row(
        await pool.fetchrow(_DELETE_WITH_TOMBSTONE.format(where="id = $1"), export_id, reason)
    )


@dataclass(frozen=True, slots=True)
class Deletion:
    """A tombstone: an export row deleted whose file may still be in the bucket."""

    object_key: str
    export_id: UUID
    user_id: UUID
    reason: str
    created_at: datetime


async def pending_deletions(pool: asyncpg.Pool, limit: int = 500) -> list[Deletion]:
    """Tombstones not yet finished, oldest first (a crash left them, or a finisher is at work)."""
    records = await pool.fetch(
        "SELECT object_key, export_id, user_id, reason, created_at FROM exports.deletions"
        " ORDER BY created_at, object_key LIMIT $1",
        limit,
    )
    return [Deletion(**dict(r)) for r in records]


async def drop_deletion(pool: asyncpg.Pool, object_key: str) -> str | None:
    """Remove a tombstone once its object is gone; its reason, or None if another finisher
    already removed it (so one deletion is counted once)."""
    reason: str | None = await pool.fetchval(
        "DELETE FROM exports.deletions WHERE object_key = $1 RETURNING reason", object_key
    )
    return reason


async def over_completed_cap(pool: asyncpg.Pool, keep: int) -> list[ExportRow]:
    """Completed exports beyond the newest ``keep`` of each user (oldest first).

    A schedule's runs are not counted (SPEC §12): their own ``keep`` bounds them.
    """
    records = await pool.fetch(
        f"SELECT {ROW_COLUMNS} FROM (SELECT *, row_number() OVER"
        " (PARTITION BY user_id ORDER BY completed_at DESC, id DESC) AS n"
        " FROM exports.exports WHERE status = 'completed' AND schedule_id IS NULL) e WHERE n > $1"
        " ORDER BY completed_at",
        keep,
    )
    return [ExportRow.from_record(r) for r in records]


async def over_schedule_keep(pool: asyncpg.Pool) -> list[ExportRow]:
    """Completed runs of each existing schedule beyond its newest ``keep`` (oldest first).

    A deleted schedule keeps nothing in check: its runs expire as any export does.
    """
    records = await pool.fetch(
        f"SELECT {ROW_COLUMNS} FROM (SELECT x.*, s.keep, row_number() OVER"
        " (PARTITION BY x.schedule_id ORDER BY x.completed_at DESC, x.id DESC) AS n"
        " FROM exports.exports x JOIN exports.schedules s"
        " ON s.id = x.schedule_id AND s.user_id = x.user_id"
        " WHERE x.status = 'completed') e WHERE n > keep ORDER BY completed_at"
    )
    return [ExportRow.from_record(r) for r in records]


async def over_storage_cap(pool: asyncpg.Pool, cap_bytes: int) -> list[ExportRow]:
    """The oldest completed exports whose removal brings all users' total under ``cap_bytes``."""
    records = await pool.fetch(
        f"SELECT {ROW_COLUMNS} FROM (SELECT *, sum(coalesce(file_size_bytes, 0)) OVER"
        " (ORDER BY completed_at DESC, id DESC) AS running_total"
        " FROM exports.exports WHERE status = 'completed') e WHERE running_total > $1"
        " ORDER BY completed_at",
        cap_bytes,
    )
    return [ExportRow.from_record(r) for r in records]


async def mark_published(pool: asyncpg.Pool, export_id: UUID) -> None:
    await pool.execute(
        "UPDATE exports.exports SET published_at = now() WHERE id = $1 AND published_at IS NULL",
        export_id,
    )


async def unpublished(
    pool: asyncpg.Pool, *, older_than_seconds: float, limit: int = 100
) -> list[ExportRow]:
    """Pending rows whose request was never published (the outbox)."""
    records = await pool.fetch(
        f"SELECT {ROW_COLUMNS} FROM exports.exports"
        " WHERE published_at IS NULL AND status = 'pending'"
        " AND created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2",
        older_than_seconds,
        limit,
    )
    return [ExportRow.from_record(r) for r in records]


async def claim(
    pool: asyncpg.Pool, export_id: UUID, worker_id: str, *, stale_after_seconds: float
) -> ExportRow | None:
    """Take an export for this worker: pending, or running with a stale heartbeat.

    A conditional UPDATE, so two workers (duplicate publish, redelivery) never both win.
    """
    return _row(
        await pool.fetchrow(
            "UPDATE exports.exports SET status = 'running', worker_id = $2, attempt = attempt + 1,"
            " heartbeat_at = now(), started_at = now(), rows_written = 0, rows_total = NULL,"
            " published_at = coalesce(published_at, now())"
            " WHERE id = $1 AND (status = 'pending' OR (status = 'running'"
            " AND heartbeat_at < now() - make_interval(secs => $3)))"
            f" RETURNING {ROW_COLUMNS}",
            export_id,
            worker_id,
            stale_after_seconds,
        )
    )


async def heartbeat(
    pool: asyncpg.Pool, export_id: UUID, worker_id: str, rows_written: int, rows_total: int | None
) -> str | None:
    """Record progress; return the row's status (None if the row is gone or not ours)."""
    status: str | None = await pool.fetchval(
        "WITH upd AS (UPDATE exports.exports SET heartbeat_at = now(), rows_written = $3,"
        " rows_total = coalesce($4, rows_total)"
        " WHERE id = $1 AND worker_id = $2 AND status = 'running' RETURNING status)"
        " SELECT coalesce((SELECT status FROM upd),"
        " (SELECT 'lost:' || status FROM exports.exports WHERE id = $1))",
        export_id,
        worker_id,
        rows_written,
        rows_total,
    )
    return status


# How long the row may stay locked while the object is made (one CompleteMultipartUpload): a
# worker that hangs there loses its session, and the deleters and the sweep waiting on the row
# go on.
COMPLETE_LOCK_TIMEOUT = "60s"


async def complete(
    pool: asyncpg.Pool,
    export_id: UUID,
    worker_id: str,
    *,
    row_count: int,
    file_size_bytes: int,
    sha256: str,
    publish: Callable[[], Awaitable[None]] | None = None,
) -> ExportRow | None:
    """Mark the export completed, only if this worker still owns a running row.

    ``publish`` makes the file appear (``StreamingUpload.complete``); it runs while this
    transaction holds the row (``FOR UPDATE``), so it never runs for a row already deleted,
    cancelled or taken over (then None, and nothing is published), and a delete that comes
    meanwhile waits for the commit, then finds a completed row and removes its file. A crash
    after ``publish`` and before the commit leaves the row running with its file: the row goes
    stale, is run again and writes the same key.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            f"SET LOCAL idle_in_transaction_session_timeout = '{COMPLETE_LOCK_TIMEOUT}'"
        )
        owned = await conn.fetchval(
            "SELECT 1 FROM exports.exports WHERE id = $1 AND worker_id = $2 AND status = 'running'"
            " FOR UPDATE",
            export_id,
            worker_id,
        )
        if owned is None:
            return None
        if publish is not None:
            await publish()
        record = await conn.fetchrow(
            "UPDATE exports.exports SET status = 'completed', completed_at = now(),"
            " heartbeat_at = now(), row_count = $3, rows_written = $3,"
            " rows_total = $3, file_size_bytes = $4, sha256 = $5, error = NULL"
            f" WHERE id = $1 AND worker_id = $2 RETURNING {ROW_COLUMNS}",
            export_id,
            worker_id,
            row_count,
            file_size_bytes,
            sha256,
        )
    return _row(record)


async def fail(
    pool: asyncpg.Pool, export_id: UUID, error: str, *, worker_id: str | None = None
) -> ExportRow | None:
    """Mark an in-flight export failed with a message for people."""
    return _row(
        await pool.fetchrow(
            "UPDATE exports.exports SET status = 'failed', completed_at = now(), error = $2"
            " WHERE id = $1 AND status = ANY($3::text[]) AND ($4::text IS NULL OR worker_id = $4)"
            f" RETURNING {ROW_COLUMNS}",
            export_id,
            error,
            list(ACTIVE),
            worker_id,
        )
    )


async def release(
    pool: asyncpg.Pool, export_id: UUID, worker_id: str, *, error: str | None = None
) -> bool:
    """Hand a running export back (pending) so another worker can take it at once.

    ``error`` keeps the reason of a failed attempt, shown if the last attempt fails too.
    """
    result: str = await pool.execute(
        "UPDATE exports.exports SET status = 'pending', worker_id = NULL, heartbeat_at = NULL,"
        " error = coalesce($3, error) WHERE id = $1 AND worker_id = $2 AND status = 'running'",
        export_id,
        worker_id,
        error,
    )
    return result.endswith(" 1")
