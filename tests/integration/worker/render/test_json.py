"""The JSON format (``services.worker.render.json``): the encoder's bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.fields import SERIES_FIELDS, columns
from tests.services.worker.render.samples import (
    BOOK_COLUMNS,
    BOOKS_ONLY,
    BOTH,
    SERIES_COLUMNS,
    SERIES_ONLY,
    Sections,
    export,
)

# Encoder unit tests beside the fixture catalog's full exports, read from real PostgreSQL.
pytestmark = pytest.mark.integration


def test_json_series_bytes() -> None:
    assert export("json", "series", SERIES_ONLY) == (
        b"[\n"
        b'{"series_name":"Akira","created_at":"2024-01-15T06:00:00Z","title":"Akira",'
        b'"year":1982,"genres":["Cyberpunk","Sci-Fi"],"progress":33.33},\n'
        b'{"series_name":"Blank","progress":0}\n'
        b"]\n"
    )


def test_json_books_bytes() -> None:
    assert export("json", "books", BOOKS_ONLY) == (
        b"[\n"
        b'{"book_name":"Vol 1","number":1.5,"completed":true,'
        b'"completed_at":"2024-04-01T08:00:00.500000Z"},\n'
        b'{"book_name":"Vol 2","number":2,"completed":false}\n'
        b"]\n"
    )


def test_json_both_bytes() -> None:
    assert export("json", "both", BOTH) == (
        b"{\n"
        b'"series": [\n'
        b'{"series_name":"Akira","created_at":"2024-01-15T06:00:00Z","title":"Akira",'
        b'"year":1982,"genres":["Cyberpunk","Sci-Fi"],"progress":33.33}\n'
        b"],\n"
        b'"books": [\n'
        b'{"book_name":"Vol 1","number":1.5,"completed":true,'
        b'"completed_at":"2024-04-01T08:00:00.500000Z"}\n'
        b"]\n"
        b"}\n"
    )


def test_json_empty() -> None:
    assert export("json", "series", [("series", SERIES_COLUMNS, [])]) == b"[]\n"
    both = export("json", "both", [("series", SERIES_COLUMNS, []), ("books", BOOK_COLUMNS, [])])
    assert both == b'{\n"series": [],\n"books": []\n}\n'
    assert json.loads(both) == {"series": [], "books": []}


def test_json_keeps_text_exact() -> None:
    row = {"series_name": 'Ann, "The" <b>\n', "title": "ナルト"}
    out = export("json", "series", [("series", columns(["title"], SERIES_FIELDS), [row])])
    assert json.loads(out) == [row]
    assert "ナルト".encode() in out  # UTF-8, not \u escapes


def _no_nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return value is not None


async def test_fixture_json(fixture_sections: dict[str, Sections]) -> None:
    both = fixture_sections["series"] + fixture_sections["books"]
    out = export("json", "both", both)
    document = json.loads(out)
    assert len(document["series"]) == 8
    assert len(document["books"]) == 16
    assert _no_nulls(document)
    assert document["series"][1]["updated_at"] == "2024-02-01T12:30:45.123456Z"
    assert document["books"][6]["completed_at"] == "2024-04-01T08:00:00.500000Z"
    # One row object per line: 8 + 16 rows plus the 6 structural lines.
    assert len(out.decode().splitlines()) == 8 + 16 + 6
    assert out == export("json", "both", both)
