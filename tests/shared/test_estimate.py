"""``shared.estimate``: every format has a size model, and the sample query stays bounded."""

from __future__ import annotations

import pytest

from shared.estimate import SAMPLE_BOOKS, SAMPLE_SERIES, SIZE_MODELS, measure_query
from shared.fields import ALL_BOOKS, ALL_SERIES
from shared.formats import FORMATS


def test_every_format_has_a_size_model() -> None:
    # A new format adds its model to shared.estimate.SIZE_MODELS (see its docstring).
    assert set(SIZE_MODELS) == set(FORMATS)


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
