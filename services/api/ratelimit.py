"""Request rate limits as Codex has them: a token bucket per signed-in user and per client IP.

Codex 2.2.0 (``/work/shared/codex/AUTH.md``): anonymous clients by IP 10 requests/s with a burst
of 50, authenticated users 50 requests/s with a burst of 200, on by default. The same defaults,
as settings: ``EXPORTS_RATE_LIMIT_ENABLED``, ``EXPORTS_RATE_LIMIT_USER_PER_SECOND`` /
``_USER_BURST``, ``EXPORTS_RATE_LIMIT_ANON_PER_SECOND`` / ``_ANON_BURST``.

Every response but the exempt ones carries the bucket's ``X-RateLimit-Limit`` (the burst),
``X-RateLimit-Remaining`` (whole tokens left after this request) and ``X-RateLimit-Reset``
(seconds until a token is available: 0 while any is left; Codex's definition). A request
over the limit is answered 429 with ``Retry-After`` (whole seconds, at least 1, after which
one request will pass) and the API's error body. Exempt: ``/healthz``, ``/readyz``,
``/metrics`` (probes and scrapes must never be refused). The page and its static files count
in the client IP's bucket like any anonymous request (a page load is a handful of requests,
well within the burst). An export's event stream counts once, when it is opened (Codex
exempts its own event stream; ours is one request per export watched, not a connection held
for a whole session).

Whose bucket a request takes from:

- a request that carries a credential (``Authorization: Bearer``, ``X-API-Key``) to a route
  that reads credentials: the authenticated user's, taken in :func:`charge_user` right after
  ``deps.get_current_user`` has authenticated (so the credential is verified once, by the auth
  code, and never here). A credential that fails takes from the client IP's bucket instead
  (:func:`charge_anonymous`), so guessing keys or replaying bad tokens is limited like any
  anonymous traffic;
- every other request (sign-in, the page and its static files, a download by link, unknown
  paths): the client IP's, taken here before the app runs, so an expensive anonymous request
  (a sign-in's argon2) is refused before it costs anything.

The client IP is the ASGI scope's client: uvicorn replaces it with ``X-Forwarded-For``'s only
when the connection comes from ``EXPORTS_FORWARDED_ALLOW_IPS`` (default 127.0.0.1), so a
client cannot pick its own address. An IPv6 client is keyed by its /64 (one host's usual
allocation). Behind a proxy not listed there, every anonymous client shares the proxy's bucket.

The buckets live in a NATS JetStream key-value bucket shared by every api replica: one value
per subject, the GCRA "theoretical arrival time" (one float, equivalent to a token bucket of
``burst`` tokens refilling at ``per_second``). A request costs one ``get`` and, when it
passes, one compare-and-set ``update`` (retried on a conflict with another replica); a refusal
writes nothing. The bucket's TTL is the time to refill completely (plus a margin), so an idle
subject's key vanishes, and a missing key is exactly a full bucket. Replicas compare their
wall clocks; keep them synchronised (NTP).

When NATS does not answer within ``EXPORTS_RATE_LIMIT_TIMEOUT_SECONDS`` the request passes
(fail open: a rate limit must not turn a NATS outage into an API outage), without the
``X-RateLimit-*`` headers; a warning is logged (at most once a minute) and
``exports_rate_limit_errors_total`` counts each one. For the next 2 s every request passes at
once (no request waits out the timeout while NATS is away); then the store is tried again, the
key-value bucket reopened (recreated if a restarted NATS lost it). Ten compare-and-set
conflicts in a row (one subject sending many simultaneous requests through several replicas)
refuse the request (``Retry-After: 1``): a limiter must not let contention through.

The bus intake (``export.submit``) is not rate limited: only trusted services may publish there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import random
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from hashlib import sha256
from typing import Any
from uuid import UUID

import nats.errors
from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import RateLimited
from shared import metrics
from shared.dto import ErrorBody
from shared.settings import Settings

log = logging.getLogger(__name__)

KV_BUCKET = "exports_rate_limits"
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Where this module keeps one request's state in the ASGI scope.
SCOPE_KEY = "exports.rate_limit"
# A compare-and-set lost to another replica is retried this many times, after a short random
# pause that grows with each loss (replicas out of step); past it the request is refused.
MAX_ATTEMPTS = 10
_CONFLICT_PAUSE_SECONDS = 0.002
# An idle key outlives its refill by this much, so a clock a little behind never sees a key
# vanish early.
TTL_MARGIN_SECONDS = 60.0
# After a store failure, requests pass unlimited for this long before the store is tried again.
SKIP_AFTER_FAILURE_SECONDS = 2.0
_WARN_EVERY_SECONDS = 60.0
_EPSILON = 1e-9


_HEADER_DOCS = {
    "X-RateLimit-Limit": "The bucket's size (its burst).",
    "X-RateLimit-Remaining": "Requests left in the bucket after this one.",
    "X-RateLimit-Reset": "Seconds until a request is available again (0 while any is left).",
}
#: The OpenAPI description of the refusal, on every rate-limited operation.
OPENAPI_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorBody,
        "description": "Too many requests: the caller's rate-limit bucket is empty.",
        "headers": {
            "Retry-After": {
                "description": "Whole seconds after which one request passes.",
                "schema": {"type": "integer"},
            },
            **{
                name: {"description": text, "schema": {"type": "integer"}}
                for name, text in _HEADER_DOCS.items()
            },
        },
    }
}


@dataclass(frozen=True, slots=True)
class Limit:
    """A token bucket: ``burst`` tokens, refilled at ``per_second`` tokens a second."""

    per_second: float
    burst: int

    @property
    def interval(self) -> float:
        """Seconds per token."""
        return 1.0 / self.per_second

    @property
    def refill_seconds(self) -> float:
        """From empty to full."""
        return self.burst * self.interval


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's outcome, as the headers say it."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until a token is available (0: one is)
    retry_after: int  # when refused: whole seconds after which one request passes; else 0

    def headers(self) -> list[tuple[bytes, bytes]]:
        pairs = [
            (b"x-ratelimit-limit", self.limit),
            (b"x-ratelimit-remaining", self.remaining),
            (b"x-ratelimit-reset", self.reset_seconds),
        ]
        if not self.allowed:
            pairs.append((b"retry-after", self.retry_after))
        return [(name, str(value).encode()) for name, value in pairs]


def take(tat: float | None, now: float, limit: Limit) -> tuple[float | None, Decision]:
    """Take one token (GCRA): the new stored value (None: refused, store nothing) and why.

    ``tat`` is the stored "theoretical arrival time": the moment the bucket is full again
    (None or the past: full now). The backlog ``tat - now`` is the time its missing tokens
    take to refill; a request passes when at least one token is left, i.e. the backlog is at
    most ``(burst - 1)`` intervals. A backlog over the whole refill time (a replica whose clock
    runs ahead, or a lowered limit) counts as an empty bucket, never as a longer lock-out.
    """
    interval = limit.interval
    backlog = min(max(0.0, (tat if tat is not None else now) - now), limit.refill_seconds)
    tolerance = limit.refill_seconds - interval  # the backlog at which one token is left
    if backlog > tolerance + _EPSILON:
        wait = backlog - tolerance
        retry = max(1, math.ceil(wait - _EPSILON))
        return None, Decision(False, limit.burst, 0, retry, retry)
    backlog += interval
    remaining = max(0, math.floor(limit.burst - backlog / interval + _EPSILON))
    reset = 0 if remaining > 0 else max(1, math.ceil(backlog - tolerance - _EPSILON))
    return now + backlog, Decision(True, limit.burst, remaining, reset, 0)


def user_key(user_id: UUID) -> str:
    return f"user.{user_id.hex}"


def client_key(scope: Scope) -> str:
    """The anonymous bucket's key of a request: its client address (an IPv6 one by /64)."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # Not an address (a test client's name, a Unix socket): one bucket per name.
        return "ip.other." + sha256(host.encode()).hexdigest()[:16]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return f"ip.{address}"
    network = ipaddress.IPv6Network((address, 64), strict=False)
    return "ip6." + "-".join(network.network_address.exploded.split(":")[:4])


