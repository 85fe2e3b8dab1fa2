"""Export creation: one ordered validation pass (first failure wins), then the outbox insert.

The HTTP API and the ``export.submit`` bus intake both call :func:`create_export`, so other
services get exactly the same validation, limits and messages.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from services.api import repository
from services.api.errors import (
    EXPORT_NOT_FOUND,
    Conflict,
    LimitReached,
    NotFound,
    ValidationFailed,
    shown,
)
from shared import fields as catalog
from shared import lanes, metrics, retention
from shared import repository as exports_repo
from shared.bus import publish_fact
from shared.catalog_query import Scope
from shared.dto import ExportCreate
from shared.events import ExportCancelled
from shared.formats import (
    COMPRESSION_MESSAGE,
    COMPRESSIONS,
    EXPORT_TYPE_MESSAGE,
    FORMAT_MESSAGE,
    FORMATS,
    Compression,
    ExportFormat,
    ExportType,
    both_unsupported_message,
)
from shared.naming import export_file_name, object_key
from shared.outbox import publish_requested
from shared.settings import Settings
from shared.subjects import CANCELLED, cancel_subject
from shared.timers import schedule_expiry

log = logging.getLogger(__name__)

PRESETS = {
    "llm": (catalog.LLM_PRESET_SERIES, catalog.LLM_PRESET_BOOKS),
    "all": (catalog.ALL_SERIES, catalog.ALL_BOOKS),
}
MAX_IDEMPOTENCY_KEY = 200
# Compared by equality (a tuple, not a set): the body's values are anything a client sent,
# lists included, until they are typed.
FORMAT_KEYS = tuple(f.value for f in FORMATS)
TYPE_KEYS = tuple(t.value for t in ExportType)
COMPRESSION_KEYS = tuple(c.value for c in COMPRESSIONS)


@dataclass(frozen=True, slots=True)
class ValidRequest:
    format: ExportFormat
    export_type: ExportType
    library_ids: list[UUID]
    library_names: list[str]
    fields: list[str]
    book_fields: list[str]
    compression: Compression = Compression.NONE


def _keys(value: Any, what: str) -> list[str] | None:
    """Field keys as given: None when absent; a non-list is refused with its own message."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValidationFailed(f"{what.capitalize()} fields must be a list of field keys")
    return [v if isinstance(v, str) else json.dumps(v) for v in value]


def _check_fields(keys: list[str] | None, known: dict[str, catalog.Field], what: str) -> list[str]:
    if not keys:
        raise ValidationFailed(f"At least one {what} field must be selected")
    for key in keys:
        if key not in known:
            raise ValidationFailed(f"Unknown {what} field: {shown(key)}")
    return keys


async def validate(pool: asyncpg.Pool, user_id: UUID, body: ExportCreate) -> ValidRequest:
    """SPEC §6 validation, in its order; raises :class:`ValidationFailed` on the first failure."""
    if body.format not in FORMAT_KEYS:
        raise ValidationFailed(FORMAT_MESSAGE)
    fmt = ExportFormat(body.format)
    given_type = ExportType.SERIES.value if body.export_type is None else body.export_type
    if given_type not in TYPE_KEYS:
        raise ValidationFailed(EXPORT_TYPE_MESSAGE)
    export_type = ExportType(given_type)
    if export_type == ExportType.BOTH and not FORMATS[fmt].supports_both:
        raise ValidationFailed(both_unsupported_message(fmt))
    given_compression = Compression.NONE.value if body.compression is None else body.compression
    if given_compression not in COMPRESSION_KEYS:
        raise ValidationFailed(COMPRESSION_MESSAGE)

    raw_ids = body.library_ids
    if not isinstance(raw_ids, list) or not raw_ids:
        raise ValidationFailed("At least one library must be selected")
    parsed: list[tuple[str, UUID | None]] = []
    for raw in raw_ids:
        try:
            parsed.append((str(raw), UUID(str(raw)) if isinstance(raw, str) else None))
        except ValueError:
            parsed.append((str(raw), None))
    readable = await repository.readable_by_id(pool, user_id, [u for _, u in parsed if u])
    library_ids: list[UUID] = []
    for given, lib in parsed:
        # A library the caller may not read is indistinguishable from one that does not exist.
        if lib is None or lib not in readable:
            raise ValidationFailed(f"Unknown library: {shown(given)}")
        if lib not in library_ids:
            library_ids.append(lib)

    series_keys = _keys(body.fields, "series")
    book_keys = _keys(body.book_fields, "book")
    if body.preset is not None:
        # A list or object is no preset (and cannot be looked up in a dict).
        if not isinstance(body.preset, str) or body.preset not in PRESETS:
            raise ValidationFailed("Preset must be 'llm' or 'all'")
        preset_series, preset_books = PRESETS[body.preset]
        # The preset fills the lists the request leaves empty; explicit lists win.
        series_keys = series_keys or list(preset_series)
        book_keys = book_keys or list(preset_books)

    chosen_series: list[str] = []
    chosen_books: list[str] = []
    if export_type in (ExportType.SERIES, ExportType.BOTH):
        chosen_series = catalog.in_catalog_order(
            _check_fields(series_keys, catalog.SERIES_BY_KEY, "series"), catalog.SERIES_FIELDS
        )
    if export_type in (ExportType.BOOKS, ExportType.BOTH):
        chosen_books = catalog.in_catalog_order(
            _check_fields(book_keys, catalog.BOOKS_BY_KEY, "book"), catalog.BOOK_FIELDS
        )
    return ValidRequest(
        format=fmt,
        export_type=export_type,
        library_ids=library_ids,
        library_names=[readable[i] for i in library_ids],
        fields=chosen_series,
        book_fields=chosen_books,
        compression=Compression(given_compression),
    )


