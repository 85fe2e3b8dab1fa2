"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from services.api.deps import BrokerDep, CatalogPoolDep, PoolDep, SettingsDep, StoreDep
from shared import health
from shared.metrics import metrics_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(
    pool: PoolDep,
    catalog: CatalogPoolDep,
    broker: BrokerDep,
    store: StoreDep,
    settings: SettingsDep,
) -> JSONResponse:
    failing = await health.readiness(pool, broker, store, settings.s3_bucket, catalog)()
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
