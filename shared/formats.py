"""The output formats, compressions, export types and statuses: the one list of each (SPEC §5,
§6, §10).

Every other list — API validation and its messages, the field-catalog response, file names and
content types, metrics labels, CLI choices, the page (which reads them from the API) — is
derived from these. The worker's render package maps each format to how it renders
(``services/worker/render``); a format is added there and here, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    MD = "md"
    JSONL = "jsonl"
    XLSX = "xlsx"
    PARQUET = "parquet"


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"


class ExportType(StrEnum):
    SERIES = "series"
    BOOKS = "books"
    BOTH = "both"


class ExportStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Statuses of an export still in flight (pending or running), and of one that has ended.
ACTIVE_STATUSES = (ExportStatus.PENDING, ExportStatus.RUNNING)
ENDED_STATUSES = tuple(s for s in ExportStatus if s not in ACTIVE_STATUSES)


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """What every part of the product needs to know of a format, but how it renders."""

    key: ExportFormat
    extension: str  # with its dot, as SPEC §10 lists it
    content_type: str  # without parameters; text formats are served with charset=utf-8
    supports_both: bool
    label: str  # for people: the page's format choice
    text: bool = True  # UTF-8 text (served with "; charset=utf-8")
    codex: bool = False  # one of Codex's own formats (SPEC §6), whose messages keep Codex's words

    @property
    def media_type(self) -> str:
        """The ``Content-Type`` header of a download."""
        return f"{self.content_type}; charset=utf-8" if self.text else self.content_type

    def public(self) -> dict[str, object]:
        """The format as the field-catalog response lists it (camelCase)."""
        return {
            "key": self.key.value,
            "extension": self.extension,
            "contentType": self.content_type,
            "supportsBoth": self.supports_both,
            "label": self.label,
        }


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

FORMATS: dict[ExportFormat, FormatInfo] = {
    info.key: info
    for info in (
        FormatInfo(ExportFormat.JSON, ".json", "application/json", True, "JSON", codex=True),
        FormatInfo(ExportFormat.CSV, ".csv", "text/csv", False, "CSV", codex=True),
        FormatInfo(ExportFormat.MD, ".md", "text/markdown", True, "Markdown", codex=True),
        FormatInfo(ExportFormat.JSONL, ".jsonl", "application/x-ndjson", True, "JSON Lines"),
        FormatInfo(ExportFormat.XLSX, ".xlsx", XLSX_TYPE, True, "Excel", text=False),
        FormatInfo(
            ExportFormat.PARQUET,
            ".parquet",
            "application/vnd.apache.parquet",
            False,
            "Parquet",
            text=False,
        ),
    )
}
"""Every format, in the order of SPEC §10 (the API lists them in this order)."""


@dataclass(frozen=True, slots=True)
class CompressionInfo:
    """How a compression changes the stored file: its name's suffix and its content type."""

    key: Compression
    suffix: str  # appended to the format's extension: "codex-...json.gz"
    content_type: str | None  # None: the format's own


COMPRESSIONS: dict[Compression, CompressionInfo] = {
    info.key: info
    for info in (
        CompressionInfo(Compression.NONE, "", None),
        CompressionInfo(Compression.GZIP, ".gz", "application/gzip"),
    )
}
"""Every compression, the default first (SPEC §10)."""


def stored_extension(fmt: ExportFormat | str, compression: Compression | str) -> str:
    """The file name's extension: the format's, then the compression's (``.csv.gz``)."""
    return FORMATS[ExportFormat(fmt)].extension + COMPRESSIONS[Compression(compression)].suffix


def stored_media_type(fmt: ExportFormat | str, compression: Compression | str) -> str:
    """The ``Content-Type`` of the stored file: ``application/gzip`` once compressed (the bytes
    served are the stored ones), else the format's."""
    compressed = COMPRESSIONS[Compression(compression)].content_type
    return compressed or FORMATS[ExportFormat(fmt)].media_type


def quoted_list(values: list[str]) -> str:
    """``'a', 'b', or 'c'`` — how validation messages name the allowed values (SPEC §6)."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " or ".join(quoted)
    return ", ".join(quoted[:-1]) + ", or " + quoted[-1]


FORMAT_MESSAGE = "Format must be " + quoted_list([f.value for f in FORMATS])
EXPORT_TYPE_MESSAGE = "Export type must be " + quoted_list([t.value for t in ExportType])
COMPRESSION_MESSAGE = "Compression must be " + quoted_list([c.value for c in COMPRESSIONS])


def both_unsupported_message(fmt: ExportFormat) -> str:
    """The 400 for ``both`` with a format that holds one table (SPEC §6, §10).

    It names the formats that can hold both, by key in alphabetical order (``JSON, JSON Lines,
    Markdown or Excel``). For one of Codex's own formats (CSV) it names only Codex's, so the
    message is Codex's word for word (SPEC §6: ``Use JSON or Markdown.``) and Codex's front end
    and scripts see what Codex says.
    """
    codex_only = FORMATS[fmt].codex
    able = [
        info.label
        for info in sorted(FORMATS.values(), key=lambda info: info.key.value)
        if info.supports_both and (info.codex or not codex_only)
    ]
    listed = " or ".join(able) if len(able) <= 2 else ", ".join(able[:-1]) + " or " + able[-1]
    return f"{FORMATS[fmt].label} format is not supported for 'both' export type. Use {listed}."
