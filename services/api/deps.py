"""Typed FastAPI dependencies: the lifespan's clients and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from faststream.nats import NatsBroker
from minio import Minio

from services.api.auth import User, decode_token, load_user
from services.api.errors import Unauthorized
from shared.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def get_store(request: Request) -> Minio:
    store: Minio = request.app.state.store
    return store


def get_broker(request: Request) -> NatsBroker:
    broker: NatsBroker = request.app.state.broker
    return broker


SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
StoreDep = Annotated[Minio, Depends(get_store)]
BrokerDep = Annotated[NatsBroker, Depends(get_broker)]


async def get_current_user(request: Request, pool: PoolDep, settings: SettingsDep) -> User:
    """The caller, from ``Authorization: Bearer <JWT>``; anything else is 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        user_id = decode_token(token.strip(), settings.jwt_secret.get_secret_value())
        return await load_user(pool, user_id)
    raise Unauthorized()


CurrentUser = Annotated[User, Depends(get_current_user)]
