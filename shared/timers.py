"""NATS message schedules: the per-export expiry timer."""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker, Schedule

from shared.events import ExpireTimerFired
from shared.repository import ExportRow
from shared.subjects import STREAM, TIMER_EXPIRE_FIRED, expire_schedule_subject

log = logging.getLogger(__name__)


async def schedule_expiry(broker: NatsBroker, row: ExportRow) -> bool:
    """One ``@at`` schedule per export on its own subject; a repeat replaces it.

    Best effort: if it cannot be scheduled, the janitor's periodic sweep still expires the row.
    """
    payload = ExpireTimerFired(export_id=row.id, request_id=row.request_id).model_dump(mode="json")
    try:
        await broker.publish(
            payload,
            expire_schedule_subject(row.id),
            stream=STREAM,
            schedule=Schedule(row.expires_at, TIMER_EXPIRE_FIRED),
            timeout=5.0,
        )
    except Exception as err:
        log.warning(
            "could not schedule expiry (the sweep will catch it): %s",
            err,
            extra={"export_id": row.id},
        )
        return False
    return True
