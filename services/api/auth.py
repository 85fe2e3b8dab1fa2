"""Authentication: Codex-compatible HS256 JWTs and hashed API keys.

Every way a credential can be wrong (bad signature, ``alg: none``, expired, not yet valid, no
``sub``, a ``sub`` that is not a UUID, an unknown user, an unknown or revoked key) answers the
same 401 with the same message, so a caller learns nothing about which check failed.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Literal
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.api import api_keys, codex_keys, repository
from services.api.errors import Unauthorized
from shared.tokens import InvalidToken, token_subject

# Messages for people, not secrets (S105 reads "TOKEN" and "PASSWORD" in the names).
BAD_TOKEN = "Invalid or expired credentials"  # noqa: S105
BAD_PASSWORD = "Invalid username or password"  # noqa: S105
# Codex's own words for a valid credential of a user it has deactivated (users.is_active).
INACTIVE = codex_keys.INACTIVE_USER
# Users created through OIDC carry this placeholder instead of a password hash: no password
# signs them in here (they sign in at Codex, through their identity provider).
OIDC_PLACEHOLDER = "oidc:"
_hasher = PasswordHasher()

AuthMethod = Literal["token", "api_key"]


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    username: str
    role: str
    # How the caller proved who they are: a signed-in session's JWT, or an API key.
    via: AuthMethod = "token"


def decode_token(token: str, secret: str) -> UUID:
    """The user id of a valid token; every failure is the same 401."""
    try:
        return token_subject(token, secret)
    except InvalidToken as err:
        raise Unauthorized(BAD_TOKEN) from err


def _active(account: repository.Account, via: AuthMethod) -> User:
    """The user of ``account``, unless Codex has deactivated them (401, whatever the credential)."""
    if not account.is_active:
        raise Unauthorized(INACTIVE)
    return User(account.id, account.username, account.role, via=via)


async def load_user(pool: asyncpg.Pool, user_id: UUID) -> User:
    account = await repository.account_by_id(pool, user_id)
    if account is None:
        raise Unauthorized(BAD_TOKEN)
    return _active(account, "token")


async def authenticate_key(pool: asyncpg.Pool, cache: codex_keys.VerifiedKeys, key: str) -> User:
    """The owner of a live API key: Codex's own (``codex_…``) or this product's (``cxk_…``).

    A Codex key is refused with Codex's own messages; an unknown or revoked key of this
    product's is the same 401 as a bad token.
    """
    if codex_keys.looks_like_key(key):
        try:
            owner = await codex_keys.owner_of(pool, cache, key)
        except codex_keys.KeyRefused as err:
            raise Unauthorized(str(err)) from err
        return _active(owner, "api_key")
    own = await api_keys.owner_of(pool, key)
    if own is None:
        raise Unauthorized(BAD_TOKEN)
    return _active(own, "api_key")


# Longer than any real sign-in: refused before the database or argon2 spend time on it.
MAX_USERNAME_LENGTH = 150
MAX_PASSWORD_LENGTH = 1024


def _storable(text: str, limit: int) -> bool:
    """Text PostgreSQL and argon2 can take: no NUL, no lone surrogate, not absurdly long."""
    if len(text) > limit or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def authenticate_password(pool: asyncpg.Pool, username: str, password: str) -> User:
    account: repository.Account | None = None
    stored: str | None = None
    if _storable(username, MAX_USERNAME_LENGTH) and _storable(password, MAX_PASSWORD_LENGTH):
        found = await repository.account_for_sign_in(pool, username)
        if found is not None:
            account, stored = found
    else:
        password = ""  # no such user can exist; still verified below, for the same timing
    if stored is not None and stored.startswith(OIDC_PLACEHOLDER):
        stored = None  # an OIDC user has no password: refused like an unknown user
    # An unknown user (or one without a password) still costs one argon2 verification, so the
    # response time does not tell which usernames exist.
    ok = await asyncio.to_thread(_verify, stored or _decoy_hash(), password)
    if account is None or not stored or not ok:
        raise Unauthorized(BAD_PASSWORD)
    return _active(account, "token")


@cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
