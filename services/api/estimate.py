"""``POST /estimate`` (SPEC §11): what an export would hold, before anything is queued.

The body is a create body, validated by the same pass as create (``service.validate``: the
same order, the same messages); nothing is inserted and no limit applies, since nothing runs.
The counts and the sample are ``shared.estimate``'s, on the worker's own queries, read in one
``REPEATABLE READ, READ ONLY`` snapshot under a ``statement_timeout``: a catalog too large or a
database too busy to answer in time gets a 503 with a message, never a stuck request.

Everything here is read on the catalog database (``EXPORTS_CATALOG_DATABASE_URL``: a read
replica when one is set; ``shared.catalog_db``): the libraries the body names and the counts.
An estimate does not wait for a lagging replica to catch up — it is an estimate, and the
export's own count, read once the replica has caught up, is exact — and a replica that is down
answers 503 with a message.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.api.errors import Unavailable, catalog_reads
from services.api.service import validate
from shared import estimate as estimates
from shared.catalog_query import Scope
from shared.dto import ExportCreate

# The page asks again at every change of choice (debounced): an answer must come quickly or
# not at all. The counts scan the scope once, as the export's own count will.
TIMEOUT_MS = 5000
TOO_SLOW = (
    "The size of this export could not be estimated in time. You can still create it; "
    "its progress shows the row count once it runs."
)


async def estimate_export(
    pool: asyncpg.Pool, user_id: UUID, body: ExportCreate
) -> estimates.Estimate:
    """Validate ``body`` as create does, then count and size it (400 as create, 503 too slow)."""
    with catalog_reads():
        valid = await validate(pool, user_id, body)
        scope = Scope(user_id=user_id, library_ids=valid.library_ids)
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute(f"SET LOCAL statement_timeout = {int(TIMEOUT_MS)}")
            try:
                return await estimates.estimate(
                    conn,
                    scope,
                    valid.format,
                    valid.export_type,
                    valid.fields,
                    valid.book_fields,
                    valid.compression,
                )
            except asyncpg.QueryCanceledError as err:
                raise Unavailable(TOO_SLOW) from err
