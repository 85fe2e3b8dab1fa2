"""``/api/v1/user/exports/schedules`` (SPEC §12): thin handlers; logic in ``schedules.py``."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.api import schedules
from services.api.deps import BrokerDep, CatalogPoolDep, CurrentUser, PoolDep, SettingsDep
from shared import schedules as schedules_repo
from shared.dto import ErrorBody, ExportPublic, ScheduleCreate, ScheduleList, SchedulePublic

router = APIRouter(prefix="/api/v1/user/exports/schedules", tags=["schedules"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
}


@router.post("", status_code=201, response_model=SchedulePublic, responses=ERRORS)
async def create(
    body: ScheduleCreate,
    user: CurrentUser,
    pool: PoolDep,
    broker: BrokerDep,
    settings: SettingsDep,
) -> JSONResponse:
    """A schedule: ``request`` (a create body) run at every due time of ``cron`` in
    ``timezone``; the newest ``keep`` completed runs stay."""
    row = await schedules.create_schedule(pool, broker, settings, user.id, body)
    return JSONResponse(schedules.public(row), status_code=201)


@router.get("", response_model=ScheduleList, responses=ERRORS)
async def list_schedules(user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    rows = await schedules_repo.list_for_user(pool, user.id)
    return {"schedules": [schedules.public(r) for r in rows]}


@router.get("/{schedule_id}", response_model=SchedulePublic, responses=ERRORS)
async def get_one(schedule_id: UUID, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    return schedules.public(await schedules.own(pool, schedule_id, user.id))


@router.delete("/{schedule_id}", status_code=204, responses=ERRORS)
async def delete(
    schedule_id: UUID, user: CurrentUser, pool: PoolDep, broker: BrokerDep
) -> Response:
    """The schedule and its timer; its exports stay until they expire."""
    await schedules.delete_schedule(pool, broker, user.id, schedule_id)
    return Response(status_code=204)


@router.post("/{schedule_id}/run", status_code=202, response_model=ExportPublic, responses=ERRORS)
async def run(
    schedule_id: UUID,
    request: Request,
    user: CurrentUser,
    pool: PoolDep,
    catalog: CatalogPoolDep,
    broker: BrokerDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Run the schedule now: an ordinary export of its request (202, as a create)."""
    row = await schedules.run_now(
        pool,
        broker,
        settings,
        user.id,
        schedule_id,
        request_id=getattr(request.state, "request_id", None),
        catalog_pool=catalog,
    )
    return JSONResponse(row.public().model_dump(mode="json", by_alias=True), status_code=202)
