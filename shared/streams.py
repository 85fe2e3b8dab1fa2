"""The JetStream stream every service declares identically."""

from __future__ import annotations

from faststream.nats import JStream
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from shared.subjects import DUPLICATE_WINDOW_SECONDS, STREAM, STREAM_SUBJECTS


def exports_stream() -> JStream:
    """The ``EXPORTS`` stream as FastStream subscribers declare it."""
    return JStream(
        name=STREAM,
        subjects=list(STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_msg_schedules=True,
    )


async def ensure_stream(nc: NatsClient) -> None:
    """Create or update the stream (idempotent; any service may call it at start-up)."""
    js = nc.jetstream()
    config = StreamConfig(
        name=STREAM,
        subjects=list(STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_msg_schedules=True,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)
