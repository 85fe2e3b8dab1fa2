"""One export, end to end: claim, read one snapshot, render, stream to S3, record, announce."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from services.worker import catalog, render
from services.worker.errors import ExportCancelled, ExportInterrupted, ExportLost
from services.worker.render import compression, copy
from services.worker.render.encoder import Encoder
from shared import catalog_db, metrics, object_store, retention
from shared import fields as field_catalog
from shared import repository as exports_repo
from shared.bus import publish_fact
from shared.events import ExportCompleted, ExportFailed
from shared.formats import ExportType, stored_media_type
from shared.settings import Settings
from shared.subjects import COMPLETED, FAILED
from shared.timers import schedule_expiry

log = logging.getLogger(__name__)

Kind = Literal["series", "books"]


@dataclass
class Progress:
    """Shared between the export loop and its heartbeat."""

    rows: int = 0
    total: int | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    reason: type[Exception] | None = None
    # Wakes the heartbeat before its interval: on a halt, and when the first rows are written
    # (a large export spends its first seconds sorting; its progress shows once rows flow).
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def halt(self, reason: type[Exception]) -> None:
        if self.reason is None:
            self.reason = reason
        self.stop.set()
        self.wake.set()

    def advance(self, rows: int) -> None:
        if not self.rows and rows:
            self.wake.set()
        self.rows += rows

    def check(self) -> None:
        if self.reason is not None:
            raise self.reason()


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    pool: asyncpg.Pool
    store: Minio
    broker: NatsBroker
    worker_id: str
    catalog_pool: asyncpg.Pool | None = None
    """Where the catalog is read (``EXPORTS_CATALOG_DATABASE_URL``); None: ``pool``."""

    @property
    def catalog(self) -> asyncpg.Pool:
        return self.catalog_pool if self.catalog_pool is not None else self.pool


_SECTIONS: dict[ExportType, list[Kind]] = {
    ExportType.SERIES: ["series"],
    ExportType.BOOKS: ["books"],
    ExportType.BOTH: ["series", "books"],
}


def sections(row: exports_repo.ExportRow) -> list[Kind]:
    """The sections an export writes, in file order."""
    return _SECTIONS[row.export_type]


RenderPath = Literal["database", "python"]


def renderer_for(settings: Settings) -> RenderPath:
    """Rows are rendered by PostgreSQL (``render.copy``) unless the settings turn it off.

    The Python encoders stay the reference, and the fallback for any value the database
    declines; ``EXPORTS_RENDER_IN_DATABASE=false`` makes them render every row (see
    ``services.worker.render``).
    """
    return "database" if settings.render_in_database else "python"


async def _render(
    ctx: WorkerContext,
    row: exports_repo.ExportRow,
    progress: Progress,
    write: Callable[[bytes], Any],
    renderer: RenderPath | None = None,
) -> int:
    """Read the catalog in one snapshot and write the rendered file; return the row count."""
    encoder = render.make_encoder(row.format, row.export_type)
    batch_rows = ctx.settings.batch_rows
    renderer = renderer or renderer_for(ctx.settings)
    if not render.in_database(row.format):
        renderer = "python"  # a binary format: its library writes it from typed rows
    sink = _Sink(write)
    write = sink.write
    try:
        async with (
            _catalog_connection(ctx, progress, sink) as conn,
            _transaction(conn, isolation="repeatable_read", readonly=True),
        ):
            libraries = await catalog.readable_library_ids(conn, row.user_id, row.library_ids)
            scope = catalog.Scope(user_id=row.user_id, library_ids=libraries)
            kinds = sections(row)
            # The count runs on a second connection in the same snapshot, while this one sorts.
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            counting = asyncio.create_task(_count(ctx.catalog, snapshot, kinds, scope, progress))
            try:
                await _write_sections(
                    conn, row, kinds, scope, renderer, batch_rows, encoder, write, progress
                )
                await counting
            finally:
                if not counting.done():
                    counting.cancel()
                with contextlib.suppress(BaseException):
                    await counting
        # A file its library wrote on disk (XLSX) is finished and streamed once the snapshot
        # is released; a cancel noticed meanwhile still stops the export before its upload ends.
        await render.spool(encoder, write)
        progress.check()
    finally:
        render.discard(encoder)
    return progress.rows


class _Sink:
    """The file's ``write``, remembering whether it failed: an error that passes through the
    catalog's ``COPY`` is then the upload's, not the catalog database's."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write
        self.failed = False

    async def write(self, data: bytes) -> Any:
        try:
            return await self._write(data)
        except BaseException:
            self.failed = True
            raise


