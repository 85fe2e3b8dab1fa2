"""The format registry (``services.worker.render``): every format has a renderer, and the
encoders it makes."""

from __future__ import annotations

import pytest

from services.worker import render
from services.worker.render import RENDERERS, make_encoder
from shared.fields import ALL_BOOKS, ALL_SERIES, SERIES_FIELDS, columns
from shared.formats import FORMATS, ExportFormat
from tests.services.worker.render.samples import BOOKS_ONLY, BOTH, SERIES_ONLY, Sections, export


def test_every_format_has_a_renderer() -> None:
    assert set(RENDERERS) == set(ExportFormat) == set(FORMATS)
    for fmt, renderer in RENDERERS.items():
        assert renderer.info is FORMATS[fmt]


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_both_is_refused_exactly_where_the_format_says(fmt: ExportFormat) -> None:
    assert make_encoder(fmt, "series")
    assert make_encoder(fmt, "books")
    if FORMATS[fmt].supports_both:
        assert make_encoder(fmt, "both")
    else:
        with pytest.raises(ValueError, match="both"):
            make_encoder(fmt, "both")


@pytest.mark.parametrize(
    ("fmt", "export_type", "sections"),
    [
        ("json", "series", SERIES_ONLY),
        ("json", "both", BOTH),
        ("csv", "books", BOOKS_ONLY),
        ("md", "both", BOTH),
    ],
)
def test_same_input_same_bytes(fmt: str, export_type: str, sections: Sections) -> None:
    assert export(fmt, export_type, sections) == export(fmt, export_type, sections)


def test_unknown_format_or_type() -> None:
    with pytest.raises(ValueError, match="format"):
        make_encoder("xml", "series")
    with pytest.raises(ValueError, match="type"):
        make_encoder("json", "authors")


def test_unknown_fields_and_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown field"):
        render.plan("books", ["nope"], "json", {})
    with pytest.raises(ValueError, match="format"):
        render.as_format("xml")
    # Every field of both catalogs has a rendering in every format the database renders.
    labels = {key: key for key in (*ALL_SERIES, *ALL_BOOKS, "series_name", "book_name")}
    for fmt in ExportFormat:
        if not render.in_database(fmt):
            with pytest.raises(ValueError, match="not rendered by the database"):
                render.plan("series", list(ALL_SERIES), fmt, labels)
            continue
        assert render.plan("series", list(ALL_SERIES), fmt, labels).sql
        assert render.plan("books", list(ALL_BOOKS), fmt, labels).sql


def test_the_text_formats_render_in_the_database_the_binary_ones_do_not() -> None:
    assert {f for f in ExportFormat if render.in_database(f)} == {
        f for f, info in FORMATS.items() if info.text
    }


def test_unsupported_value_types_fail_loudly() -> None:
    cols = columns(["year"], SERIES_FIELDS)
    for fmt in ("csv", "md", "xlsx"):
        encoder = make_encoder(fmt, "series")
        try:
            encoder.start()
            encoder.start_section("series", cols)
            with pytest.raises(TypeError):
                encoder.row({"series_name": "x", "year": object()})
            with pytest.raises(TypeError):
                encoder.row({"series_name": b"bytes"})
        finally:
            render.discard(encoder)
