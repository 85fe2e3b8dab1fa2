"""Authentication: Codex-compatible HS256 JWTs and hashed API keys."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.api.errors import Unauthorized
from shared.tokens import InvalidToken, token_subject

BAD_TOKEN = "Invalid or expired credentials"
_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    username: str
    role: str


def decode_token(token: str, secret: str) -> UUID:
    """The user id of a valid token; every failure is the same 401."""
    try:
        return token_subject(token, secret)
    except InvalidToken as err:
        raise Unauthorized(BAD_TOKEN) from err


async def load_user(pool: asyncpg.Pool, user_id: UUID) -> User:
    record = await pool.fetchrow("SELECT id, username, role FROM users WHERE id = $1", user_id)
    if record is None:
        raise Unauthorized(BAD_TOKEN)
    return User(record["id"], record["username"], record["role"])


async def authenticate_password(pool: asyncpg.Pool, username: str, password: str) -> User:
    record = await pool.fetchrow(
        "SELECT id, username, role, password_hash FROM users WHERE username = $1", username
    )
    stored = record["password_hash"] if record is not None else None
    ok = False
    if stored:
        ok = await asyncio.to_thread(_verify, stored, password)
    if record is None or not ok:
        raise Unauthorized("Invalid username or password")
    return User(record["id"], record["username"], record["role"])


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
