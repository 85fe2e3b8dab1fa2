"""The api service: ``create_app()`` registers everything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from faststream.nats import NatsBroker
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.codex_keys import VerifiedKeys
from services.api.deps import CREDENTIAL_SCHEMES
from services.api.errors import ApiError, shown
from services.api.intake import register_intake
from services.api.limits import BodyLimitMiddleware
from services.api.ratelimit import OPENAPI_RESPONSES, Limiter, RateLimitMiddleware, check_route
from services.api.routes import api_keys, auth, exports, health, page, schedules, usage
from shared import catalog_db, metrics, object_store, outbox
from shared.bus import make_broker
from shared.logs import redact
from shared.settings import Settings
from shared.streams import ensure_stream
from shared.subjects import REQUEST_ID_HEADER

log = logging.getLogger(__name__)
# One JSON line per request (uvicorn's own access log stays off: this one has the request id
# and the fields as JSON, and never the query's tokens). Probes are logged at DEBUG only.
access_log = logging.getLogger("services.api.access")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
RELAY_INTERVAL_SECONDS = 5.0


async def _relay(pool: asyncpg.Pool, broker: NatsBroker) -> None:
    """The outbox relay: republish rows whose publish failed (duplicates are harmless)."""
    while True:
        await asyncio.sleep(RELAY_INTERVAL_SECONDS)
        try:
            await outbox.relay(pool, broker, older_than_seconds=RELAY_INTERVAL_SECONDS)
        except Exception as err:
            log.warning("outbox relay pass failed: %s", err)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.require_production_secrets()
    broker = make_broker(settings, "api")
    limiter = Limiter(settings) if settings.rate_limit_enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=10)
        catalog = await catalog_db.open_catalog_pool(settings, pool, max_size=10)
        store = await object_store.open_store(settings)
        app.state.pool = pool
        app.state.catalog_pool = catalog
        app.state.store = store
        await broker.start()
        await ensure_stream(broker.connection, settings.stream_replicas)
        if limiter is not None:
            await limiter.start(broker.connection)
        relay = asyncio.create_task(_relay(pool, broker))
        try:
            yield
        finally:
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay
            await broker.stop()
            await catalog_db.close_catalog_pool(catalog, pool)
            await pool.close()

    app = FastAPI(
        title="codex-exports",
        version="1",
        description="Data Exports for the Codex library server.",
        lifespan=lifespan,
        # A no-op unless the rate limits are on (services/api/ratelimit.py).
        dependencies=[Depends(check_route)],
    )
    app.state.settings = settings
    app.state.broker = broker
    app.state.codex_keys = VerifiedKeys()
    register_intake(broker, app.state)

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get(REQUEST_ID_HEADER, "")
        if not (0 < len(rid) <= 100 and rid.isprintable()):
            rid = uuid.uuid4().hex
        request.state.request_id = rid
        started = time.perf_counter()
        response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = rid
        path = request.url.path
        query = request.url.query
        # A download link's token is a credential: the query is logged with it redacted.
        shown_path = redact(f"{path}?{query}") if query else path
        access_log.log(
            logging.DEBUG if path in _PROBES else logging.INFO,
            "%s %s %d",
            request.method,
            shown_path,
            response.status_code,
            extra={
                "request_id": rid,
                "method": request.method,
                "path": shown_path,
                "status": response.status_code,
                # Until the response starts: a streamed download's transfer is not included.
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = err.errors()
        # A location can name a key of the caller's own (a dict's), so each part is cut.
        where = ".".join(shown(str(p)) for p in problems[0].get("loc", ())[1:]) if problems else ""
        message = "The request is malformed"
        if problems:
            message += f": {problems[0].get('msg', 'invalid value')}" + (
                f" ({where})" if where else ""
            )
        return JSONResponse({"error": "ValidationError", "message": message}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found", 405: "Method not allowed"}
        message = (
            err.detail if isinstance(err.detail, str) else messages.get(err.status_code, "Error")
        )
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(err.status_code, "Error")
        return JSONResponse({"error": code, "message": message}, status_code=err.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            {
                "error": "InternalError",
                "message": "Something went wrong on our side; please try again",
            },
            status_code=500,
        )

    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
    )
    if limiter is not None:
        # Outside the body limits: a refused request is answered before its body is read.
        app.add_middleware(
            RateLimitMiddleware,
            limiter=limiter,
            schemes=CREDENTIAL_SCHEMES,
        )
    # Outermost, so the time includes the other middleware and error handling.
    app.add_middleware(metrics.HttpMetricsMiddleware)
    app.include_router(health.router)
    limited = OPENAPI_RESPONSES if limiter is not None else None
    app.include_router(auth.router, responses=limited)
    app.include_router(auth.page_router)
    app.include_router(exports.router, responses=limited)
    app.include_router(schedules.router, responses=limited)
    app.include_router(usage.router, responses=limited)
    app.include_router(api_keys.router, responses=limited)
    app.include_router(page.router)
    return app


def app_factory() -> Any:
    """Entry point for uvicorn's ``--factory``."""
    return create_app()
