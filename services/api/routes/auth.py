"""Sign-in and the caller's libraries.

Served twice: under ``/api/v1`` for standalone use and scripts, and under the exports prefix
``/api/v1/user/exports`` for the page. Beside Codex a proxy sends only the exports prefix and
the page to this product (``deploy/codex/``), and Codex answers ``/api/v1/auth/...`` and
``/api/v1/libraries`` in shapes of its own: the page's calls stay on paths that reach us.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.api import repository
from services.api.auth import authenticate_password
from services.api.deps import CatalogPoolDep, CurrentUser, PoolDep, SettingsDep
from services.api.errors import catalog_reads
from shared.dto import ErrorBody, LoginRequest, LoginResponse
from shared.tokens import issue_token

PAGE_PREFIX = "/api/v1/user/exports"

router = APIRouter(prefix="/api/v1", tags=["auth"])
# The same operations for the page, on the prefix a proxy in front of Codex sends to us.
page_router = APIRouter(prefix=PAGE_PREFIX, tags=["page"], include_in_schema=False)


@page_router.post("/auth/login", response_model=LoginResponse)
@router.post("/auth/login", response_model=LoginResponse, responses={401: {"model": ErrorBody}})
async def login(body: LoginRequest, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    user = await authenticate_password(pool, body.username, body.password)
    token, expires = issue_token(
        user.id,
        user.username,
        user.role,
        settings.jwt_secret.get_secret_value(),
        settings.jwt_ttl_seconds,
    )
    return LoginResponse(token=token, expires_at=expires).model_dump(mode="json", by_alias=True)


@page_router.get("/auth/me")
@router.get("/auth/me", responses={401: {"model": ErrorBody}})
async def me(user: CurrentUser) -> dict[str, str]:
    return {"id": str(user.id), "username": user.username, "role": user.role}


@page_router.get("/libraries")
@router.get("/libraries", responses={401: {"model": ErrorBody}})
async def libraries(user: CurrentUser, catalog: CatalogPoolDep) -> dict[str, list[dict[str, str]]]:
    """The libraries the caller may read (for the New Export dialog), from the catalog database
    (a read replica when one is set)."""
    with catalog_reads():
        libs = await repository.readable_libraries(catalog, user.id)
    return {"libraries": [{"id": str(i), "name": n} for i, n in libs]}
