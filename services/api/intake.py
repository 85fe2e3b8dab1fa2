"""``export.submit``: other services create exports over core NATS request-reply.

The bus is internal and authenticated by NATS credentials, so the request names the user;
everything else (validation, limits, messages) is exactly the HTTP create's.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage
from pydantic import ValidationError

from services.api import repository, service
from services.api import schedules as schedules_service
from services.api.auth import INACTIVE
from services.api.errors import ApiError
from services.api.limits import too_large
from shared import schedules
from shared.dto import SUBMIT_HELP, SubmitRequest
from shared.settings import Settings
from shared.subjects import SUBMIT

log = logging.getLogger(__name__)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}


def register_intake(broker: NatsBroker, state: Any) -> None:
    """Declare the ``export.submit`` responder; ``state`` carries pool and settings at run time."""

    @broker.subscriber(SUBMIT, title="export.submit", description=SUBMIT_HELP)
    async def submit(msg: NatsMessage) -> dict[str, Any]:
        pool: asyncpg.Pool = state.pool
        settings: Settings = state.settings
        if len(msg.body) > settings.max_body_bytes:
            # NATS bounds a message (max_payload, 1 MiB unless raised); HTTP's limit holds too.
            return too_large(settings.max_body_bytes).body()
        try:
            request = SubmitRequest.model_validate_json(msg.body)
        except ValidationError as err:
            log.warning("rejected malformed export.submit: %s", err.error_count())
            return _error("ValidationError", "Malformed request: expected userId and request")
        active = await repository.user_is_active(pool, request.user_id)
        if active is None:
            return _error("Unauthorized", "Unknown user")
        if not active:
            return _error("Unauthorized", INACTIVE)
        if request.schedule_id is not None and (
            await schedules.get_for_user(pool, request.schedule_id, request.user_id) is None
        ):
            return _error("NotFound", schedules_service.SCHEDULE_NOT_FOUND)
        try:
            row = await service.create_export(
                pool,
                broker,
                settings,
                request.user_id,
                request.request,
                idempotency_key=request.idempotency_key,
                schedule_id=request.schedule_id,
                catalog_pool=getattr(state, "catalog_pool", None),
            )
        except ApiError as err:
            return err.body()
        return row.public().model_dump(mode="json", by_alias=True)