class Limiter:
    """The shared buckets (a JetStream key-value bucket) and the two limits."""

    def __init__(self, settings: Settings) -> None:
        self.user = Limit(settings.rate_limit_user_per_second, settings.rate_limit_user_burst)
        self.anonymous = Limit(settings.rate_limit_anon_per_second, settings.rate_limit_anon_burst)
        self.timeout = settings.rate_limit_timeout_seconds
        # Replicated like the EXPORTS stream, so a cluster's lost server keeps the limits.
        self.replicas = settings.stream_replicas
        self.kv: KeyValue | None = None
        # One in-process queue per key: this process's requests of one subject take turns
        # instead of failing each other's compare-and-set.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._last_warning = -math.inf
        self._nc: NatsClient | None = None
        # After the store failed, requests pass at once until then (monotonic time), instead
        # of each waiting out the timeout; the first request after it reopens the bucket.
        self._skip_until = -math.inf
        self._reopen = False

    @property
    def ttl_seconds(self) -> float:
        return max(self.user.refill_seconds, self.anonymous.refill_seconds) + TTL_MARGIN_SECONDS

    async def start(self, nc: NatsClient) -> None:
        """Open (or create) the key-value bucket; called once in the api's lifespan."""
        self._nc = nc
        self.kv = await open_bucket(nc, self.ttl_seconds, self.replicas)

    async def take(self, key: str, limit: Limit) -> Decision | None:
        """Take a token from ``key``'s bucket; None when the store did not answer (fail open)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            # Checked in the queue too: requests waiting behind one that timed out pass at once.
            if time.monotonic() < self._skip_until:
                self._failed_open(None)
                return None
            try:
                async with asyncio.timeout(self.timeout):
                    if self._reopen and self._nc is not None:
                        # The store failed before: NATS may have restarted without the
                        # bucket (memory storage), so open it again, creating it if need be.
                        self.kv = await open_bucket(self._nc, self.ttl_seconds, self.replicas)
                        self._reopen = False
                    return await self._take(key, limit)
            except _Contended:
                # So many simultaneous requests of one subject through several replicas that
                # the store cannot serialise them: over any sane rate, so refused, not let by.
                return Decision(False, limit.burst, 0, 1, 1)
            except (TimeoutError, OSError, nats.errors.Error) as err:
                self._skip_until = time.monotonic() + SKIP_AFTER_FAILURE_SECONDS
                self._reopen = True
                self._failed_open(err)
            return None

    async def _take(self, key: str, limit: Limit) -> Decision:
        kv = self.kv
        if kv is None:
            raise nats.errors.Error("the rate-limit bucket is not open")
        for attempt in range(MAX_ATTEMPTS):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                stored, revision = None, None
            else:
                stored, revision = _decode(entry.value), entry.revision
            new, decision = take(stored, time.time(), limit)
            if new is None:
                return decision
            value = repr(new).encode()
            try:
                if revision is None:
                    await kv.create(key, value)
                else:
                    await kv.update(key, value, last=revision)
            except KeyWrongLastSequenceError:
                # Another replica took a token in between: read again.
                await asyncio.sleep(random.uniform(0, _CONFLICT_PAUSE_SECONDS * (attempt + 1)))  # noqa: S311
                continue
            return decision
        raise _Contended

    def _failed_open(self, err: BaseException | None) -> None:
        metrics.record_rate_limit_error()
        now = time.monotonic()
        if err is not None and now - self._last_warning >= _WARN_EVERY_SECONDS:
            self._last_warning = now
            log.warning(
                "rate limits not applied (requests pass) because the NATS key-value store "
                "did not answer: %s",
                type(err).__name__ if not str(err) else err,
            )


class _Contended(Exception):
    pass


def _decode(value: bytes | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # not ours: treated as a full bucket, overwritten on the next take


async def open_bucket(nc: NatsClient, ttl_seconds: float, replicas: int = 1) -> KeyValue:
    """The shared key-value bucket, created if missing; an existing one's TTL only grows.

    Memory storage: the buckets are short-lived counters, and losing them with a NATS
    restart only refills everyone's bucket.
    """
    js = nc.jetstream()
    try:
        kv = await js.key_value(KV_BUCKET)
    except BucketNotFoundError:
        try:
            return await js.create_key_value(
                bucket=KV_BUCKET,
                description="codex-exports request rate limits (one key per user or client IP)",
                history=1,
                ttl=ttl_seconds,
                storage=StorageType.MEMORY,
                replicas=replicas,
            )
        except BadRequestError:
            return await js.key_value(KV_BUCKET)  # another replica created it just now
    info = await js.stream_info(f"KV_{KV_BUCKET}")
    if (info.config.max_age or 0) + _EPSILON < ttl_seconds:
        # Longer limits than whoever created it: a shorter TTL would refill idle buckets early.
        info.config.max_age = ttl_seconds
        await js.update_stream(info.config)
    return kv


# --- per request -----------------------------------------------------------------------------


@dataclass(slots=True)
class _RequestLimit:
    limiter: Limiter
    scope: Scope
    # The request carries a credential: the route decides (check_route, then the auth).
    deferred: bool
    reads_credentials: Callable[[BaseRoute], bool]
    decided: bool = False
    decision: Decision | None = None


async def _charge(state: _RequestLimit, key: str, limit: Limit, kind: str) -> None:
    state.decided = True
    state.decision = await state.limiter.take(key, limit)
    if state.decision is not None and not state.decision.allowed:
        metrics.record_rate_limited(kind)
        raise RateLimited(state.decision.retry_after)


def _pending(request: Request) -> _RequestLimit | None:
    state = request.scope.get(SCOPE_KEY)
    if isinstance(state, _RequestLimit) and state.deferred and not state.decided:
        return state
    return None


async def check_route(request: Request) -> None:
    """Every route's first dependency: a credential sent to a route that reads none (sign-in,
    the page) does not spare the request its client IP's bucket; 429 when it is empty."""
    state = _pending(request)
    route = request.scope.get("route")
    if state is not None and not (route is not None and state.reads_credentials(route)):
        await _charge(state, client_key(state.scope), state.limiter.anonymous, "anonymous")


