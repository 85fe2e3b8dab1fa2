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
from shared.settings import Settings
from shared.streams import ensure_consumer_replicas, ensure_stream, exports_stream
from shared.subjects import CANCEL_PREFIX, REQUESTED, WORKERS_DURABLE

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastStream:
    """Declare the broker, the subscribers and the lifespan hooks."""
    settings = settings or Settings()
    broker = make_broker(settings, "worker", consumer=True)
    state: dict[str, Runner] = {}
    worker_id = f"{socket.gethostname()}:{os.getpid()}"

    @broker.subscriber(
        REQUESTED,
        stream=exports_stream(settings.stream_replicas),
        durable=WORKERS_DURABLE,
        pull_sub=PullSub(batch_size=1, timeout=1.0),
        # Attempts are counted on the row (claims), so the consumer itself never gives up:
        # that keeps a crash-looping export visible to the handler, which fails it.
        config=ConsumerConfig(
            ack_wait=settings.ack_wait_seconds,
            max_deliver=-1,
            num_replicas=settings.stream_replicas,
        ),
        ack_policy=AckPolicy.MANUAL,
        max_workers=settings.worker_concurrency,
        title="export.requested",
        description="Run one export end to end",
    )
    async def on_requested(msg: NatsMessage) -> None:
        await state["runner"].handle(msg.body, msg)

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
        pool_size = settings.worker_concurrency * 2 + 2
        # The stream and this service's consumer, as configured, before any subscriber starts.
        connection = await broker.connect()
        await ensure_stream(connection, settings.stream_replicas)
        await ensure_consumer_replicas(
            connection.jetstream(), WORKERS_DURABLE, settings.stream_replicas
        )
        async with health.consumer_clients(settings, broker, pool_size=pool_size) as (pool, store):
            state["runner"] = Runner(WorkerContext(settings, pool, store, broker, worker_id))
            abandoned = await asyncio.to_thread(render.remove_abandoned_files)
            if abandoned:
                log.info("removed %d scratch directories of exports that died", abandoned)
            metrics.WORKER_CONCURRENCY.set(settings.worker_concurrency)
            log.info("worker %s ready (concurrency %d)", worker_id, settings.worker_concurrency)
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
