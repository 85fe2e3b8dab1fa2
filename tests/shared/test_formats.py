"""shared.formats: the one list of formats, and everything derived from it."""

from __future__ import annotations

from shared import fields, metrics, naming
from shared.formats import (
    EXPORT_TYPE_MESSAGE,
    FORMAT_MESSAGE,
    FORMATS,
    ExportFormat,
    ExportStatus,
    ExportType,
    both_unsupported_message,
)


def test_every_format_has_its_info_in_spec_order() -> None:
    assert list(FORMATS) == list(ExportFormat)
    assert [f.value for f in FORMATS][:3] == ["json", "csv", "md"]
    for key, info in FORMATS.items():
        assert info.key is key
        assert info.extension.startswith(".")
        assert info.media_type.startswith(info.content_type)


def test_validation_messages_are_spec_sections_6_words() -> None:
    assert FORMAT_MESSAGE == "Format must be 'json', 'csv', 'md', or 'jsonl'"
    assert EXPORT_TYPE_MESSAGE == "Export type must be 'series', 'books', or 'both'"
    assert (
        both_unsupported_message(ExportFormat.CSV)
        == "CSV format is not supported for 'both' export type. Use JSON or Markdown."
    )


def test_the_field_catalog_lists_every_format_for_the_page() -> None:
    listed = fields.catalog_document()["formats"]
    assert listed == [
        {
            "key": "json",
            "extension": ".json",
            "contentType": "application/json",
            "supportsBoth": True,
            "label": "JSON",
        },
        {
            "key": "csv",
            "extension": ".csv",
            "contentType": "text/csv",
            "supportsBoth": False,
            "label": "CSV",
        },
        {
            "key": "md",
            "extension": ".md",
            "contentType": "text/markdown",
            "supportsBoth": True,
            "label": "Markdown",
        },
        {
            "key": "jsonl",
            "extension": ".jsonl",
            "contentType": "application/x-ndjson",
            "supportsBoth": True,
            "label": "JSON Lines",
        },
    ]


def test_derived_lists_follow_the_registry() -> None:
    assert metrics.FORMATS == tuple(f.value for f in ExportFormat)
    assert metrics.TYPES == tuple(t.value for t in ExportType)
    assert metrics.STATUSES == tuple(s.value for s in ExportStatus)
    from datetime import UTC, datetime

    made = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for fmt, info in FORMATS.items():
        name = naming.export_file_name("series", fmt.value, ["Comics"], made)
        assert name == f"codex-series-comics-20260102T030405Z{info.extension}"
