"""Expiry and sweeps. Every step is idempotent: a repeated timer or a second janitor is harmless."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from services.janitor import repository
from shared import object_store, outbox
from shared.events import ExportExpired
from shared.repository import ExportRow, get_any
from shared.settings import Settings
from shared.subjects import EXPIRED, STREAM

log = logging.getLogger(__name__)
ORPHAN_AGE = timedelta(hours=1)


@dataclass(frozen=True)
class JanitorContext:
    settings: Settings
    pool: asyncpg.Pool
    store: Minio
    broker: NatsBroker


async def remove_export(ctx: JanitorContext, row: ExportRow, reason: str) -> bool:
    """Delete the file, then the record; announce it. Safe to repeat."""
    await object_store.remove(ctx.store, ctx.settings.s3_bucket, row.object_key)
    deleted = await repository.delete_row(ctx.pool, row.id)
    if deleted is None:
        return False
    log.info("export removed (%s)", reason, extra={"export_id": row.id, "user_id": row.user_id})
    event = ExportExpired(export_id=row.id, user_id=row.user_id, reason=reason)
    try:
        await ctx.broker.publish(
            event.model_dump(mode="json"),
            EXPIRED,
            headers={"Nats-Msg-Id": f"{EXPIRED}:{row.id}"},
            stream=STREAM,
            timeout=5.0,
        )
    except Exception as err:
        log.warning("could not publish %s: %s", EXPIRED, err, extra={"export_id": row.id})
    return True


async def expire(ctx: JanitorContext, export_id: UUID) -> bool:
    """The expiry timer fired: remove the export if it is due (a stale timer does nothing)."""
    row = await get_any(ctx.pool, export_id)
    if row is None or row.expires_at > datetime.now(UTC):
        return False
    return await remove_export(ctx, row, "expired")


@dataclass
class SweepReport:
    expired: int = 0
    evicted: int = 0
    requeued: int = 0
    republished: int = 0
    orphans: int = 0


async def sweep(ctx: JanitorContext) -> SweepReport:
    """Catch whatever a timer or a worker missed."""
    report = SweepReport()
    settings = ctx.settings
    for row in await repository.expired(ctx.pool):
        report.expired += await remove_export(ctx, row, "expired")
    for row in await repository.over_completed_cap(ctx.pool, settings.max_completed_per_user):
        report.evicted += await remove_export(ctx, row, "completed_cap")
    for row in await repository.over_storage_cap(ctx.pool, settings.storage_cap_bytes):
        report.evicted += await remove_export(ctx, row, "storage_cap")
    for row in await repository.requeue_stale(ctx.pool, settings.stale_after_seconds):
        log.warning("re-queued a stale running export", extra={"export_id": row.id})
        report.requeued += await outbox.publish_requested(ctx.pool, ctx.broker, row)
    report.republished = await outbox.relay(ctx.pool, ctx.broker, older_than_seconds=30.0)
    report.orphans = await remove_orphans(ctx)
    return report


async def remove_orphans(ctx: JanitorContext) -> int:
    """Objects with no export row, older than an hour (a crash between upload and record)."""
    objects = await object_store.list_objects(ctx.store, ctx.settings.s3_bucket, "exports/")
    cutoff = datetime.now(UTC) - ORPHAN_AGE
    old = [o for o in objects if o.last_modified is None or o.last_modified < cutoff]
    removed = 0
    for start in range(0, len(old), 500):
        chunk = old[start : start + 500]
        known = await repository.known_keys(ctx.pool, [o.key for o in chunk])
        for obj in chunk:
            if obj.key not in known:
                await object_store.remove(ctx.store, ctx.settings.s3_bucket, obj.key)
                removed += 1
    removed += await object_store.abort_stale_uploads(
        ctx.store, ctx.settings.s3_bucket, "exports/", older_than=cutoff
    )
    return removed
