"""The janitor service: FastStream app consuming the fired timers."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from faststream import AckPolicy, FastStream
from faststream.nats import NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import ConsumerConfig
from pydantic import ValidationError

from services.janitor import service
from shared import object_store
from shared.events import TIMER_EVENT, ExpireTimerFired, SweepTimerFired
from shared.settings import Settings
from shared.streams import exports_stream
from shared.subjects import (
    JANITOR_DURABLE,
    STREAM,
    TIMER_FIRED_ALL,
    TIMER_SWEEP_FIRED,
    TIMER_SWEEP_SCHEDULE,
)

log = logging.getLogger(__name__)


async def schedule_sweep(broker: NatsBroker, interval_seconds: int) -> None:
    """(Re)declare the periodic sweep: one ``@every`` schedule on its own subject."""
    await broker.publish(
        SweepTimerFired().model_dump(mode="json"),
        TIMER_SWEEP_SCHEDULE,
        headers={
            "Nats-Schedule": f"@every {interval_seconds}s",
            "Nats-Schedule-Target": TIMER_SWEEP_FIRED,
        },
        stream=STREAM,
        timeout=5.0,
    )


def create_app(settings: Settings | None = None) -> FastStream:
    settings = settings or Settings()
    broker = NatsBroker(
        settings.nats_url,
        logger=logging.getLogger("codex_exports.bus"),
        connect_timeout=5,
        max_reconnect_attempts=-1,
        graceful_timeout=20.0,
    )
    state: dict[str, service.JanitorContext] = {}
    pools: list[asyncpg.Pool] = []

    @broker.subscriber(
        TIMER_FIRED_ALL,
        stream=exports_stream(),
        durable=JANITOR_DURABLE,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(ack_wait=120.0, max_deliver=10),
        ack_policy=AckPolicy.MANUAL,
        title="export.timer.fired.>",
        description="Expire one export, or sweep",
    )
    async def on_timer(msg: NatsMessage) -> None:
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
        ctx = state["ctx"]
        try:
            if isinstance(event, ExpireTimerFired):
                await service.expire(ctx, event.export_id)
            else:
                report = await service.sweep(ctx)
                log.info("sweep done: %s", report)
        except Exception as err:
            log.warning("timer handling failed, will retry: %s", err)
            await msg.nack(delay=10.0)
            return
        await msg.ack()

    async def startup() -> None:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
        pools.append(pool)
        store = object_store.make_client(settings)
        await asyncio.to_thread(
            object_store.ensure_bucket,
            store,
            settings.s3_bucket,
            retention_seconds=settings.retention_seconds,
        )
        state["ctx"] = service.JanitorContext(settings, pool, store, broker)

    async def after_startup() -> None:
        await schedule_sweep(broker, settings.sweep_interval_seconds)
        log.info("janitor ready (sweep every %ds)", settings.sweep_interval_seconds)

    async def after_shutdown() -> None:
        for pool in pools:
            await pool.close()

    return FastStream(
        broker,
        logger=logging.getLogger("codex_exports.app"),
        on_startup=[startup],
        after_startup=[after_startup],
        after_shutdown=[after_shutdown],
    )
