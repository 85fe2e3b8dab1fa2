"""The api's errors: one base class, mapped to ``{"error", "message"}`` in one handler."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.catalog_db import CONNECTION_ERRORS

# A value quoted in a message is cut past this many characters: a megabyte of bad input
# must not come back as a megabyte of error message.
QUOTED_MAX_CHARS = 64


def shown(value: str) -> str:
    """``value`` as an error message quotes it: whole when short, else its start and "…"."""
    return value if len(value) <= QUOTED_MAX_CHARS else value[:QUOTED_MAX_CHARS] + "…"


class ApiError(Exception):
    status = 500
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, str]:
        """The error as every answer carries it (HTTP and ``export.submit``)."""
        # A message may echo the caller's input, and a lone surrogate has no UTF-8 form.
        message = self.message.encode("utf-8", "replace").decode("utf-8")
        return {"error": self.code, "message": message}


class ValidationFailed(ApiError):
    status = 400
    code = "ValidationError"


class Unauthorized(ApiError):
    status = 401
    code = "Unauthorized"

    def __init__(
        self, message: str = "Authentication required: sign in or send a valid token"
    ) -> None:
        super().__init__(message)


class NotFound(ApiError):
    status = 404
    code = "NotFound"


class RequestTimeout(ApiError):
    status = 408
    code = "RequestTimeout"


class Conflict(ApiError):
    status = 409
    code = "Conflict"


class LimitReached(Conflict):
    code = "TooManyActiveExports"


class NotReady(Conflict):
    code = "NotReady"


class Gone(ApiError):
    status = 410
    code = "Gone"


class PayloadTooLarge(ApiError):
    status = 413
    code = "PayloadTooLarge"


class RangeNotSatisfiable(ApiError):
    status = 416
    code = "RangeNotSatisfiable"


class RateLimited(ApiError):
    """Over the request rate limit (services/api/ratelimit.py); Codex's words for it."""

    status = 429
    code = "RateLimitExceeded"

    def __init__(self, retry_after: int) -> None:
        unit = "second" if retry_after == 1 else "seconds"
        super().__init__(f"Too many requests. Please retry after {retry_after} {unit}.")
        self.retry_after = retry_after


class Unavailable(ApiError):
    status = 503
    code = "Unavailable"


CATALOG_UNAVAILABLE = "The library catalog cannot be read right now; please try again shortly"


@contextlib.contextmanager
def catalog_reads() -> Iterator[None]:
    """Around reads of the catalog database: a connection that fails (the read replica down,
    ``shared.catalog_db``) answers 503 with a message instead of a 500."""
    try:
        yield
    except CONNECTION_ERRORS as err:
        raise Unavailable(CATALOG_UNAVAILABLE) from err


EXPORT_NOT_FOUND = "Export not found"
