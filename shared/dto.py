"""API data transfer objects (camelCase on the wire), shared by HTTP and bus intake."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from shared.formats import (
    COMPRESSIONS,
    FORMATS,
    Compression,
    ExportFormat,
    ExportStatus,
    ExportType,
)

FORMAT_HELP = "Export format: " + ", ".join(f"'{f.value}'" for f in FORMATS)
COMPRESSION_HELP = (
    "Compression of the stored file: "
    + " or ".join(f"'{c.value}'" for c in COMPRESSIONS)
    + " (default 'none'); 'gzip' stores <name>.<ext>.gz, served as application/gzip"
)


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ExportCreate(CamelModel):
    """Body of ``POST /api/v1/user/exports/series``.

    Types are deliberately loose: validation happens in one ordered pass so that the first
    failure wins with the exact message of SPEC §6.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    format: Any = Field(default=None, description=FORMAT_HELP)
    export_type: Any = "series"
    library_ids: Any = None
    fields: Any = None
    book_fields: Any = None
    preset: Any = None
    compression: Any = Field(default=None, description=COMPRESSION_HELP)


class ExportPublic(CamelModel):
    """One export as the API shows it (SPEC §6 ``ExportDto``)."""

    id: UUID
    format: ExportFormat
    # How the stored file is compressed (SPEC §10); an addition to Codex's SeriesExportDto.
    compression: Compression = Compression.NONE
    export_type: ExportType
    status: ExportStatus
    library_ids: list[UUID]
    library_names: list[str]
    fields: list[str]
    book_fields: list[str]
    rows_total: int | None = None
    rows_written: int = 0
    row_count: int | None = None
    file_size_bytes: int | None = None
    sha256: str | None = None
    file_name: str
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expires_at: datetime
    # The schedule this export is a run of (SPEC §12); an addition to Codex's SeriesExportDto.
    schedule_id: UUID | None = None


class ExportList(CamelModel):
    exports: list[ExportPublic]


class ErrorBody(BaseModel):
    """Every API error: a stable code and a message for people."""

    error: str
    message: str


SUBMIT_HELP = (
    "Create an export (request-reply): {userId, request: <the HTTP create body>, "
    f"idempotencyKey}}; {FORMAT_HELP}; {COMPRESSION_HELP}"
)


class SubmitRequest(CamelModel):
    """Request on the core subject ``export.submit`` from another service."""

    user_id: UUID
    request: ExportCreate = Field(default_factory=ExportCreate)
    idempotency_key: str | None = None
    # A run of this schedule of the user's (SPEC §12): the janitor's scheduled runs. Unknown or
    # another user's schedule → refused. At the concurrency limit the reply is LimitReached.
    schedule_id: UUID | None = None


class LoginRequest(BaseModel):
    username: str
    password: str


class LoginResponse(CamelModel):
    token: str
    expires_at: datetime


class ScheduleCreate(CamelModel):
    """Body of ``POST /api/v1/user/exports/schedules`` (SPEC §12); loose types, validated in
    one ordered pass like the create body."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    request: Any = None
    cron: Any = None
    timezone: Any = Field(default="UTC", description="IANA time zone name of the cron")
    keep: Any = Field(default=7, description="How many completed runs stay (1-30)")


class SchedulePublic(CamelModel):
    """One schedule as the API shows it."""

    id: UUID
    request: dict[str, Any]
    cron: str
    timezone: str
    keep: int
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_export_id: UUID | None = None
    created_at: datetime


class ScheduleList(CamelModel):
    schedules: list[SchedulePublic]
