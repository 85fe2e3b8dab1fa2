"""The janitor service: FastStream app consuming the fired timers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
from faststream import AckPolicy, FastStream
from faststream.nats import NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import ConsumerConfig
from pydantic import ValidationError

from services.janitor import service
from shared import health, metrics, object_store
from shared.bus import make_broker
from shared.events import TIMER_EVENT, ExpireTimerFired, SweepTimerFired
from shared.settings import Settings
from shared.streams import exports_stream
from shared.subjects import (
    JANITOR_DURABLE,
    STREAM,
    TIMER_FIRED_ALL,
    TIMER_SWEEP_FIRED,
    TIMER_SWEEP_SCHEDULE,
    WORKERS_DURABLE,
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
    broker = make_broker(settings, "janitor", consumer=True)
    state: dict[str, service.JanitorContext] = {}
    pools: list[asyncpg.Pool] = []
    servers: list[asyncio.Server] = []
    tasks: list[asyncio.Task[None]] = []

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
                started = time.monotonic()
                report = await service.sweep(ctx)
                metrics.SWEEP_DURATION.observe(time.monotonic() - started)
                metrics.SWEEP_LAST_SUCCESS.set(time.time())
                metrics.STALE_REQUEUED.inc(report.requeued)
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
        server = await health.serve(settings, pool, broker, store)
        if server is not None:
            servers.append(server)

    async def after_startup() -> None:
        await schedule_sweep(broker, settings.sweep_interval_seconds)
        refresh = metrics.refresh_state_forever(
            pools[0],
            broker.connection.jetstream(),
            stream=STREAM,
            consumers=(WORKERS_DURABLE, JANITOR_DURABLE),
            storage_cap_bytes=settings.storage_cap_bytes,
        )
        tasks.append(asyncio.create_task(refresh))
        log.info("janitor ready (sweep every %ds)", settings.sweep_interval_seconds)

    async def after_shutdown() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in servers:
            server.close()
        for pool in pools:
            await pool.close()

    return FastStream(
        broker,
        logger=logging.getLogger("codex_exports.app"),
        on_startup=[startup],
        after_startup=[after_startup],
        after_shutdown=[after_shutdown],
    )
