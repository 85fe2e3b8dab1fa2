"""Firing the users' schedules (SPEC §12): the janitor receives a schedule's ``@at`` timer
(``export.timer.fired.schedule``), submits the run over ``export.submit`` (the api's one
create path: same validation, same limits; services never import each other) and re-arms the
timer for the next due time.

At most once per due time, whatever is redelivered, restarted or consumed by two janitors at
once: ``(schedule_id, due_at)`` is recorded in ``exports.schedule_runs`` before the submission,
and the submission's idempotency key is derived from the same pair
(``shared.schedules.run_key``), so a second attempt at the same due time gets the export the
first one made, or makes it if the first died before it could.

At the concurrency limit the run waits: the timer is re-armed for the same due time
``EXPORTS_SCHEDULE_RETRY_SECONDS`` later (a fresh ``@at``, not a nak, so no delivery count runs
out), and it runs once a slot frees. A waiting run holds no slot, so interactive requests are
never refused because of it; they simply go first.

A due time that passed while nothing ran (the janitor down for a day) runs once, late; the next
due time is the first one after now (missed ones are not run one after the other). A run whose
request is no longer valid (a library the owner lost) is skipped with a warning and the schedule
goes on.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from services.janitor.service import JanitorContext
from shared import schedules
from shared.bus import publish_fact
from shared.events import ScheduleRan, ScheduleTimerFired
from shared.subjects import SCHEDULE_RAN, SUBMIT

log = logging.getLogger(__name__)

LIMIT_CODE = "TooManyActiveExports"
SUBMIT_TIMEOUT_SECONDS = 30.0
# A due time this long past with no run recorded means its timer was lost: the sweep re-arms.
OVERDUE_GRACE_SECONDS = 120.0


async def _submit(
    ctx: JanitorContext, row: schedules.ScheduleRow, due_at: datetime
) -> dict[str, Any]:
    """The run as ``export.submit`` answers it: an export DTO, or ``{error, message}``.

    Raises when nobody answers (the timer is redelivered).
    """
    request = {
        "userId": str(row.user_id),
        "request": row.request,
        "idempotencyKey": schedules.run_key(row.id, due_at),
        "scheduleId": str(row.id),
    }
    reply = await ctx.broker.connection.request(
        SUBMIT, json.dumps(request).encode(), timeout=SUBMIT_TIMEOUT_SECONDS
    )
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def _arm(ctx: JanitorContext, schedule_id: UUID, due_at: datetime, **kw: Any) -> None:
    await schedules.arm(
        ctx.broker, schedule_id, due_at, spread_limit=ctx.settings.schedule_spread_seconds, **kw
    )


async def fire(ctx: JanitorContext, event: ScheduleTimerFired) -> str:
    """Handle one fired timer; returns what happened (for the log and the tests).

    Raises on a failure worth a redelivery (NATS or the api unreachable).
    """
    extra = {"schedule_id": str(event.schedule_id)}
    row = await schedules.get_any(ctx.pool, event.schedule_id)
    if row is None:
        return "gone"
    due_at = event.due_at.astimezone(UTC)
    claimed = await schedules.claim_run(ctx.pool, row.id, due_at)
    if claimed is False:
        return "gone"
    outcome = "ran"
    export_id: UUID | None = claimed if isinstance(claimed, UUID) else None
    if export_id is not None:
        outcome = "already ran"
    else:
        answer = await _submit(ctx, row, due_at)
        if answer.get("error") == LIMIT_CODE:
            retry_at = datetime.now(UTC) + timedelta(seconds=ctx.settings.schedule_retry_seconds)
            await _arm(ctx, row.id, due_at, fire_at=retry_at)
            log.info("scheduled run waits for a free slot", extra=extra)
            return "waiting"
        if "id" not in answer:  # an error body: {error, message} (an export has "error": null)
            log.warning(
                "scheduled run skipped: %s", answer.get("message", answer["error"]), extra=extra
            )
            outcome = "skipped"
        else:
            export_id = UUID(answer["id"])
    now = datetime.now(UTC)
    next_due = row.parsed().next_after(max(now, due_at))
    if export_id is not None:
        await schedules.record_run(ctx.pool, row.id, due_at, export_id, next_due)
        event_ran = ScheduleRan(
            schedule_id=row.id, export_id=export_id, user_id=row.user_id, due_at=due_at
        )
        await publish_fact(ctx.broker, event_ran, SCHEDULE_RAN, export_id)
    else:
        await schedules.advance(ctx.pool, row.id, next_due)
    # A schedule deleted meanwhile must not be re-armed (its subject was purged).
    if await schedules.get_any(ctx.pool, row.id) is not None:
        await _arm(ctx, row.id, next_due)
    log.info("schedule fired: %s", outcome, extra={**extra, "export_id": export_id})
    return outcome


async def rearm_overdue(ctx: JanitorContext) -> int:
    """The sweep's backstop: re-arm every schedule whose due time passed with no run (its timer
    was lost, e.g. NATS lost it or the create could not arm it). Firing twice is harmless."""
    grace = OVERDUE_GRACE_SECONDS + ctx.settings.schedule_spread_seconds
    rearmed = 0
    for row in await schedules.overdue(ctx.pool, grace):
        if row.next_run_at is None:
            continue
        await _arm(ctx, row.id, row.next_run_at, fire_at=datetime.now(UTC))
        rearmed += 1
    return rearmed
