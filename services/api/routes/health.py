"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.deps import BrokerDep, PoolDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(
    pool: PoolDep, broker: BrokerDep, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    failing: list[str] = []
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), 2.0)
    except Exception:
        failing.append("database")
    try:
        if not await asyncio.wait_for(broker.ping(timeout=2.0), 2.5):
            failing.append("nats")
    except Exception:
        failing.append("nats")
    try:
        await asyncio.wait_for(asyncio.to_thread(store.bucket_exists, settings.s3_bucket), 3.0)
    except Exception:
        failing.append("object store")
    if failing:
        return JSONResponse(
            {
                "status": "unavailable",
                "failing": failing,
                "message": "Not ready: " + ", ".join(failing) + " unreachable",
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready"})
