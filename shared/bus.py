"""The NATS broker every service builds (one connection policy, metrics on every message), and
the one way facts are published."""

from __future__ import annotations

import logging
from uuid import UUID

from faststream.nats import NatsBroker
from pydantic import BaseModel

from shared import metrics
from shared.logs import configure_logging
from shared.settings import Settings
from shared.subjects import STREAM

log = logging.getLogger(__name__)

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
        settings.nats_servers,
        logger=logging.getLogger("codex_exports.bus"),
        connect_timeout=5,
        max_reconnect_attempts=-1,
        graceful_timeout=GRACEFUL_TIMEOUT_SECONDS if consumer else FASTSTREAM_DEFAULT_GRACEFUL,
        middlewares=[metrics.nats_metrics_middleware(service)],
    )


async def publish_fact(
    broker: NatsBroker,
    event: BaseModel,
    subject: str,
    export_id: UUID,
    *,
    wait_seconds: float = 5.0,
) -> bool:
    """Publish a fact (``export.completed``, ``.failed``, ``.cancelled``, ``.expired``).

    Best effort: nothing in the core depends on facts (ARCHITECTURE.md), so a failure is logged
    and reported as False, never raised. The message id (subject and export) lets JetStream drop
    a repeat of the same fact within its duplicate window.
    """
    try:
        await broker.publish(
            event.model_dump(mode="json"),
            subject,
            headers={"Nats-Msg-Id": f"{subject}:{export_id}"},
            stream=STREAM,
            timeout=wait_seconds,
        )
    except Exception as err:
        log.warning("could not publish %s: %s", subject, err, extra={"export_id": export_id})
        return False
    return True


def service_settings() -> Settings:
    """A service process's first step: its settings, and logging configured from them.

    The caller imports its app module after this, so nothing the app declares logs in another
    format.
    """
    settings = Settings()
    configure_logging(settings.log_level)
    return settings
