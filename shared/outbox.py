"""Publishing ``export.requested`` from the outbox row (api at create, relays later)."""

from __future__ import annotations

import logging

import asyncpg
from faststream.nats import NatsBroker

from shared import lanes
from shared import repository as exports_repo
from shared.events import ExportRequested
from shared.subjects import REQUEST_ID_HEADER, STREAM

log = logging.getLogger(__name__)


async def publish_requested(
    pool: asyncpg.Pool, broker: NatsBroker, row: exports_repo.ExportRow
) -> bool:
    """Publish the request for ``row`` to its lane's subject; on failure it stays unpublished
    for a relay.

    The message id carries the attempt, so JetStream de-duplicates repeats of one publish
    while a re-queued export (next attempt) is delivered again.
    """
    lane = lanes.lane_of(row.lane)
    event = ExportRequested(
        export_id=row.id, user_id=row.user_id, request_id=row.request_id, lane=lane.value
    )
    headers = {"Nats-Msg-Id": f"{row.id}:{row.attempt}"}
    if row.request_id:
        headers[REQUEST_ID_HEADER] = row.request_id
    try:
        await broker.publish(
            event.model_dump(mode="json"),
            lanes.subject(lane),
            headers=headers,
            stream=STREAM,
            timeout=2.0,
        )
    except Exception as err:
        log.warning("publish failed, left to the relay: %s", err, extra={"export_id": row.id})
        return False
    await exports_repo.mark_published(pool, row.id)
    return True


async def relay(pool: asyncpg.Pool, broker: NatsBroker, *, older_than_seconds: float) -> int:
    """Publish every pending row still unpublished; return how many went out."""
    sent = 0
    for row in await exports_repo.unpublished(pool, older_than_seconds=older_than_seconds):
        if not await publish_requested(pool, broker, row):
            break
        sent += 1
    return sent
