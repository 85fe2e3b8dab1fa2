"""Expiry and sweeps. Every step is idempotent: a repeated timer or a second janitor is harmless."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from services.janitor import repository
from shared import metrics, object_store, outbox, retention
from shared.repository import ExportRow, get_any
from shared.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JanitorContext:
    settings: Settings
    pool: asyncpg.Pool
    store: Minio
    broker: NatsBroker


async def remove_export(ctx: JanitorContext, row: ExportRow, reason: str) -> bool:
    return await retention.remove(
        ctx.pool, ctx.store, ctx.settings.s3_bucket, ctx.broker, row, reason
    )


async def expire(ctx: JanitorContext, export_id: UUID) -> bool:
    """The expiry timer fired: remove the export if it is due (a stale timer does nothing)."""
    row = await get_any(ctx.pool, export_id)
    if row is None or row.expires_at > datetime.now(UTC):
        return False
    return await remove_export(ctx, row, "expired")


@dataclass
class SweepReport:
    finished: int = 0  # deletions a crash left unfinished (their tombstones)
    expired: int = 0
    evicted: int = 0
    requeued: int = 0
    republished: int = 0
    orphans: int = 0
    rearmed: int = 0  # schedules whose timer was lost (services/janitor/schedules.py)


async def sweep(ctx: JanitorContext) -> SweepReport:
    """Catch whatever a timer or a worker missed."""
    report = SweepReport()
    settings = ctx.settings
    report.finished = await finish_deletions(ctx)
    for row in await repository.expired(ctx.pool):
        report.expired += await remove_export(ctx, row, "expired")
    report.evicted = await retention.enforce_caps(ctx.pool, ctx.store, ctx.broker, settings)
    for row in await repository.requeue_stale(ctx.pool, settings.stale_after_seconds):
        log.warning("re-queued a stale running export", extra={"export_id": row.id})
        report.requeued += await outbox.publish_requested(ctx.pool, ctx.broker, row)
    report.republished = await outbox.relay(ctx.pool, ctx.broker, older_than_seconds=30.0)
    report.orphans = await remove_orphans(ctx)
    return report


async def finish_deletions(ctx: JanitorContext) -> int:
    """Every deletion a crash left unfinished, at once: its file removed, its tombstone too.

    Run first in every sweep and when the janitor starts (``shared.retention``).
    """
    return await retention.finish_deletions(ctx.pool, ctx.store, ctx.settings.s3_bucket, ctx.broker)


async def remove_orphans(ctx: JanitorContext) -> int:
    """Objects with no export row, older than ``orphan_age_seconds``, and
    incomplete multipart uploads as old (a worker killed mid-upload).

    A backstop: a deleted export's file is removed through its tombstone at once, and a worker
    makes an object only while it holds a live row, so nothing on these paths leaves one.
    """
    objects = await object_store.list_objects(ctx.store, ctx.settings.s3_bucket, "exports/")
    cutoff = datetime.now(UTC) - timedelta(seconds=ctx.settings.orphan_age_seconds)
    old = [o for o in objects if o.last_modified is None or o.last_modified < cutoff]
    removed = 0
    for start in range(0, len(old), 500):
        chunk = old[start : start + 500]
        known = await repository.known_keys(ctx.pool, [o.key for o in chunk])
        for obj in chunk:
            if obj.key not in known:
                await object_store.remove(ctx.store, ctx.settings.s3_bucket, obj.key)
                removed += 1
    metrics.record_deletion("orphan_object", removed)
    aborted = await object_store.abort_stale_uploads(
        ctx.store, ctx.settings.s3_bucket, "exports/", older_than=cutoff
    )
    metrics.record_deletion("orphan_upload", aborted)
    return removed + aborted


# --- the state gauges (exports by status, backlog, storage, consumer lag) -----------------


class _JetStream(Protocol):
    async def consumer_info(self, stream: str, consumer: str) -> Any: ...


async def refresh_state(
    db: asyncpg.Pool | asyncpg.Connection,
    js: _JetStream | None,
    *,
    stream: str,
    consumers: Iterable[str],
) -> None:
    """Read the state gauges once: the database (raises on failure), then each consumer's
    info from JetStream (a missing consumer, e.g. before any worker started, is only logged)."""
    metrics.set_state(await repository.read_state(db))
    if js is None:
        return
    for consumer in consumers:
        try:
            info = await js.consumer_info(stream, consumer)
        except Exception as err:
            log.warning("could not read consumer %s of %s: %s", consumer, stream, err)
            continue
        metrics.set_consumer(
            consumer,
            pending=int(info.num_pending or 0),
            ack_pending=int(info.num_ack_pending or 0),
        )


async def refresh_state_forever(
    db: asyncpg.Pool | asyncpg.Connection,
    js: _JetStream | None,
    *,
    stream: str,
    consumers: Iterable[str],
    storage_cap_bytes: int,
    interval_seconds: float = 30.0,
) -> None:
    """Refresh the state gauges every ``interval_seconds`` until cancelled; errors are logged."""
    metrics.STORAGE_CAP_BYTES.set(storage_cap_bytes)
    names = tuple(consumers)
    while True:
        try:
            await refresh_state(db, js, stream=stream, consumers=names)
        except Exception as err:
            log.warning("could not refresh the state metrics: %s", err)
        await asyncio.sleep(interval_seconds)
