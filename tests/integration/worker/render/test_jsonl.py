"""The JSON Lines format (``services.worker.render.jsonl``): the encoder's bytes, and the same
objects as the JSON export."""

from __future__ import annotations

import json

import pytest

from shared.fields import SERIES_FIELDS, columns
from tests.services.worker.render.samples import (
    BOOK_COLUMNS,
    BOOKS_ONLY,
    BOTH,
    HOSTILE,
    SERIES_COLUMNS,
    SERIES_ONLY,
    Sections,
    export,
)

# Encoder unit tests beside the fixture catalog's full exports, read from real PostgreSQL.
pytestmark = pytest.mark.integration


def test_jsonl_series_bytes() -> None:
    assert export("jsonl", "series", SERIES_ONLY) == (
        b'{"series_name":"Akira","created_at":"2024-01-15T06:00:00Z","title":"Akira",'
        b'"year":1982,"genres":["Cyberpunk","Sci-Fi"],"progress":33.33}\n'
        b'{"series_name":"Blank","progress":0}\n'
    )


def test_jsonl_books_bytes() -> None:
    assert export("jsonl", "books", BOOKS_ONLY) == (
        b'{"book_name":"Vol 1","number":1.5,"completed":true,'
        b'"completed_at":"2024-04-01T08:00:00.500000Z"}\n'
        b'{"book_name":"Vol 2","number":2,"completed":false}\n'
    )


def test_jsonl_both_tags_every_line_series_first() -> None:
    assert export("jsonl", "both", BOTH) == (
        b'{"type":"series","series_name":"Akira","created_at":"2024-01-15T06:00:00Z",'
        b'"title":"Akira","year":1982,"genres":["Cyberpunk","Sci-Fi"],"progress":33.33}\n'
        b'{"type":"books","book_name":"Vol 1","number":1.5,"completed":true,'
        b'"completed_at":"2024-04-01T08:00:00.500000Z"}\n'
    )


def test_jsonl_empty_is_an_empty_file() -> None:
    assert export("jsonl", "series", [("series", SERIES_COLUMNS, [])]) == b""
    both = [("series", SERIES_COLUMNS, []), ("books", BOOK_COLUMNS, [])]
    assert export("jsonl", "both", both) == b""


def test_jsonl_hostile_text_stays_on_its_line() -> None:
    rows = [{"series_name": text or "x", "title": text} for text in HOSTILE if text]
    out = export("jsonl", "series", [("series", columns(["title"], SERIES_FIELDS), rows)])
    lines = out.split(b"\n")
    assert lines[-1] == b""  # every line ends with a line feed, the last one too
    assert [json.loads(line) for line in lines[:-1]] == rows


def _lines(out: bytes) -> list[dict[str, object]]:
    assert out.endswith(b"\n")
    return [json.loads(line) for line in out.decode().split("\n")[:-1]]


async def test_fixture_jsonl_is_the_json_export(fixture_sections: dict[str, Sections]) -> None:
    for kind in ("series", "books"):
        sections = fixture_sections[kind]
        assert _lines(export("jsonl", kind, sections)) == json.loads(export("json", kind, sections))
    both = fixture_sections["series"] + fixture_sections["books"]
    document = json.loads(export("json", "both", both))
    lines = _lines(export("jsonl", "both", both))
    assert [line.pop("type") for line in lines] == ["series"] * 8 + ["books"] * 16
    assert lines == document["series"] + document["books"]
    assert export("jsonl", "both", both) == export("jsonl", "both", both)
