"""``/api/v1/user/api-keys``: the caller's API keys (thin handlers; logic in ``api_keys.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from services.api import api_keys
from services.api.deps import CurrentUser, PoolDep
from services.api.errors import NotFound
from services.api.repository import ApiKey
from shared.dto import CamelModel, ErrorBody

router = APIRouter(prefix="/api/v1/user/api-keys", tags=["api-keys"])

KEY_NOT_FOUND = "API key not found"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
}


class ApiKeyCreate(CamelModel):
    """Body of ``POST``: a name to recognise the key by (checked in ``api_keys.clean_name``)."""

    name: str | None = None


class ApiKeyPublic(CamelModel):
    id: UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None = None


class ApiKeyCreated(CamelModel):
    """The new key with its secret, shown this once."""

    id: UUID
    name: str
    prefix: str
    created_at: datetime
    key: str


class ApiKeyList(CamelModel):
    api_keys: list[ApiKeyPublic]


def _public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(key, from_attributes=True)


@router.post(
    "",
    status_code=201,
    response_model=ApiKeyCreated,
    responses={**ERRORS, 403: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
async def create(body: ApiKeyCreate, user: CurrentUser, pool: PoolDep) -> JSONResponse:
    # A key cannot mint keys: a leaked key must not be able to outlive its own revocation.
    if user.via != "token":
        raise api_keys.KeyForbidden("API keys can only be created from a signed-in session")
    key, secret = await api_keys.create(pool, user.id, body.name)
    created = ApiKeyCreated(
        id=key.id, name=key.name, prefix=key.prefix, created_at=key.created_at, key=secret
    )
    return JSONResponse(
        created.model_dump(mode="json", by_alias=True),
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.get("", response_model=ApiKeyList, responses=ERRORS)
async def list_keys(user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    keys = await api_keys.list_for_user(pool, user.id)
    return ApiKeyList(api_keys=[_public(k) for k in keys]).model_dump(mode="json", by_alias=True)


@router.delete("/{key_id}", status_code=204, responses={**ERRORS, 404: {"model": ErrorBody}})
async def revoke(key_id: UUID, user: CurrentUser, pool: PoolDep) -> Response:
    # Another user's key looks exactly like one that does not exist.
    if not await api_keys.revoke(pool, user.id, key_id):
        raise NotFound(KEY_NOT_FOUND)
    return Response(status_code=204)
