"""The janitor service: wires the broker, the timer subscriber and the clients' lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream import AckPolicy, FastStream
from faststream.nats import NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import ConsumerConfig

from services.janitor import handlers, service
from shared import health
from shared.bus import make_broker
from shared.events import ScheduleRan, SweepTimerFired
from shared.settings import Settings
from shared.streams import ensure_consumer_replicas, ensure_stream, exports_stream
from shared.subjects import (
    JANITOR_DURABLE,
    SCHEDULE_RAN,
    SMALL_WORKERS_DURABLE,
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

    @broker.subscriber(
        TIMER_FIRED_ALL,
        stream=exports_stream(settings.stream_replicas),
        durable=JANITOR_DURABLE,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        config=ConsumerConfig(
            ack_wait=120.0, max_deliver=10, num_replicas=settings.stream_replicas
        ),
        ack_policy=AckPolicy.MANUAL,
        title="export.timer.fired.>",
        description="Expire one export, or sweep",
    )
    async def on_timer(msg: NatsMessage) -> None:
        await handlers.on_timer(state["ctx"], msg)

    # Documented here (AsyncAPI); published with shared.bus.publish_fact by the janitor after a
    # scheduled run and by the api after a run now.
    broker.publisher(
        SCHEDULE_RAN,
        stream=STREAM,
        title="export.schedule.ran",
        description="Fact: a schedule's run was submitted (schedule id, export id, due time)",
        schema=ScheduleRan,
    )

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        """The clients that live as long as the app; closed when it stops."""
        # The stream and this service's consumer, as configured, before any subscriber starts.
        connection = await broker.connect()
        await ensure_stream(connection, settings.stream_replicas)
        await ensure_consumer_replicas(
            connection.jetstream(), JANITOR_DURABLE, settings.stream_replicas
        )
        async with health.consumer_clients(settings, broker, pool_size=4) as (pool, store, _):
            state["ctx"] = service.JanitorContext(settings, pool, store, broker)
            yield

    tasks: list[asyncio.Task[None]] = []

    async def after_startup() -> None:
        # Needs the connected broker: the sweep's schedule and the state gauges' refresh.
        await schedule_sweep(broker, settings.sweep_interval_seconds)
        # What a crash left half deleted is finished now, not at the first sweep.
        try:
            finished = await service.finish_deletions(state["ctx"])
        except Exception as err:
            log.warning("unfinished deletions left to the sweep: %s", err)
        else:
            if finished:
                log.info("finished %d deletions left unfinished", finished)
        refresh = service.refresh_state_forever(
            state["ctx"].pool,
            broker.connection.jetstream(),
            stream=STREAM,
            consumers=(WORKERS_DURABLE, SMALL_WORKERS_DURABLE, JANITOR_DURABLE),
            storage_cap_bytes=settings.storage_cap_bytes,
        )
        tasks.append(asyncio.create_task(refresh))
        log.info("janitor ready (sweep every %ds)", settings.sweep_interval_seconds)

    async def on_shutdown() -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return FastStream(
        broker,
        logger=logging.getLogger("codex_exports.app"),
        lifespan=lifespan,
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
    )
