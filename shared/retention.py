"""Removing exports — expiry, the per-user and global caps, the owner's delete — crash-safe.

Used by the api (the owner's delete), the worker (the caps, right after a completion) and the
janitor (expiry, the caps, and finishing what a crash interrupted). Every deletion goes:

1. one statement deletes the row and inserts the tombstone of its object key
   (``exports.deletions``, ``shared.repository``) — of two deleters only one gets the row;
2. the object is removed (idempotent);
3. the tombstone is removed, and the deletion counted under its reason (once: by whoever
   removes the tombstone).

A process killed anywhere leaves either the row (nothing was deleted), or the tombstone, which
the next sweep — and the janitor's start-up — finishes at once (:func:`finish_deletions`, no age
grace), or nothing. No object can appear after the tombstone for its row: the worker completes
its upload only while it holds the row (``shared.repository.complete``), and aborts it when the
row is gone. The orphan sweep (objects with no row, older than ``orphan_age_seconds``) stays as
the backstop for anything made outside these paths.

Facts: ``export.expired`` is published before the tombstone is removed, so an interrupted
deletion still announces it (JetStream drops a repeat within its duplicate window); the owner's
delete announces nothing, as before.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from shared import metrics, object_store
from shared import repository as exports_repo
from shared.bus import publish_fact
from shared.events import ExportExpired
from shared.repository import Deletion, ExportRow
from shared.settings import Settings
from shared.subjects import EXPIRED

log = logging.getLogger(__name__)

#: The reason of the owner's delete (no ``export.expired`` fact for it).
DELETED = "deleted"


async def _finish(
    pool: asyncpg.Pool, store: Minio, bucket: str, broker: NatsBroker | None, tomb: Deletion
) -> bool:
    """Steps 2 and 3 of a deletion; False if another finisher removed the tombstone first.

    Raises ``ObjectStoreError`` (the tombstone stays for the next attempt).
    """
    await object_store.remove(store, bucket, tomb.object_key)
    if broker is not None and tomb.reason != DELETED:
        event = ExportExpired(export_id=tomb.export_id, user_id=tomb.user_id, reason=tomb.reason)
        await publish_fact(broker, event, EXPIRED, tomb.export_id)
    reason = await exports_repo.drop_deletion(pool, tomb.object_key)
    if reason is None:
        return False
    metrics.record_deletion(reason)
    return True


def _tombstone(row: ExportRow, reason: str) -> Deletion:
    """The tombstone the delete statement just wrote for ``row``."""
    return Deletion(row.object_key, row.id, row.user_id, reason, datetime.now(UTC))


async def _finish_now(
    pool: asyncpg.Pool,
    store: Minio,
    bucket: str,
    broker: NatsBroker | None,
    row: ExportRow,
    reason: str,
) -> None:
    """Finish our own deletion at once; if the store fails, the sweep finishes it."""
    try:
        await _finish(pool, store, bucket, broker, _tombstone(row, reason))
    except object_store.ObjectStoreError as err:
        log.warning(
            "export %s removed; its file is left to the sweep: %s",
            reason,
            err,
            extra={"export_id": row.id, "user_id": row.user_id},
        )


async def remove(
    pool: asyncpg.Pool,
    store: Minio,
    bucket: str,
    broker: NatsBroker | None,
    row: ExportRow,
    reason: str,
) -> bool:
    """Delete one export's record and file (expiry, caps); False if someone else already did.

    ``export.expired`` is announced on ``broker`` (None: not announced).
    """
    gone = await exports_repo.delete_any(pool, row.id, reason)
    if gone is None:
        return False
    await _finish_now(pool, store, bucket, broker, gone, reason)
    log.info(
        "export removed (%s)",
        reason,
        extra={"export_id": gone.id, "user_id": gone.user_id, "request_id": gone.request_id},
    )
    return True


async def delete_for_user(
    pool: asyncpg.Pool, store: Minio, bucket: str, export_id: UUID, user_id: UUID
) -> ExportRow | None:
    """The owner's delete: record and file; the deleted row, or None if it was not theirs.

    Once the row is gone the deletion is certain: a store that fails now only delays the
    file's removal until the sweep (the caller answers as for any delete).
    """
    gone = await exports_repo.delete_for_user(pool, export_id, user_id, DELETED)
    if gone is None:
        return None
    await _finish_now(pool, store, bucket, None, gone, DELETED)
    return gone


async def finish_deletions(
    pool: asyncpg.Pool, store: Minio, bucket: str, broker: NatsBroker | None
) -> int:
    """Finish every tombstone there is, at once (no age grace); return how many this call did.

    Each was left by a deletion that a crash (or a failing store) interrupted, or belongs to one
    in progress elsewhere; finishing it twice is harmless. Raises ``ObjectStoreError`` on the
    first failure (what is left stays for the next sweep).
    """
    finished = 0
    seen: set[str] = set()
    while True:
        batch = [t for t in await exports_repo.pending_deletions(pool) if t.object_key not in seen]
        if not batch:
            return finished
        for tomb in batch:
            seen.add(tomb.object_key)
            if await _finish(pool, store, bucket, broker, tomb):
                finished += 1
                log.warning(
                    "finished a deletion left unfinished (%s)",
                    tomb.reason,
                    extra={"export_id": tomb.export_id, "user_id": tomb.user_id},
                )


async def enforce_caps(
    pool: asyncpg.Pool, store: Minio, broker: NatsBroker, settings: Settings
) -> int:
    """Evict the oldest completed exports over the per-user count and the global storage cap,
    and each schedule's runs beyond its ``keep`` (deleted as if by the owner, SPEC §12; those
    runs are not counted in the per-user count)."""
    removed = 0
    for row in await exports_repo.over_schedule_keep(pool):
        removed += (
            await delete_for_user(pool, store, settings.s3_bucket, row.id, row.user_id) is not None
        )
    for row in await exports_repo.over_completed_cap(pool, settings.max_completed_per_user):
        removed += await remove(pool, store, settings.s3_bucket, broker, row, "completed_cap")
    for row in await exports_repo.over_storage_cap(pool, settings.storage_cap_bytes):
        removed += await remove(pool, store, settings.s3_bucket, broker, row, "storage_cap")
    return removed
