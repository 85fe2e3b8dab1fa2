"""Bounded request bodies: at most ``max_bytes``, all of it within ``timeout_seconds``.

Both come from settings (``EXPORTS_MAX_BODY_BYTES``, ``EXPORTS_BODY_TIMEOUT_SECONDS``).

A pure ASGI middleware around every route, so no endpoint can forget the limit:

- a declared ``Content-Length`` over the limit is answered 413 at once, before the app runs
  and before a byte of the body is read;
- a body without one (chunked) is counted as its ``http.request`` messages stream in and
  refused the moment the count passes the limit; nothing is buffered here;
- a body still incomplete at the deadline (a client trickling bytes) is answered 408.

Either answer closes the connection, so the rest of the body is never read, and the app,
should it still be reading, sees the client gone. A response the app starts before its
request's body has fully arrived (an endpoint that takes no body) closes the connection too:
otherwise the server would go on reading and discarding a body nobody wants, for as long as
the client sends one.

Starlette's own ``RequestBodyLimitMiddleware`` answers in plain text, refuses a declared
length only once the app reads, and bounds no time, hence this one.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import ApiError, PayloadTooLarge, RequestTimeout

_DISCONNECT: Message = {"type": "http.disconnect"}
_CLOSE = (b"connection", b"close")


def size_text(n: int) -> str:
    """1048576 → "1 MiB", 65536 → "64 KiB", 1000 → "1000 bytes"."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is too large (limit: {size_text(max_bytes)})")


def too_slow(timeout_seconds: float) -> RequestTimeout:
    return RequestTimeout(
        f"Request body took too long to arrive (limit: {timeout_seconds:g} seconds)"
    )


def _content_lengths(scope: Scope) -> list[int]:
    # The server has already refused a request whose Content-Length is not a number.
    return [
        int(value)
        for name, value in scope["headers"]
        if name == b"content-length" and value.strip().isdigit()
    ]


def _has_body(scope: Scope) -> bool:
    """HTTP/1.1: a request has a body exactly when it is chunked or declares a length above 0."""
    chunked = any(name == b"transfer-encoding" for name, _ in scope["headers"])
    return chunked or any(length > 0 for length in _content_lengths(scope))


async def _answer(err: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse(err.body(), status_code=err.status, headers={"Connection": "close"})
    await response(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` (413) or slower than ``timeout_seconds`` (408)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if any(length > self.max_bytes for length in _content_lengths(scope)):
            await _answer(too_large(self.max_bytes), scope, receive, send)
            return
        guard = _Guard(self, scope, receive, send)
        await self.app(scope, guard.receive, guard.send)


class _Guard:
    """One request's body: counted, timed, and cut off on the first breach."""

    def __init__(
        self, limits: BodyLimitMiddleware, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.limits = limits
        self.scope = scope
        self._receive = receive
        self._send = send
        self.deadline = asyncio.get_running_loop().time() + limits.timeout_seconds
        self.received = 0
        self.complete = not _has_body(scope)
        self.cut_off = False  # the body broke a limit: the app only sees a disconnect now
        self.answered = False  # we sent the answer: whatever the app sends is dropped
        self.app_responded = False

    async def receive(self) -> Message:
        if self.cut_off:
            return _DISCONNECT
        if self.complete:
            return await self._receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self._receive()
        except TimeoutError:
            return await self._refuse(too_slow(self.limits.timeout_seconds))
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limits.max_bytes:
                return await self._refuse(too_large(self.limits.max_bytes))
            self.complete = not message.get("more_body", False)
        return message

    async def _refuse(self, err: ApiError) -> Message:
        self.cut_off = True
        if not self.app_responded:
            self.answered = True
            await _answer(err, self.scope, self._receive, self._send)
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.app_responded = True
            if not self.complete:
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        await self._send(message)
