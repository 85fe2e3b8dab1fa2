"""shared.formats: the one list of formats and compressions, and everything derived from it."""

from __future__ import annotations

from datetime import UTC, datetime

from shared import fields, metrics, naming
from shared.formats import (
    COMPRESSION_MESSAGE,
    COMPRESSIONS,
    EXPORT_TYPE_MESSAGE,
    FORMAT_MESSAGE,
    FORMATS,
    Compression,
    ExportFormat,
    ExportStatus,
    ExportType,
    both_unsupported_message,
    stored_extension,
    stored_media_type,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_every_format_has_its_info_in_spec_order() -> None:
    assert list(FORMATS) == list(ExportFormat)
    assert [f.value for f in FORMATS] == ["json", "csv", "md", "jsonl", "xlsx", "parquet"]
    for key, info in FORMATS.items():
        assert info.key is key
        assert info.extension.startswith(".")
        assert info.media_type.startswith(info.content_type)


def test_validation_messages_are_the_spec_words() -> None:
    assert FORMAT_MESSAGE == "Format must be 'json', 'csv', 'md', 'jsonl', 'xlsx', or 'parquet'"
    assert EXPORT_TYPE_MESSAGE == "Export type must be 'series', 'books', or 'both'"
    assert COMPRESSION_MESSAGE == "Compression must be 'none' or 'gzip'"
    # Codex's own CSV keeps Codex's words (SPEC §6); Parquet names every alternative (§10).
    assert (
        both_unsupported_message(ExportFormat.CSV)
        == "CSV format is not supported for 'both' export type. Use JSON or Markdown."
    )
    assert both_unsupported_message(ExportFormat.PARQUET) == (
        "Parquet format is not supported for 'both' export type. "
        "Use JSON, JSON Lines, Markdown or Excel."
    )


def test_the_field_catalog_lists_every_format_for_the_page() -> None:
    listed = fields.catalog_document()["formats"]
    assert listed == [
        {"key": "json", "extension": ".json", "contentType": "application/json",
         "supportsBoth": True, "label": "JSON"},
        {"key": "csv", "extension": ".csv", "contentType": "text/csv",
         "supportsBoth": False, "label": "CSV"},
        {"key": "md", "extension": ".md", "contentType": "text/markdown",
         "supportsBoth": True, "label": "Markdown"},
        {"key": "jsonl", "extension": ".jsonl", "contentType": "application/x-ndjson",
         "supportsBoth": True, "label": "JSON Lines"},
        {"key": "xlsx", "extension": ".xlsx", "contentType": XLSX,
         "supportsBoth": True, "label": "Excel"},
        {"key": "parquet", "extension": ".parquet", "contentType": "application/vnd.apache.parquet",
         "supportsBoth": False, "label": "Parquet"},
    ]  # fmt: skip


def test_stored_names_and_types_follow_the_compression() -> None:
    assert list(COMPRESSIONS) == [Compression.NONE, Compression.GZIP]
    assert stored_extension("csv", "none") == ".csv"
    assert stored_extension("xlsx", "gzip") == ".xlsx.gz"
    assert stored_media_type("csv", "none") == "text/csv; charset=utf-8"
    assert stored_media_type("parquet", "none") == "application/vnd.apache.parquet"
    assert stored_media_type("xlsx", "none") == XLSX  # binary: no charset
    for fmt in ExportFormat:
        assert stored_media_type(fmt, "gzip") == "application/gzip"


def test_derived_lists_follow_the_registry() -> None:
    assert metrics.FORMATS == tuple(f.value for f in ExportFormat)
    assert metrics.TYPES == tuple(t.value for t in ExportType)
    assert metrics.STATUSES == tuple(s.value for s in ExportStatus)
    made = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for fmt, info in FORMATS.items():
        name = naming.export_file_name("series", fmt.value, ["Comics"], made)
        assert name == f"codex-series-comics-20260102T030405Z{info.extension}"
        gzipped = naming.export_file_name("series", fmt.value, ["Comics"], made, "gzip")
        assert gzipped == name + ".gz"
