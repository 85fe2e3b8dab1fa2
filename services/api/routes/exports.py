"""``/api/v1/user/exports/series``: thin handlers; logic lives in ``service.py``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from services.api import changes as changes_diff
from services.api import links, service
from services.api.auth import User
from services.api.deps import (
    ApiKeyCredential,
    BearerCredentials,
    BrokerDep,
    CatalogPoolDep,
    CodexKeysDep,
    CurrentUser,
    PoolDep,
    SettingsDep,
    StoreDep,
    get_current_user,
)
from services.api.download import download_response
from services.api.errors import (
    EXPORT_NOT_FOUND,
    ApiError,
    Gone,
    NotFound,
    NotReady,
    Unavailable,
    ValidationFailed,
)
from services.api.estimate import estimate_export
from services.api.events import progress_events
from shared import fields as catalog
from shared import object_store
from shared import repository as exports_repo
from shared.dto import CamelModel, ErrorBody, ExportCreate, ExportList, ExportPublic
from shared.formats import ExportStatus

router = APIRouter(prefix="/api/v1/user/exports/series", tags=["exports"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
}


def _public(row: exports_repo.ExportRow) -> dict[str, Any]:
    return row.public().model_dump(mode="json", by_alias=True)


@router.post("", status_code=202, response_model=ExportPublic, responses=ERRORS)
async def create(
    body: ExportCreate,
    request: Request,
    user: CurrentUser,
    pool: PoolDep,
    catalog: CatalogPoolDep,
    broker: BrokerDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    row = await service.create_export(
        pool,
        broker,
        settings,
        user.id,
        body,
        idempotency_key=idempotency_key,
        request_id=getattr(request.state, "request_id", None),
        catalog_pool=catalog,
    )
    return JSONResponse(_public(row), status_code=202)


class EstimatePublic(CamelModel):
    """What an export would hold: its rows by section, and about how many bytes (SPEC §11)."""

    series: int
    books: int
    bytes: int | None  # None for a format that has no size model yet


@router.post(
    "/estimate",
    response_model=EstimatePublic,
    responses={**ERRORS, 503: {"model": ErrorBody}},
)
async def estimate(
    body: ExportCreate, user: CurrentUser, catalog: CatalogPoolDep
) -> dict[str, Any]:
    """Counts and a size estimate for a create body, before anything is queued (read on the
    catalog database: a read replica when one is set)."""
    found = await estimate_export(catalog, user.id, body)
    return EstimatePublic(series=found.series, books=found.books, bytes=found.bytes).model_dump()


@router.get("", response_model=ExportList, responses=ERRORS)
async def list_exports(user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    rows = await exports_repo.list_for_user(pool, user.id)
    return {"exports": [_public(r) for r in rows]}


@router.get("/fields", responses=ERRORS)
async def fields(user: CurrentUser) -> dict[str, object]:
    return catalog.catalog_document()


async def _own(pool: PoolDep, export_id: UUID, user_id: UUID) -> exports_repo.ExportRow:
    row = await exports_repo.get_for_user(pool, export_id, user_id)
    if row is None:
        raise NotFound(EXPORT_NOT_FOUND)
    return row


@router.get("/{export_id}", response_model=ExportPublic, responses=ERRORS)
async def get_one(export_id: UUID, user: CurrentUser, pool: PoolDep) -> dict[str, Any]:
    return _public(await _own(pool, export_id, user.id))


class DownloadLink(CamelModel):
    """A URL that downloads the export without other credentials, until ``expiresAt``."""

    url: str
    expires_at: datetime


@router.post("/{export_id}/download-link", response_model=DownloadLink, responses=ERRORS)
async def download_link(
    export_id: UUID, user: CurrentUser, pool: PoolDep, settings: SettingsDep
) -> JSONResponse:
    """A short-lived link to the export's file (SPEC §11); completed exports only (else 409)."""
    row = await _own(pool, export_id, user.id)
    if row.status != "completed" or row.sha256 is None:
        raise NotReady(f"Export is not ready for download (status: {row.status})")
    link = links.sign(
        settings.jwt_secret.get_secret_value(),
        user.id,
        row.id,
        row.sha256,
        settings.download_link_seconds,
    )
    url = f"{router.prefix}/{row.id}/download?token={link.token}"
    body = DownloadLink(url=url, expires_at=link.expires_at)
    # The link is a credential for its life: no cache may keep it.
    return JSONResponse(
        body.model_dump(mode="json", by_alias=True), headers={"Cache-Control": "no-store"}
    )


