"""Health and readiness of a service, and the worker's and janitor's health and metrics server.

Readiness probes a service's database, NATS and object store the same way everywhere. The api
serves ``/healthz``, ``/readyz`` and ``/metrics`` through FastAPI; the worker and the janitor,
which have no HTTP framework, serve the same three paths from the small server here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

import asyncpg
from faststream.nats import NatsBroker
from minio import Minio

from shared import catalog_db, metrics, object_store
from shared.settings import Settings

log = logging.getLogger(__name__)


ReadyCheck = Callable[[], Awaitable[Iterable[str]]]
"""Returns the names of the parts that are not ready (empty when ready)."""


def check_all(
    checks: Mapping[str, Callable[[], Awaitable[object]]], *, timeout: float = 3.0
) -> ReadyCheck:
    """A :data:`ReadyCheck` from named probes: a part fails if its probe raises, times out or
    returns ``False``. Probes run concurrently."""

    async def one(name: str, probe: Callable[[], Awaitable[object]]) -> str | None:
        try:
            result = await asyncio.wait_for(probe(), timeout)
        except Exception:
            return name
        return name if result is False else None

    async def ready() -> list[str]:
        results = await asyncio.gather(*(one(n, p) for n, p in checks.items()))
        return [name for name in results if name is not None]

    return ready


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
_MAX_HEAD = 8192
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


async def _answer(
    ready_check: ReadyCheck, method: str, path: str, accept: str | None
) -> tuple[int, bytes, str]:
    """Status, body and content type for one request to the health and metrics server."""
    if method not in ("GET", "HEAD"):
        return 405, b"method not allowed\n", _TEXT
    if path == "/metrics":
        body, content_type = metrics.metrics_response(accept)
        return 200, body, content_type
    if path == "/healthz":
        # Answering at all proves the event loop is alive; readiness covers the servers.
        return 200, json.dumps({"status": "ok"}).encode(), _JSON
    if path == "/readyz":
        try:
            failing = sorted(await ready_check())
        except Exception as err:
            log.warning("readiness check raised: %s", err)
            failing = ["readiness check"]
        if not failing:
            return 200, json.dumps({"status": "ready"}).encode(), _JSON
        payload = {
            "status": "unavailable",
            "failing": failing,
            "message": "Not ready: " + ", ".join(failing) + " unreachable",
        }
        return 503, json.dumps(payload).encode(), _JSON
    return 404, b"not found\n", _TEXT


async def _handle(
    ready_check: ReadyCheck, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        lines = head.decode("latin-1").split("\r\n")
        request_line = lines[0].split(" ")
        if len(request_line) == 3:
            method, target, _ = request_line
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            path = target.split("?", 1)[0]
            status, body, content_type = await _answer(
                ready_check, method, path, headers.get("accept")
            )
        else:
            method, status, body, content_type = "GET", 400, b"bad request\n", _TEXT
        reason = _REASONS.get(status, "Error")
        head_out = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        writer.write(head_out if method == "HEAD" else head_out + body)
        await writer.drain()
    except (ConnectionError, OSError):
        pass  # the prober went away; nothing to answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def serve_health_and_metrics(
    port: int, ready_check: ReadyCheck, *, host: str = "127.0.0.1"
) -> asyncio.Server | None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` in the running loop.

    ``/readyz`` answers 503 with the failing parts named, e.g.
    ``{"status": "unavailable", "failing": ["database"], ...}``, the same shape as the api's.
    Returns the server (close it on shutdown), or ``None`` if the port is taken: the service
    keeps running without it, which only happens when several run on one host (development).
    """
    try:
        return await asyncio.start_server(
            lambda r, w: _handle(ready_check, r, w), host, port, limit=_MAX_HEAD
        )
    except OSError as err:
        log.warning("health and metrics server not started on %s:%d: %s", host, port, err)
        return None


def readiness(
    pool: asyncpg.Pool,
    broker: NatsBroker,
    store: Minio,
    bucket: str,
    catalog: asyncpg.Pool | None = None,
) -> ReadyCheck:
    """A check naming the parts that are unreachable (empty when ready); ``catalog`` is the
    catalog database's pool when it is another server (a read replica)."""
    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "database": lambda: pool.fetchval("SELECT 1"),
        "nats": lambda: broker.ping(timeout=2.0),
        "object store": lambda: asyncio.to_thread(store.bucket_exists, bucket),
    }
    if catalog is not None and catalog is not pool:
        checks["catalog database"] = lambda: catalog.fetchval("SELECT 1")
    return check_all(checks)


async def serve(
    settings: Settings,
    pool: asyncpg.Pool,
    broker: NatsBroker,
    store: Minio,
    catalog: asyncpg.Pool | None = None,
) -> asyncio.Server | None:
    """Worker and janitor: ``/metrics``, ``/healthz`` and ``/readyz`` on ``EXPORTS_METRICS_PORT``
    (None when it is 0 or taken)."""
    if not settings.metrics_port:
        return None
    return await serve_health_and_metrics(
        settings.metrics_port,
        readiness(pool, broker, store, settings.s3_bucket, catalog),
        host=settings.api_host,
    )


@asynccontextmanager
async def consumer_clients(
    settings: Settings, broker: NatsBroker, *, pool_size: int, catalog_pool_size: int = 0
) -> AsyncIterator[tuple[asyncpg.Pool, Minio, asyncpg.Pool]]:
    """The worker's and janitor's lifespan: their pool, their object store (bucket ready), the
    pool catalog reads use and their health and metrics server, closed in reverse order when
    the app stops.

    The catalog pool is the first pool itself unless ``catalog_pool_size`` is set and the
    settings name a catalog database of its own (``shared.catalog_db``).
    """
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=pool_size)
    try:
        catalog = (
            await catalog_db.open_catalog_pool(settings, pool, max_size=catalog_pool_size)
            if catalog_pool_size
            else pool
        )
        try:
            store = await object_store.open_store(settings)
            server = await serve(settings, pool, broker, store, catalog)
            try:
                yield pool, store, catalog
            finally:
                if server is not None:
                    server.close()
        finally:
            await catalog_db.close_catalog_pool(catalog, pool)
    finally:
        await pool.close()
