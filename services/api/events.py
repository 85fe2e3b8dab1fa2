"""Server-sent events of one export's status and progress."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
from fastapi import Request

from shared import repository as exports_repo

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0


async def progress_events(
    request: Request, pool: asyncpg.Pool, export_id: UUID, user_id: UUID
) -> AsyncIterator[str]:
    """Emit ``status`` events when the export changes; end with it (or ``deleted``)."""
    last = ""
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        row = await exports_repo.get_for_user(pool, export_id, user_id)
        if row is None:
            yield 'event: deleted\ndata: {"message": "Export not found"}\n\n'
            return
        payload = json.dumps(row.public().model_dump(mode="json", by_alias=True))
        if payload != last:
            last = payload
            quiet_since = time.monotonic()
            yield f"event: status\ndata: {payload}\n\n"
        elif time.monotonic() - quiet_since > KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        if row.status in exports_repo.ENDED:
            return
        await asyncio.sleep(POLL_SECONDS)
