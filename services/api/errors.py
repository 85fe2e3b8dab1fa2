"""The api's errors: one base class, mapped to ``{"error", "message"}`` in one handler."""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


class RangeNotSatisfiable(ApiError):
    status = 416
    code = "RangeNotSatisfiable"


class Unavailable(ApiError):
    status = 503
    code = "Unavailable"


EXPORT_NOT_FOUND = "Export not found"