async def create_export(
    pool: asyncpg.Pool,
    broker: NatsBroker,
    settings: Settings,
    user_id: UUID,
    body: ExportCreate,
    *,
    idempotency_key: str | None = None,
    request_id: str | None = None,
    schedule_id: UUID | None = None,
    catalog_pool: asyncpg.Pool | None = None,
) -> exports_repo.ExportRow:
    """Validate, insert under the per-user limit (the outbox row), then publish.

    ``schedule_id``: the export is a run of that schedule (the caller checked it is the user's).
    ``catalog_pool``: where the lane's row count reads the catalog (a read replica, if any;
    default ``pool``).
    """
    try:
        row, created = await _insert(
            pool, settings, user_id, body, idempotency_key, request_id, schedule_id, catalog_pool
        )
    except (ValidationFailed, LimitReached) as err:
        result = "limited" if isinstance(err, LimitReached) else "invalid"
        metrics.record_created(body.export_type or "series", body.format, result)
        raise
    metrics.record_created(row.export_type, row.format, "accepted" if created else "replayed")
    if created:
        metrics.record_lane(row.lane)
    log.info(
        "export created" if created else "export replayed (Idempotency-Key)",
        extra={
            "export_id": row.id,
            "user_id": user_id,
            "request_id": row.request_id,
            "lane": row.lane,
        },
    )
    if created:
        await publish_requested(pool, broker, row)
    return row


async def _insert(
    pool: asyncpg.Pool,
    settings: Settings,
    user_id: UUID,
    body: ExportCreate,
    idempotency_key: str | None,
    request_id: str | None,
    schedule_id: UUID | None = None,
    catalog_pool: asyncpg.Pool | None = None,
) -> tuple[exports_repo.ExportRow, bool]:
    """Validate and insert the row, or find the one the Idempotency-Key names (then False)."""
    if idempotency_key is not None and not (
        0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY and idempotency_key.isprintable()
    ):
        # isprintable() also refuses NUL, which PostgreSQL text cannot hold.
        raise ValidationFailed(
            f"Idempotency-Key must be between 1 and {MAX_IDEMPOTENCY_KEY} printable characters"
        )
    valid = await validate(pool, user_id, body)
    # Its fairness lane, from its row count (bounded): shared/lanes.py.
    lane, _rows = await lanes.classify(
        catalog_pool or pool,
        settings,
        Scope(user_id=user_id, library_ids=valid.library_ids),
        valid.export_type,
    )
    export_id = uuid.uuid4()
    created_at = datetime.now(UTC)
    file_name = export_file_name(
        valid.export_type, valid.format, valid.library_names, created_at, valid.compression
    )
    new = exports_repo.NewExport(
        id=export_id,
        user_id=user_id,
        format=valid.format,
        export_type=valid.export_type,
        library_ids=valid.library_ids,
        library_names=valid.library_names,
        fields=valid.fields,
        book_fields=valid.book_fields,
        file_name=file_name,
        object_key=object_key(user_id, export_id, file_name),
        created_at=created_at,
        expires_at=created_at + timedelta(seconds=settings.retention_seconds),
        request_id=request_id,
        compression=valid.compression,
        schedule_id=schedule_id,
        lane=lane.value,
    )
    async with pool.acquire() as conn:
        try:
            row, created = await exports_repo.insert_export(
                conn,
                new,
                max_active=settings.max_concurrent_per_user,
                idempotency_key=idempotency_key,
            )
        except exports_repo.ConcurrencyLimitReached as err:
            raise LimitReached(str(err)) from err
    return row, created


async def signal_cancel(broker: NatsBroker, export_id: UUID) -> None:
    """Tell the worker running the export to stop now (core NATS; a lost signal only delays it,
    since the worker re-reads the row's status between batches)."""
    try:
        await broker.publish(b"", cancel_subject(export_id), timeout=2.0)
    except Exception as err:
        log.warning("cancel signal not sent (the worker will notice the status): %s", err)


async def cancel_export(
    pool: asyncpg.Pool, broker: NatsBroker, user_id: UUID, export_id: UUID
) -> exports_repo.ExportRow:
    """A pending or running export becomes ``cancelled``; an ended one is a conflict."""
    row = await exports_repo.cancel_for_user(pool, export_id, user_id)
    if row is None:
        existing = await exports_repo.get_for_user(pool, export_id, user_id)
        if existing is None:
            raise NotFound(EXPORT_NOT_FOUND)
        raise Conflict(f"Export cannot be cancelled (status: {existing.status})")
    await signal_cancel(broker, export_id)
    event = ExportCancelled(export_id=row.id, user_id=row.user_id)
    await publish_fact(broker, event, CANCELLED, row.id, wait_seconds=2.0)
    await schedule_expiry(broker, row)
    return row


async def delete_export(
    pool: asyncpg.Pool,
    broker: NatsBroker,
    store: Minio,
    bucket: str,
    user_id: UUID,
    export_id: UUID,
) -> None:
    """Delete the record and the file (``shared.retention``: crash-safe), and stop a run.

    A worker still running it finds its row gone and never makes the file.
    """
    row = await retention.delete_for_user(pool, store, bucket, export_id, user_id)
    if row is None:
        raise NotFound(EXPORT_NOT_FOUND)
    if row.status in exports_repo.ACTIVE:
        await signal_cancel(broker, export_id)