@contextlib.asynccontextmanager
async def _catalog_connection(
    ctx: WorkerContext, progress: Progress, sink: _Sink
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to read the catalog on, inside the ``async with``.

    With a catalog database of its own (a read replica, ``shared.catalog_db``), the connection
    is handed out once the replica has replayed up to the primary's WAL position taken here,
    at the export's start (:class:`catalog_db.CatalogBehind` past the allowed lag), and a
    failure of the replica's connection — refused, shut down, lost in the middle of the
    ``COPY`` — is raised as :class:`catalog_db.CatalogUnavailable`.
    """
    if not ctx.settings.catalog_is_separate:
        async with ctx.catalog.acquire() as conn:
            yield conn
        return
    target = await catalog_db.primary_position(ctx.pool)
    try:
        async with ctx.catalog.acquire() as conn:
            await catalog_db.wait_for_replay(
                conn, target, ctx.settings.catalog_max_lag_seconds, check=progress.check
            )
            yield conn
    except catalog_db.CONNECTION_ERRORS as err:
        if sink.failed:
            raise
        raise catalog_db.CatalogUnavailable(str(err) or type(err).__name__) from err


@contextlib.asynccontextmanager
async def _transaction(conn: asyncpg.Connection, **options: Any) -> AsyncIterator[None]:
    """``conn.transaction(**options)`` (a savepoint inside another), except that when the block
    fails on a connection that is gone, the block's error is raised, not the ROLLBACK's.

    ``copy.copy_section`` terminates its connection when its sink raises (a cancel, a failed
    upload); the server rolled back as it closed, and the export must end with the cancel or
    the upload's error (the handler tells them apart), not with "connection is closed".
    """
    transaction = conn.transaction(**options)
    await transaction.start()
    try:
        yield
    except BaseException:
        with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            await transaction.rollback()
        raise
    await transaction.commit()


_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f-]+$")


async def _count(
    pool: asyncpg.Pool,
    snapshot: str,
    kinds: list[Kind],
    scope: catalog.Scope,
    progress: Progress,
) -> None:
    """Count the export's rows in the exported ``snapshot`` (so the same rows it writes)."""
    if not _SNAPSHOT_ID.match(snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        total = 0
        for kind in kinds:
            count = catalog.count_series if kind == "series" else catalog.count_books
            total += await count(conn, scope)
    progress.total = total


async def _write_sections(
    conn: asyncpg.Connection,
    row: exports_repo.ExportRow,
    kinds: list[Kind],
    scope: catalog.Scope,
    renderer: RenderPath,
    batch_rows: int,
    encoder: Encoder,
    write: Callable[[bytes], Any],
    progress: Progress,
) -> None:
    """The file: every section, rendered by the database or by the Python encoders."""
    if renderer == "database":
        # What the database rendering reads: the shortest exact float text and ISO dates (the
        # server defaults, but a server may be configured otherwise).
        await conn.execute("SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO'")
    await write(encoder.start())
    for kind in kinds:
        if kind == "series":
            keys, known = row.fields, field_catalog.SERIES_FIELDS
        else:
            keys, known = row.book_fields, field_catalog.BOOK_FIELDS
        cols = field_catalog.columns(keys, known)
        await write(encoder.start_section(kind, cols))
        progress.check()
        on_rows = _batch_meter(row.format, progress)
        done: int | None = 0
        if renderer == "database":
            labels = {c.key: c.label for c in cols}
            plan = render.plan(kind, keys, row.format, labels)
            done = await _render_in_database(conn, plan, scope, encoder, write, on_rows)
        if done is not None:
            batches: AsyncIterator[list[dict[str, Any]]] = (
                catalog.series_batches if kind == "series" else catalog.book_batches
            )(conn, scope, keys, batch_rows, skip=done)
            async for batch in batches:
                progress.check()
                await write(b"".join([encoder.row(r) for r in batch]))
                on_rows(len(batch))
        await write(encoder.end_section())
    await write(encoder.end())


def _batch_meter(fmt: str, progress: Progress) -> Callable[[int], None]:
    """What follows every batch written, on either path: progress, the batch metric (fetch,
    render and hand to the upload, since the previous batch; one COPY chunk is the database
    path's batch) and the cancel check (a cancel aborts a COPY at once)."""
    mark = time.perf_counter()

    def on_rows(count: int) -> None:
        nonlocal mark
        progress.advance(count)
        now = time.perf_counter()
        metrics.observe_batch(fmt, now - mark)
        mark = now
        progress.check()

    return on_rows


async def _render_in_database(
    conn: asyncpg.Connection,
    plan: copy.Plan,
    scope: catalog.Scope,
    encoder: Encoder,
    write: Callable[[bytes], Any],
    on_rows: Callable[[int], None],
) -> int | None:
    """One section rendered by PostgreSQL: None when done, else the rows written so far.

    A value the database declines (``copy.Declined``) rolls back to a savepoint, so the
    snapshot is kept, and the reference renderer goes on from the first row not yet written.
    """
    try:
        async with _transaction(conn):
            await copy.copy_section(conn, plan, scope, encoder, write, on_rows)
    except copy.Declined as declined:
        log.info("rows from %d on rendered in Python: a value the database declined", declined.rows)
        return declined.rows
    return None


async def _heartbeat(
    ctx: WorkerContext,
    row: exports_repo.ExportRow,
    progress: Progress,
    keep_alive: Callable[[], Any],
) -> None:
    """Keep the message and the row alive; notice cancel, delete and takeover."""
    interval = min(ctx.settings.heartbeat_seconds, ctx.settings.ack_wait_seconds / 3)
    while not progress.stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wake.wait(), interval)
        progress.wake.clear()
        if progress.stop.is_set():
            return
        try:
            await keep_alive()
        except Exception as err:
            log.warning("in_progress failed: %s", err, extra={"export_id": row.id})
        try:
            status = await exports_repo.heartbeat(
                ctx.pool, row.id, ctx.worker_id, progress.rows, progress.total
            )
        except Exception as err:
            log.warning("heartbeat write failed: %s", err, extra={"export_id": row.id})
            continue
        if status is None or status == "lost:cancelled":
            progress.halt(ExportCancelled)
        elif status != "running":
            progress.halt(ExportLost)


async def run(
    ctx: WorkerContext,
    row: exports_repo.ExportRow,
    progress: Progress,
    keep_alive: Callable[[], Any],
) -> exports_repo.ExportRow:
    """Produce the file of a claimed export; return the completed row.

    Any failure or cancel aborts the multipart upload, so no partial object is ever left. The
    object is made only while the row is held and still this worker's running one
    (``exports_repo.complete``): for a row deleted, cancelled or taken over meanwhile the
    upload is aborted, so no file ever outlives its record, and a takeover's file is never
    touched. The file goes through the export's compression on its way
    (``render.compression``): the size and SHA-256 recorded are the stored bytes'.
    """
    upload = object_store.StreamingUpload(
        ctx.store,
        ctx.settings.s3_bucket,
        row.object_key,
        stored_media_type(row.format, row.compression),
        part_size=ctx.settings.part_size_bytes,
    )
    stored = compression.stage(row.compression, upload.write)
    beat = asyncio.create_task(_heartbeat(ctx, row, progress, keep_alive))
    upload.start()
    try:
        count = await _render(ctx, row, progress, stored.write)
        progress.check()
        await stored.finish()
        sha256 = await upload.seal()
    except BaseException:
        await upload.abort()
        raise
    finally:
        stored.close()
        progress.stop.set()
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
    try:
        done = await exports_repo.complete(
            ctx.pool,
            row.id,
            ctx.worker_id,
            row_count=count,
            file_size_bytes=upload.size,
            sha256=sha256,
            publish=upload.complete,
        )
    finally:
        await upload.abort()  # nothing once the object was made; else no object is ever made
    if done is None:
        # Cancelled, deleted or taken over in the last moment: the file was never made.
        current = await exports_repo.get_any(ctx.pool, row.id)
        if current is not None and current.status == "running":
            raise ExportLost()
        raise ExportCancelled()
    return done


async def announce_completed(ctx: WorkerContext, row: exports_repo.ExportRow) -> None:
    """Publish the fact and schedule the expiry timer (best effort: the janitor sweeps too)."""
    if row.sha256 is None or row.row_count is None or row.completed_at is None:
        raise ValueError(f"export {row.id} is not completed")
    event = ExportCompleted(
        export_id=row.id,
        user_id=row.user_id,
        file_name=row.file_name,
        object_key=row.object_key,
        row_count=row.row_count,
        file_size_bytes=row.file_size_bytes or 0,
        sha256=row.sha256,
        completed_at=row.completed_at,
    )
    await publish_fact(ctx.broker, event, COMPLETED, row.id)
    await schedule_expiry(ctx.broker, row)


async def enforce_caps(ctx: WorkerContext) -> None:
    """Right after a completion, evict what is now over a cap (the janitor sweeps it too)."""
    try:
        await retention.enforce_caps(ctx.pool, ctx.store, ctx.broker, ctx.settings)
    except Exception as err:
        log.warning("cap enforcement deferred to the sweep: %s", err)


async def announce_failed(ctx: WorkerContext, row: exports_repo.ExportRow, error: str) -> None:
    event = ExportFailed(export_id=row.id, user_id=row.user_id, error=error)
    await publish_fact(ctx.broker, event, FAILED, row.id)
    await schedule_expiry(ctx.broker, row)


__all__ = [
    "ExportCancelled",
    "ExportInterrupted",
    "ExportLost",
    "Progress",
    "WorkerContext",
    "announce_completed",
    "announce_failed",
    "run",
]
