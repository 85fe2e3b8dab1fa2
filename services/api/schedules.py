"""Scheduled exports (SPEC §12): create, list, delete and run now. The cron rules and the
tables are ``shared.schedules``; the janitor fires the schedules.

Order of validation (first failure wins): the export request exactly as a create (SPEC §6),
then ``Invalid cron expression: <text>``, ``Unknown time zone: <name>``,
``Keep must be between 1 and 30``, the shortest interval (``EXPORTS_MIN_SCHEDULE_SECONDS``), and
last the per-user limit (409). The request is stored as validated by the create rules (unknown
keys dropped) and validated again at every run, so a library the owner lost is refused then.

Run now is an interactive request: at the concurrency limit it is refused (409) like a create;
only the timer's runs wait for a slot (the janitor re-arms them).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from faststream.nats import NatsBroker

from services.api import service
from services.api.errors import Conflict, NotFound, ValidationFailed, shown
from shared import repository as exports_repo
from shared import schedules
from shared.bus import publish_fact
from shared.dto import ExportCreate, ScheduleCreate, SchedulePublic
from shared.events import ScheduleRan
from shared.settings import Settings
from shared.subjects import SCHEDULE_RAN

log = logging.getLogger(__name__)

SCHEDULE_NOT_FOUND = "Schedule not found"
REQUEST_MESSAGE = "Request must be an export's create body (an object)"


def public(row: schedules.ScheduleRow) -> dict[str, Any]:
    return SchedulePublic(
        id=row.id,
        request=row.request,
        cron=row.cron,
        timezone=row.timezone,
        keep=row.keep,
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_export_id=row.last_export_id,
        created_at=row.created_at,
    ).model_dump(mode="json", by_alias=True)


def _stored_request(raw: dict[str, Any]) -> tuple[ExportCreate, dict[str, Any]]:
    body = ExportCreate.model_validate(raw)
    return body, body.model_dump(by_alias=True, exclude_none=True)


async def create_schedule(
    pool: asyncpg.Pool,
    broker: NatsBroker,
    settings: Settings,
    user_id: UUID,
    body: ScheduleCreate,
) -> schedules.ScheduleRow:
    if not isinstance(body.request, dict):
        raise ValidationFailed(REQUEST_MESSAGE)
    request, stored = _stored_request(body.request)
    await service.validate(pool, user_id, request)
    try:
        # The syntax first (in UTC), then the zone: each failure with its own message.
        schedules.parse_cron(body.cron, schedules.zone("UTC"), shown)
        tz = schedules.zone("UTC" if body.timezone is None else body.timezone, shown)
        cron = schedules.parse_cron(body.cron, tz, shown)
        keep = schedules.check_keep(schedules.KEEP_DEFAULT if body.keep is None else body.keep)
        now = datetime.now(UTC)
        # ~40 ms of cron iteration: off the event loop.
        await asyncio.to_thread(schedules.check_interval, cron, settings.min_schedule_seconds, now)
    except schedules.InvalidSchedule as err:
        raise ValidationFailed(str(err)) from err
    next_run_at = cron.next_after(now)
    try:
        row = await schedules.insert(pool, user_id, stored, cron, keep, next_run_at)
    except schedules.TooManySchedules as err:
        raise Conflict(str(err)) from err
    try:
        await schedules.arm(
            broker, row.id, next_run_at, spread_limit=settings.schedule_spread_seconds
        )
    except Exception as err:
        # The janitor's sweep re-arms a schedule whose due time passed with no run.
        log.warning("schedule timer not armed (the sweep will): %s", err)
    log.info("schedule created", extra={"user_id": user_id})
    return row


async def own(pool: asyncpg.Pool, schedule_id: UUID, user_id: UUID) -> schedules.ScheduleRow:
    row = await schedules.get_for_user(pool, schedule_id, user_id)
    if row is None:
        raise NotFound(SCHEDULE_NOT_FOUND)
    return row


async def delete_schedule(
    pool: asyncpg.Pool, broker: NatsBroker, user_id: UUID, schedule_id: UUID
) -> None:
    """The schedule and its timer go; its exports stay until they expire."""
    if not await schedules.delete_for_user(pool, schedule_id, user_id):
        raise NotFound(SCHEDULE_NOT_FOUND)
    await schedules.disarm(broker, schedule_id)


async def run_now(
    pool: asyncpg.Pool,
    broker: NatsBroker,
    settings: Settings,
    user_id: UUID,
    schedule_id: UUID,
    *,
    request_id: str | None = None,
    catalog_pool: asyncpg.Pool | None = None,
) -> exports_repo.ExportRow:
    """One run of the schedule, now (an ordinary create: 409 at the concurrency limit)."""
    row = await own(pool, schedule_id, user_id)
    body, _ = _stored_request(row.request)
    export = await service.create_export(
        pool,
        broker,
        settings,
        user_id,
        body,
        request_id=request_id,
        schedule_id=schedule_id,
        catalog_pool=catalog_pool,
    )
    due_at = export.created_at
    await schedules.record_run(pool, schedule_id, due_at, export.id, None)
    event = ScheduleRan(
        schedule_id=schedule_id, export_id=export.id, user_id=user_id, due_at=due_at
    )
    await publish_fact(broker, event, SCHEDULE_RAN, export.id, wait_seconds=2.0)
    return export
