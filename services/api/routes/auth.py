"""Sign-in and the caller's libraries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.api import repository
from services.api.auth import authenticate_password
from services.api.deps import CurrentUser, PoolDep, SettingsDep
from shared.dto import ErrorBody, LoginRequest, LoginResponse
from shared.tokens import issue_token

router = APIRouter(prefix="/api/v1", tags=["auth"])


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


@router.get("/auth/me", responses={401: {"model": ErrorBody}})
async def me(user: CurrentUser) -> dict[str, str]:
    return {"id": str(user.id), "username": user.username, "role": user.role}


@router.get("/libraries", responses={401: {"model": ErrorBody}})
async def libraries(user: CurrentUser, pool: PoolDep) -> dict[str, list[dict[str, str]]]:
    """The libraries the caller may read (for the New Export dialog)."""
    libs = await repository.readable_libraries(pool, user.id)
    return {"libraries": [{"id": str(i), "name": n} for i, n in libs]}
