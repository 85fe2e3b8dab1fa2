"""``GET /api/v1/user/exports/usage``: the caller's storage and the limits that apply."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from services.api import repository
from services.api.deps import CurrentUser, PoolDep, SettingsDep
from shared.dto import CamelModel, ErrorBody

router = APIRouter(prefix="/api/v1/user/exports", tags=["exports"])


class UsagePublic(CamelModel):
    used_bytes: int
    completed_exports: int
    active_exports: int
    max_concurrent: int
    max_completed: int
    retention_seconds: int
    storage_cap_bytes: int


@router.get("/usage", response_model=UsagePublic, responses={401: {"model": ErrorBody}})
async def get_usage(user: CurrentUser, pool: PoolDep, settings: SettingsDep) -> dict[str, int]:
    mine = await repository.user_usage(pool, user.id)
    return UsagePublic(
        **asdict(mine),
        max_concurrent=settings.max_concurrent_per_user,
        max_completed=settings.max_completed_per_user,
        retention_seconds=settings.retention_seconds,
        storage_cap_bytes=settings.storage_cap_bytes,
    ).model_dump(by_alias=True)
