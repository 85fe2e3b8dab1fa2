"""Where Codex's catalog is read: the primary, or a streaming read replica (one rule, here).

``EXPORTS_CATALOG_DATABASE_URL`` sends the catalog reads — the worker's snapshot, its counts and
``COPY``, the api's estimates and library list — to another PostgreSQL server, a physical
streaming replica of Codex's database (``pg_basebackup -R``, or a managed "read replica"). The
job state — the ``exports`` schema's rows, claims, heartbeats, outbox, tombstones — is always
read and written on ``EXPORTS_DATABASE_URL``, the primary. Empty, the catalog is read on the
primary too, through the same pool, and nothing here costs a query.

The rule for a replica that lags: **an export never reads a catalog older than the moment it
started**. When a worker starts an export it reads the primary's WAL position
(``pg_current_wal_lsn()``: every commit visible on the primary then, Codex's catalog changes
and this export's own claim, is at or before it), then on its catalog connection waits until
the replica has replayed that far (``pg_last_wal_replay_lsn()``) before it opens its
``REPEATABLE READ`` snapshot, on that same connection — so the snapshot holds everything the
primary held when the export started, and the file is the one the primary would have given.
A replica that has not caught up within ``EXPORTS_CATALOG_MAX_LAG_SECONDS`` fails the attempt
with :class:`CatalogBehind`; the worker retries it like any outage (``EXPORTS_MAX_DELIVER``
attempts, backing off), and the export fails with a message saying the replica is behind,
never with a stale file. A replica that is down fails the attempt with
:class:`CatalogUnavailable` the same way. Either way the row stays on the primary, released
with the reason, so the next attempt (or the janitor) takes it over.

A server that is not in recovery (the primary itself, or a promoted replica) is taken as
current. Only a *physical* replica's positions are comparable with the primary's: a logical
replica (a subscriber) has WAL of its own and is not supported as a catalog database. With
``synchronous_commit = off`` on Codex's database a commit may be visible on the primary a few
milliseconds before its WAL is written; such a commit may be missed by an export started in
that instant, as it may be by one reading the primary a moment earlier.

Nothing is written in a catalog transaction (a replica is read-only): the rendering functions
of ``COPY`` live in the ``exports`` schema, created by the migrations on the primary and
replicated with everything else; ``SET LOCAL``, savepoints and ``pg_export_snapshot()`` (the
parallel count's shared snapshot) all work on a hot standby. A long export on a replica can be
cancelled by a conflict with recovery (``max_standby_streaming_delay``; SQLSTATE 40001, which
the worker retries): set ``hot_standby_feedback = on`` on the replica, or a generous delay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg

from shared.settings import Settings

# How often the replay position is read while waiting for a replica to catch up.
POLL_SECONDS = 0.05


class CatalogUnavailable(Exception):
    """The catalog database (the read replica) could not be reached or went away."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"catalog database unavailable: {detail}")


class CatalogBehind(Exception):
    """The replica had not replayed up to the export's start within the allowed lag."""

    def __init__(self, max_lag_seconds: float, target: str, replayed: str | None) -> None:
        super().__init__(
            f"catalog replica behind: replayed {replayed or 'nothing'}, needed {target} "
            f"within {max_lag_seconds:g} s"
        )
        self.max_lag_seconds = max_lag_seconds


async def open_catalog_pool(
    settings: Settings, primary: asyncpg.Pool, *, max_size: int
) -> asyncpg.Pool:
    """The pool catalog reads use: ``primary`` itself unless a catalog database is set.

    A separate pool opens no connection up front (``min_size=0``), so a service starts while
    the replica is down; its reads fail with :class:`CatalogUnavailable` until it is back.
    """
    if not settings.catalog_is_separate:
        return primary
    pool: asyncpg.Pool = await asyncpg.create_pool(
        settings.catalog_url, min_size=0, max_size=max_size
    )
    return pool


async def close_catalog_pool(pool: asyncpg.Pool, primary: asyncpg.Pool) -> None:
    """Close a pool :func:`open_catalog_pool` opened (never the primary's)."""
    if pool is not primary:
        await pool.close()


async def primary_position(primary: asyncpg.Pool) -> str:
    """The primary's current WAL position, as text (``0/3000148``)."""
    position: str = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
    return position


async def wait_for_replay(
    conn: asyncpg.Connection,
    target: str,
    max_lag_seconds: float,
    *,
    check: Callable[[], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Return once the server behind ``conn`` has replayed WAL up to ``target``.

    A server not in recovery returns at once. Raises :class:`CatalogBehind` after
    ``max_lag_seconds``; ``check`` runs between polls (a cancel stops the wait).
    """
    deadline = time.monotonic() + max_lag_seconds
    while True:
        record = await conn.fetchrow(
            "SELECT pg_is_in_recovery() AS standby, pg_last_wal_replay_lsn()::text AS replayed,"
            " coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false) AS caught_up",
            target,
        )
        if record is None or not record["standby"] or record["caught_up"]:
            return
        if time.monotonic() >= deadline:
            raise CatalogBehind(max_lag_seconds, target, record["replayed"])
        if check is not None:
            check()
        await sleep(POLL_SECONDS)


# The errors that mean the catalog server itself is gone (refused, shut down, connection lost).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    ConnectionError,
    OSError,
    TimeoutError,
)
