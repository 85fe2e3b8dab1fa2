"""What the janitor receives: fired timers, each validated, handled and acknowledged here."""

from __future__ import annotations

import logging
import time

from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from services.janitor import schedules, service
from shared import metrics
from shared.events import TIMER_EVENT, ExpireTimerFired, ScheduleTimerFired

log = logging.getLogger(__name__)
RETRY_DELAY_SECONDS = 10.0


async def on_timer(ctx: service.JanitorContext, msg: NatsMessage) -> None:
    """An expiry timer or the sweep timer fired.

    A malformed event is rejected and logged (never redelivered, never a crash); a failure is
    retried after a delay; anything else is acknowledged once handled.
    """
    try:
        event = TIMER_EVENT.validate_json(msg.body)
    except ValidationError as err:
        log.warning(
            "rejected malformed timer event on %s (%d errors)",
            msg.raw_message.subject,
            err.error_count(),
        )
        await msg.reject()
        return
    try:
        if isinstance(event, ExpireTimerFired):
            await service.expire(ctx, event.export_id)
        elif isinstance(event, ScheduleTimerFired):
            await schedules.fire(ctx, event)
        else:
            started = time.monotonic()
            report = await service.sweep(ctx)
            report.rearmed = await schedules.rearm_overdue(ctx)
            metrics.SWEEP_DURATION.observe(time.monotonic() - started)
            metrics.SWEEP_LAST_SUCCESS.set(time.time())
            metrics.STALE_REQUEUED.inc(report.requeued)
            log.info("sweep done: %s", report)
    except Exception as err:
        log.warning("timer handling failed, will retry: %s", err)
        await msg.nack(delay=RETRY_DELAY_SECONDS)
        return
    await msg.ack()
