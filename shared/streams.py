"""The JetStream stream every service declares identically, and its replicas (SPEC §14).

``EXPORTS_STREAM_REPLICAS`` sets how many servers hold the ``EXPORTS`` stream and its durable
consumers. Every service calls :func:`ensure_stream` at start-up, before it subscribes: it
creates the stream, or brings an existing one to the configured replicas (JetStream scales a
stream up or down in place, messages kept). When the servers cannot give what was asked, e.g. 3
replicas from a single server, the service stops with :class:`StreamSetupError`, whose message
names the setting, instead of running on a stream that is not what its operator configured.
"""

from __future__ import annotations

import asyncio
import logging

from faststream.nats import JStream
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, BadRequestError, NotFoundError

from shared.subjects import DUPLICATE_WINDOW_SECONDS, STREAM, STREAM_SUBJECTS

log = logging.getLogger(__name__)

REPLICAS_SETTING = "EXPORTS_STREAM_REPLICAS"
SCALE_TIMEOUT_SECONDS = 30.0


class StreamSetupError(RuntimeError):
    """The stream (or a consumer) could not be created or brought to the configured replicas."""


def stream_config(replicas: int = 1) -> StreamConfig:
    """The ``EXPORTS`` stream's configuration, ``replicas`` copies."""
    return StreamConfig(
        name=STREAM,
        subjects=list(STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_msg_schedules=True,
        num_replicas=replicas,
    )


def exports_stream(replicas: int = 1) -> JStream:
    """The ``EXPORTS`` stream as FastStream subscribers name it.

    ``declare=False``: the stream is declared by :func:`ensure_stream` before the subscribers
    start, never by FastStream, which logs a failed declaration and carries on.
    """
    return JStream(
        name=STREAM,
        subjects=list(STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        allow_msg_schedules=True,
        num_replicas=replicas,
        declare=False,
    )


def _why(err: APIError, replicas: int, what: str) -> StreamSetupError:
    description = err.description or str(err)
    hint = ""
    if replicas > 1:
        hint = (
            f" {REPLICAS_SETTING}={replicas} needs a JetStream cluster of at least {replicas}"
            f" servers, all up; on a single server set {REPLICAS_SETTING}=1."
        )
    return StreamSetupError(
        f"could not {what} the {STREAM} stream with {replicas} replica(s): {description}.{hint}"
    )


async def ensure_stream(nc: NatsClient, replicas: int = 1) -> StreamInfo:
    """Create the stream, or update it to ``replicas`` and the current subjects (idempotent).

    Raises :class:`StreamSetupError` when the servers refuse (message for people, the setting
    named).
    """
    js = nc.jetstream()
    config = stream_config(replicas)
    try:
        return await js.add_stream(config)
    except BadRequestError as err:
        if err.err_code != 10058:  # anything but "name already in use with another config"
            raise _why(err, replicas, "create or update") from err
    except APIError as err:
        raise _why(err, replicas, "create or update") from err
    try:
        before = await js.stream_info(STREAM)
        info = await js.update_stream(config)
    except APIError as err:
        raise _why(err, replicas, "update") from err
    if before.config.num_replicas != replicas:
        info = await _scaled(js, replicas)
        log.info(
            "%s stream scaled from %s to %d replicas",
            STREAM,
            before.config.num_replicas,
            replicas,
        )
    return info


async def _scaled(js: JetStreamContext, replicas: int) -> StreamInfo:
    """Until the stream's group has ``replicas`` peers: JetStream scales after it answers, and a
    consumer cannot be given more replicas than its stream has yet."""
    deadline = asyncio.get_running_loop().time() + SCALE_TIMEOUT_SECONDS
    while True:
        info = await js.stream_info(STREAM)
        peers = 1 + len(info.cluster.replicas or []) if info.cluster else 1
        if peers == replicas:
            return info
        if asyncio.get_running_loop().time() > deadline:
            raise StreamSetupError(
                f"the {STREAM} stream was asked for {replicas} replicas ({REPLICAS_SETTING})"
                f" but has {peers} after {SCALE_TIMEOUT_SECONDS:.0f} s"
            )
        await asyncio.sleep(0.2)


async def ensure_consumer_replicas(js: JetStreamContext, durable: str, replicas: int) -> bool:
    """Bring an existing durable consumer to ``replicas``; True when it was changed.

    A consumer that does not exist yet is left to the subscriber, which creates it with
    ``num_replicas`` in its config; an existing one keeps every other setting.
    """
    try:
        info = await js.consumer_info(STREAM, durable)
    except NotFoundError:
        return False
    current = info.config.num_replicas or 0  # 0: as many as the stream
    if current == replicas:
        return False
    config = info.config
    config.num_replicas = replicas
    try:
        await js.add_consumer(STREAM, config=config)
    except APIError as err:
        raise StreamSetupError(
            f"could not bring the {durable!r} consumer of the {STREAM} stream to {replicas}"
            f" replica(s) ({REPLICAS_SETTING}): {err.description or err}"
        ) from err
    log.info("consumer %s scaled from %s to %d replicas", durable, current or "R", replicas)
    return True
