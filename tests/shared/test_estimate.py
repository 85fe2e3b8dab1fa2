"""``shared.estimate``: every format has a size model, and the sample query stays bounded."""

from __future__ import annotations

import pytest

from shared.estimate import (
    NO_MODEL,
    SAMPLE_BOOKS,
    SAMPLE_SERIES,
    SIZE_MODELS,
    FieldStats,
    JsonLinesSize,
    JsonSize,
    SectionStats,
    measure_query,
)
from shared.fields import ALL_BOOKS, ALL_SERIES, BOOK_FIELDS, SERIES_FIELDS
from shared.formats import FORMATS, ExportFormat


def test_every_format_has_a_size_model() -> None:
    # A new format adds its model to shared.estimate.SIZE_MODELS (see its docstring).
    assert set(SIZE_MODELS) == set(FORMATS)
    # A format without a model says why (its estimate has bytes: null).
    assert {f for f, model in SIZE_MODELS.items() if model is None} == set(NO_MODEL)
    assert all(NO_MODEL.values())


def _section(kind: str, rows: int) -> SectionStats:
    catalog = SERIES_FIELDS if kind == "series" else BOOK_FIELDS
    title = next(f for f in catalog if f.key == "title")
    # Every sampled row has a title of 10 JSON bytes (8 characters and quotes).
    return SectionStats(kind, rows, 4, 0, (FieldStats(title, 4, 40, 32, 0, 0),))  # type: ignore[arg-type]


def test_json_lines_is_the_json_rows_one_a_line() -> None:
    # {"title":"12345678"}\n is 21 bytes; for both, "type":"series", (16) or "type":"books", (15).
    series, books = _section("series", 3), _section("books", 5)
    assert JsonLinesSize().file_bytes([series], both=False) == 3 * 21
    assert JsonLinesSize().file_bytes([series, books], both=True) == 3 * 37 + 5 * 36
    assert JsonLinesSize().file_bytes([_section("books", 0)], both=False) == 0
    # JSON's rows are the same objects, with ",\n" (or "\n") before instead of "\n" after.
    assert JsonSize().row_bytes(series) == 20 + 2
    assert SIZE_MODELS[ExportFormat.JSONL].__class__ is JsonLinesSize


def test_the_measured_sample_is_bounded_and_unordered() -> None:
    for kind, fields in (("series", ALL_SERIES), ("books", ALL_BOOKS)):
        sql = measure_query(kind, list(fields)).sql  # type: ignore[arg-type]
        assert f"LIMIT {SAMPLE_SERIES}" in sql
        assert f"LIMIT {SAMPLE_BOOKS}" in sql
        assert "ORDER BY v.pos" not in sql and "row_number()" not in sql
        # No function that may refuse a value (exports.declined) is called by the measures.
        assert "exports.rfc3339" not in sql and "authors_as_" not in sql


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown field"):
        measure_query("series", ["nope"])
