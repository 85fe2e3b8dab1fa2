"""Codex-compatible HS256 tokens: claims ``sub``, ``username``, ``role``, ``iat``, ``exp``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """Any reason a token is not accepted (the caller answers them all the same way)."""


def issue_token(
    user_id: UUID,
    username: str,
    role: str,
    secret: str,
    ttl_seconds: int,
    *,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A signed token and its expiry time."""
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    expires = issued + timedelta(seconds=ttl_seconds)
    claims = {
        "sub": str(user_id),
        "username": username,
        "role": role,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def token_subject(token: str, secret: str) -> UUID:
    """The user id of a valid token (signature, ``exp``, ``iat``, ``nbf`` checked)."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp", "iat"]}
        )
        return UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError, KeyError, TypeError) as err:
        raise InvalidToken(str(err)) from err
