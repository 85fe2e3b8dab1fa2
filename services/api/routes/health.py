"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.api.deps import BrokerDep, PoolDep, SettingsDep, StoreDep
from shared.metrics import metrics_response

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


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this api process (keep it off the public ingress)."""
    body, content_type = metrics_response(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
