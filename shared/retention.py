"""Removing exports: expiry, per-user and global caps. Used by the janitor and the worker.

Each removal first deletes the row (``DELETE … RETURNING`` — of two janitors only one wins),
then the file, then announces it. A crash in between leaves at most an orphan object, which
the sweep removes.
"""

from __future__ import annotations

import logging

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from shared import metrics, object_store
from shared import repository as exports_repo
from shared.bus import publish_fact
from shared.events import ExportExpired
from shared.repository import ExportRow
from shared.settings import Settings
from shared.subjects import EXPIRED

log = logging.getLogger(__name__)


async def remove(
    pool: asyncpg.Pool, store: Minio, bucket: str, broker: NatsBroker, row: ExportRow, reason: str
) -> bool:
    """Delete one export's record and file; False if someone else already did."""
    if await exports_repo.delete_any(pool, row.id) is None:
        return False
    metrics.record_deletion(reason)
    await object_store.remove(store, bucket, row.object_key)
    log.info(
        "export removed (%s)",
        reason,
        extra={"export_id": row.id, "user_id": row.user_id, "request_id": row.request_id},
    )
    event = ExportExpired(export_id=row.id, user_id=row.user_id, reason=reason)
    await publish_fact(broker, event, EXPIRED, row.id)
    return True


async def enforce_caps(
    pool: asyncpg.Pool, store: Minio, broker: NatsBroker, settings: Settings
) -> int:
    """Evict the oldest completed exports over the per-user count and the global storage cap."""
    removed = 0
    for row in await exports_repo.over_completed_cap(pool, settings.max_completed_per_user):
        removed += await remove(pool, store, settings.s3_bucket, broker, row, "completed_cap")
    for row in await exports_repo.over_storage_cap(pool, settings.storage_cap_bytes):
        removed += await remove(pool, store, settings.s3_bucket, broker, row, "storage_cap")
    return removed
