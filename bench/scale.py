"""Scale-out: the same 1,000 series exports of one library with 1, 2 and 3 worker processes.

The exports are created first, with no worker running (they wait in JetStream); then the
workers start and the throughput is the count over the span from the first claim to the last
completion (``started_at`` / ``completed_at``, the database's clock), so process start-up does
not count. The api for this part runs with ``EXPORTS_MAX_CONCURRENT_PER_USER`` and
``EXPORTS_MAX_COMPLETED_PER_USER`` raised to the export count (one user creates them all) and
the storage cap raised, so no create is refused and no eviction runs in between.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import httpx

from bench.env import EXPORTS_URL, Services


async def _create_all(
    services: Services, user: uuid.UUID, library: uuid.UUID, count: int
) -> list[str]:
    body = {"format": "json", "exportType": "series", "libraryIds": [str(library)], "preset": "llm"}
    ids: list[str] = []
    gate = asyncio.Semaphore(16)
    async with services.async_client(user, limits=httpx.Limits(max_connections=16)) as client:

        async def one() -> None:
            async with gate:
                response = await client.post(EXPORTS_URL, json=body)
                response.raise_for_status()
                ids.append(response.json()["id"])

        await asyncio.gather(*(one() for _ in range(count)))
    return ids


async def _span(url: str, ids: list[str]) -> tuple[int, float, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'completed') AS done,"
            " extract(epoch FROM max(completed_at) - min(started_at)) AS span,"
            " count(*) FILTER (WHERE status = 'failed') AS failed"
            " FROM exports.exports WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await conn.close()
    return int(row["done"]), float(row["span"] or 0), int(row["failed"])


async def _wait_done(url: str, ids: list[str], timeout: float) -> None:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = await conn.fetchval(
                "SELECT count(*) FROM exports.exports WHERE id = ANY($1::uuid[])"
                " AND status NOT IN ('completed', 'failed', 'cancelled')",
                [uuid.UUID(i) for i in ids],
            )
            if left == 0:
                return
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    raise RuntimeError("scale-out exports did not finish in time")


def measure(
    services: Services,
    users: list[uuid.UUID],
    library: uuid.UUID,
    count: int,
    workers: tuple[int, ...] = (1, 2, 3),
) -> dict[str, Any]:
    results: dict[str, Any] = {"exports": count}
    for n, user in zip(workers, users, strict=False):
        ids = asyncio.run(_create_all(services, user, library, count))
        keys = [f"scale-worker-{n}-{i}" for i in range(n)]
        for key in keys:
            services.start("worker", key)
        try:
            asyncio.run(_wait_done(services.database_url, ids, timeout=max(300, count)))
        finally:
            for key in keys:
                services.stop(key)
        done, span, failed = asyncio.run(_span(services.database_url, ids))
        results[f"workers_{n}"] = {
            "completed": done,
            "failed": failed,
            "seconds": round(span, 2),
            "exports_per_second": round(done / span, 1) if span else None,
        }
    return results
