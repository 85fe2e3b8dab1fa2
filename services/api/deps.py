"""Typed FastAPI dependencies: the lifespan's clients and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from faststream.nats import NatsBroker
from minio import Minio

from services.api import ratelimit
from services.api.auth import User, authenticate_key, decode_token, load_user
from services.api.codex_keys import VerifiedKeys
from services.api.errors import Unauthorized
from shared.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def get_catalog_pool(request: Request) -> asyncpg.Pool:
    """Where the catalog is read: the read replica's pool, else the primary's
    (``shared.catalog_db``)."""
    pool: asyncpg.Pool = request.app.state.catalog_pool
    return pool


def get_store(request: Request) -> Minio:
    store: Minio = request.app.state.store
    return store


def get_codex_keys(request: Request) -> VerifiedKeys:
    keys: VerifiedKeys = request.app.state.codex_keys
    return keys


def get_broker(request: Request) -> NatsBroker:
    broker: NatsBroker = request.app.state.broker
    return broker


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
CatalogPoolDep = Annotated[asyncpg.Pool, Depends(get_catalog_pool)]
StoreDep = Annotated[Minio, Depends(get_store)]
BrokerDep = Annotated[NatsBroker, Depends(get_broker)]
CodexKeysDep = Annotated[VerifiedKeys, Depends(get_codex_keys)]

# Declared as security schemes so the OpenAPI document says how to authenticate; neither
# raises by itself (auto_error=False): get_current_user decides, with the API's own errors.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="Bearer",
    bearerFormat="JWT",
    description="A Codex HS256 token (claims sub, username, role, iat, exp).",
)
_api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description=(
        "A Codex API key (codex_<prefix>_<secret>), or a key created at /api/v1/user/api-keys"
        " (starts with cxk_)."
    ),
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyCredential = Annotated[str | None, Depends(_api_key)]


async def get_current_user(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    codex_keys: CodexKeysDep,
    bearer: BearerCredentials,
    api_key: ApiKeyCredential,
) -> User:
    """The caller, from ``Authorization: Bearer <JWT>`` or ``X-API-Key: <key>``; else 401.

    When both are sent the bearer token decides: a bad token is refused even next to a good
    key, so a request never silently runs as someone other than its token says.

    Then the request takes a token from the user's rate-limit bucket (429 when it is empty);
    a credential that fails takes from the client IP's instead (services/api/ratelimit.py).
    """
    try:
        user = await _authenticate(pool, settings, codex_keys, bearer, api_key)
    except Unauthorized:
        await ratelimit.charge_anonymous(request)
        raise
    await ratelimit.charge_user(request, user.id)
    return user


async def _authenticate(
    pool: asyncpg.Pool,
    settings: Settings,
    codex_keys: VerifiedKeys,
    bearer: HTTPAuthorizationCredentials | None,
    api_key: str | None,
) -> User:
    if bearer is not None and bearer.credentials.strip():
        user_id = decode_token(bearer.credentials.strip(), settings.jwt_secret.get_secret_value())
        return await load_user(pool, user_id)
    if api_key is not None and api_key.strip():
        return await authenticate_key(pool, codex_keys, api_key.strip())
    raise Unauthorized()


# The dependencies that read a credential: a route depending on one of them authenticates its
# caller, so the rate limiter leaves such a request with a credential to get_current_user.
CREDENTIAL_SCHEMES = (_bearer, _api_key)

CurrentUser = Annotated[User, Depends(get_current_user)]