@dataclass(frozen=True, slots=True)
class _DownloadCaller:
    """Who downloads: a signed-in caller, or whoever holds a download link's token."""

    user: User | None
    token: str | None


async def _download_caller(
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    codex_keys: CodexKeysDep,
    bearer: BearerCredentials,
    api_key: ApiKeyCredential,
    token: Annotated[
        str | None,
        Query(
            description="A download link's token (POST /{export_id}/download-link): with it, "
            "no other credential is needed.",
        ),
    ] = None,
) -> _DownloadCaller:
    # The link decides when there is one: it is what a browser's download manager follows,
    # and it names its own user.
    if token is not None:
        return _DownloadCaller(None, token)
    return _DownloadCaller(
        await get_current_user(request, pool, settings, codex_keys, bearer, api_key), None
    )


@router.get("/{export_id}/download", responses={**ERRORS, 410: {"model": ErrorBody}})
async def download(
    export_id: UUID,
    request: Request,
    pool: PoolDep,
    store: StoreDep,
    settings: SettingsDep,
    caller: Annotated[_DownloadCaller, Depends(_download_caller)],
) -> Response:
    if caller.user is not None:
        row = await _own(pool, export_id, caller.user.id)
    else:
        secret = settings.jwt_secret.get_secret_value()
        row = await links.export_for_link(pool, secret, export_id, caller.token or "")
    return await download_response(request, row, store, settings.s3_bucket)


class ChangeCounts(CamelModel):
    added: int
    removed: int
    changed: int


class ChangeItem(CamelModel):
    """One row that differs: ``name`` is its anchor (series name, book name) as the newer
    export has it (the older one for a removed row); ``fields`` the changed keys, catalog order."""

    kind: Literal["series", "books"]
    change: Literal["added", "removed", "changed"]
    id: str
    name: str
    fields: list[str]


class ChangesPublic(CamelModel):
    """What changed from export ``since`` to this one (SPEC §12): full counts per section
    (zeros for a section the exports do not have) and the first 1,000 items in §5 order."""

    since: UUID
    series: ChangeCounts
    books: ChangeCounts
    items: list[ChangeItem]


@router.get(
    "/{export_id}/changes",
    response_model=ChangesPublic,
    responses={**ERRORS, 410: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
async def changes(
    export_id: UUID,
    since: Annotated[
        UUID,
        Query(description="The older export: what changed from it to this one"),
    ],
    user: CurrentUser,
    pool: PoolDep,
    store: StoreDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Compare two completed JSON / JSON Lines exports of one type, row by row on their ids;
    both files are streamed from the store, neither is held in memory."""
    newer = await _own(pool, export_id, user.id)
    older = await _own(pool, since, user.id)
    if not changes_diff.comparable(older, newer):
        raise ValidationFailed(changes_diff.NOT_COMPARABLE)
    for row in (newer, older):
        if row.status != ExportStatus.COMPLETED:
            raise NotReady(
                f"Export {row.id} is not completed (status: {row.status}): "
                "only completed exports can be compared"
            )
    try:
        found = await changes_diff.compare(store, settings.s3_bucket, older, newer)
    except object_store.ObjectMissing as err:
        raise Gone("The file of one of the exports is no longer available") from err
    except object_store.ObjectStoreError as err:
        raise Unavailable("The export files cannot be read right now; try again") from err
    except changes_diff.UnreadableFile as err:
        raise ApiError(f"An export's file could not be read: {err}") from err
    return found.public(str(older.id))


@router.post("/{export_id}/cancel", response_model=ExportPublic, responses=ERRORS)
async def cancel(
    export_id: UUID, user: CurrentUser, pool: PoolDep, broker: BrokerDep
) -> dict[str, Any]:
    return _public(await service.cancel_export(pool, broker, user.id, export_id))


@router.get("/{export_id}/events", responses=ERRORS)
async def events(
    export_id: UUID, request: Request, user: CurrentUser, pool: PoolDep
) -> StreamingResponse:
    """Server-sent events: the export each time its status or progress changes, until it ends."""
    await _own(pool, export_id, user.id)
    return StreamingResponse(
        progress_events(request, pool, export_id, user.id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.delete("/{export_id}", status_code=204, responses=ERRORS)
async def delete(
    export_id: UUID,
    user: CurrentUser,
    pool: PoolDep,
    broker: BrokerDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    await service.delete_export(pool, broker, store, settings.s3_bucket, user.id, export_id)
    return Response(status_code=204)
