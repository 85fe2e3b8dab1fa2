"""The worker service: wires the broker, the subscribers and the clients' lifespan."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from faststream import AckPolicy, FastStream
from faststream.nats import PullSub
from faststream.nats.annotations import NatsMessage
from nats.js.api import ConsumerConfig

from services.worker import render
from services.worker.handlers import Runner
from services.worker.service import WorkerContext
from shared import health, metrics
from shared.bus import make_broker
from shared.lanes import LANE_INFO, LANES, Lane
from shared.settings import Settings
from shared.streams import ensure_consumer_replicas, ensure_stream, exports_stream
from shared.subjects import CANCEL_PREFIX

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastStream:
    """Declare the broker, the subscribers and the lifespan hooks."""
    settings = settings or Settings()
    broker = make_broker(settings, "worker", consumer=True)
    state: dict[str, Runner] = {}
    worker_id = f"{socket.gethostname()}:{os.getpid()}"

    def lane_subscriber(lane: Lane) -> None:
        """One durable pull consumer per fairness lane, with the lane's own slots
        (``max_workers``): large exports can never take the small lane's (shared/lanes.py)."""
        info = LANE_INFO[lane]

        @broker.subscriber(
            info.subject,
            stream=exports_stream(settings.stream_replicas),
            durable=info.durable,
            pull_sub=PullSub(batch_size=1, timeout=1.0),
            # Attempts are counted on the row (claims), so the consumer itself never gives up:
            # that keeps a crash-looping export visible to the handler, which fails it.
            config=ConsumerConfig(
                ack_wait=settings.ack_wait_seconds,
                max_deliver=-1,
                num_replicas=settings.stream_replicas,
            ),
            ack_policy=AckPolicy.MANUAL,
            max_workers=info.slots(settings),
            title=info.subject,
            description=info.description,
        )
        async def on_requested(msg: NatsMessage) -> None:
            await state["runner"].handle(msg.body, msg, lane)

    for lane in LANES:
        lane_subscriber(lane)

    @broker.subscriber(
        f"{CANCEL_PREFIX}.*", title="export.cancel.*", description="Stop a running export"
    )
    async def on_cancel(msg: NatsMessage) -> None:
        try:
            export_id = UUID(msg.raw_message.subject.rsplit(".", 1)[-1])
        except ValueError:
            log.warning("ignored cancel on a malformed subject: %s", msg.raw_message.subject)
            return
        if "runner" in state:
            await state["runner"].cancel(export_id)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        """The clients that live as long as the app; closed when it stops."""
        slots = sum(LANE_INFO[lane].slots(settings) for lane in LANES)
        pool_size = slots * 2 + 2
        # The catalog reads take two connections per export (its snapshot and the count).
        catalog_size = slots * 2
        # The stream and this service's consumers, as configured, before any subscriber starts.
        connection = await broker.connect()
        await ensure_stream(connection, settings.stream_replicas)
        for lane in LANES:
            await ensure_consumer_replicas(
                connection.jetstream(), LANE_INFO[lane].durable, settings.stream_replicas
            )
        async with health.consumer_clients(
            settings, broker, pool_size=pool_size, catalog_pool_size=catalog_size
        ) as (pool, store, catalog):
            state["runner"] = Runner(
                WorkerContext(settings, pool, store, broker, worker_id, catalog_pool=catalog)
            )
            abandoned = await asyncio.to_thread(render.remove_abandoned_files)
            if abandoned:
                log.info("removed %d scratch directories of exports that died", abandoned)
            metrics.WORKER_CONCURRENCY.set(settings.worker_concurrency)
            for lane in LANES:
                metrics.WORKER_SLOTS.labels(lane.value).set(LANE_INFO[lane].slots(settings))
            log.info(
                "worker %s ready (concurrency %d, small lane slots %d)",
                worker_id,
                settings.worker_concurrency,
                settings.worker_small_slots,
            )
            yield

    async def on_shutdown() -> None:
        # Before the broker stops: running exports give their messages back at once.
        if "runner" in state:
            state["runner"].interrupt_all()

    return FastStream(
        broker,
        logger=logging.getLogger("codex_exports.app"),
        lifespan=lifespan,
        on_shutdown=[on_shutdown],
    )