async def charge_user(request: Request, user_id: UUID) -> None:
    """Take from the authenticated user's bucket; 429 (:class:`RateLimited`) when empty."""
    state = _pending(request)
    if state is not None:
        await _charge(state, user_key(user_id), state.limiter.user, "user")


async def charge_anonymous(request: Request) -> None:
    """A credential failed: take from the client IP's bucket; 429 when empty."""
    state = _pending(request)
    if state is not None:
        await _charge(state, client_key(state.scope), state.limiter.anonymous, "anonymous")


def reads_credentials(route: BaseRoute, scheme_calls: Iterable[Callable[..., Any]]) -> bool:
    """Whether ``route`` has one of the credential schemes among its dependencies."""
    if not isinstance(route, APIRoute):
        return False
    calls = tuple(scheme_calls)

    def walk(dependant: Dependant) -> bool:
        return any(dependant.call is c for c in calls) or any(
            walk(d) for d in dependant.dependencies
        )

    return walk(route.dependant)


def _has_credential(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"x-api-key" and value.strip():
            return True
        if name == b"authorization" and value[:7].lower() == b"bearer " and value[7:].strip():
            return True
    return False


class RateLimitMiddleware:
    """Apply the limits to every HTTP request but the exempt paths; add the headers.

    A request without a credential takes from its client IP's bucket here, before the app.
    One with a credential is left to the route: :func:`check_route` (every route's first
    dependency) charges the IP when the route reads no credential, else ``get_current_user``
    calls :func:`charge_user` or :func:`charge_anonymous`. ``schemes`` are the dependencies
    that read a credential (``deps``' bearer and API-key schemes). What no route decided
    (a static file or an unknown path sent with a credential) is charged to the IP as the
    response starts: counted, but too late to refuse (those answers cost next to nothing).
    """

    def __init__(
        self, app: ASGIApp, *, limiter: Limiter, schemes: tuple[Callable[..., Any], ...]
    ) -> None:
        self.app = app
        self.limiter = limiter
        self._schemes = schemes
        self._reads: dict[int, bool] = {}  # by id(route): routes live as long as the app

    def _reads_credentials(self, route: BaseRoute) -> bool:
        found = self._reads.get(id(route))
        if found is None:
            found = self._reads[id(route)] = reads_credentials(route, self._schemes)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        state = _RequestLimit(self.limiter, scope, _has_credential(scope), self._reads_credentials)
        scope[SCOPE_KEY] = state
        if not state.deferred:
            try:
                await _charge(state, client_key(scope), self.limiter.anonymous, "anonymous")
            except RateLimited as err:
                await self._refuse(err, state, scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if not state.decided:
                    # A credential no route checked (a static file, an unknown path, a
                    # download by link that also sent a token): the IP's, too late to refuse.
                    state.decided = True
                    state.decision = await self.limiter.take(
                        client_key(scope), self.limiter.anonymous
                    )
                if state.decision is not None:
                    message = {
                        **message,
                        "headers": [*message.get("headers", ()), *state.decision.headers()],
                    }
            await send(message)

        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse(
        err: RateLimited, state: _RequestLimit, scope: Scope, receive: Receive, send: Send
    ) -> None:
        decision = state.decision
        headers = {k.decode(): v.decode() for k, v in decision.headers()} if decision else None
        response = JSONResponse(err.body(), status_code=err.status, headers=headers)
        await response(scope, receive, send)
