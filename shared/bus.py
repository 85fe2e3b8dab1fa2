"""The NATS broker every service builds: one connection policy, metrics on every message."""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker

from shared import metrics
from shared.settings import Settings

# Long enough for a running export to reach its next batch and hand itself back on SIGTERM,
# well inside a pod's 45 s grace period.
GRACEFUL_TIMEOUT_SECONDS = 20.0
FASTSTREAM_DEFAULT_GRACEFUL = 15.0  # what the api, which only answers requests, keeps


def make_broker(settings: Settings, service: str, *, consumer: bool = False) -> NatsBroker:
    """A broker for ``service`` (api, worker, janitor): reconnects for ever, logs as the bus.

    ``consumer``: a service whose JetStream consumers hold work (worker, janitor) waits
    ``GRACEFUL_TIMEOUT_SECONDS`` for it on shutdown; the api keeps FastStream's default.
    """
    return NatsBroker(
        settings.nats_url,
        logger=logging.getLogger("codex_exports.bus"),
        connect_timeout=5,
        max_reconnect_attempts=-1,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS if consumer else FASTSTREAM_DEFAULT_GRACEFUL,
        middlewares=[metrics.nats_metrics_middleware(service)],
    )
