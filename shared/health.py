"""Readiness of a service: its database, NATS and object store, probed the same way everywhere."""

from __future__ import annotations

import asyncio

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from shared import metrics
from shared.settings import Settings


def readiness(
    pool: asyncpg.Pool, broker: NatsBroker, store: Minio, bucket: str
) -> metrics.ReadyCheck:
    """A check naming the parts that are unreachable (empty when ready)."""
    return metrics.check_all(
        {
            "database": lambda: pool.fetchval("SELECT 1"),
            "nats": lambda: broker.ping(timeout=2.0),
            "object store": lambda: asyncio.to_thread(store.bucket_exists, bucket),
        }
    )


async def serve(
    settings: Settings, pool: asyncpg.Pool, broker: NatsBroker, store: Minio
) -> asyncio.Server | None:
    """Worker and janitor: ``/metrics``, ``/healthz`` and ``/readyz`` on ``EXPORTS_METRICS_PORT``
    (None when it is 0 or taken)."""
    if not settings.metrics_port:
        return None
    return await metrics.serve_health_and_metrics(
        settings.metrics_port,
        readiness(pool, broker, store, settings.s3_bucket),
        host=settings.api_host,
    )
