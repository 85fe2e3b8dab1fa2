"""The CSV format (``services.worker.render.csv``): the encoder's bytes."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest

from services.worker.render import make_encoder
from shared.fields import SERIES_FIELDS, columns
from tests.services.worker.render.samples import AKIRA, BOOKS_ONLY, SERIES_ONLY, Sections, export

# Encoder unit tests beside the fixture catalog's full exports, read from real PostgreSQL.
pytestmark = pytest.mark.integration


def test_csv_series_bytes() -> None:
    assert export("csv", "series", SERIES_ONLY) == (
        b"series_name,created_at,title,year,genres,progress\r\n"
        b"Akira,2024-01-15T06:00:00Z,Akira,1982,Cyberpunk; Sci-Fi,33.33\r\n"
        b"Blank,,,,,0\r\n"
    )


def test_csv_books_bytes() -> None:
    assert export("csv", "books", BOOKS_ONLY) == (
        b"book_name,number,completed,completed_at\r\n"
        b"Vol 1,1.5,true,2024-04-01T08:00:00.500000Z\r\n"
        b"Vol 2,2,false,\r\n"
    )


HOSTILE_COLUMNS = columns(
    ["summary", "publisher", "year", "authors", "alternate_titles", "external_ratings", "tags"],
    SERIES_FIELDS,
)
HOSTILE_ROW = {
    "series_name": '=HYPERLINK("http://evil.example","click")',
    "summary": 'a, "b"\r\nc',
    "publisher": "@Pub",
    "year": -44,
    "authors": [{"name": "Ann, B", "role": "writer"}, {"name": "Cy"}],
    "alternate_titles": [{"label": "ja", "title": "T"}],
    "external_ratings": [
        {"source": "S", "rating": 88.5, "votes": 1},
        {"source": "T", "rating": 90, "votes": 1200},
        {"source": "U", "rating": 7},
    ],
    "tags": ["-x", "+y"],
}


def test_csv_quoting_formula_guard_and_multi_values() -> None:
    out = export("csv", "series", [("series", HOSTILE_COLUMNS, [HOSTILE_ROW])])
    assert out == (
        b"series_name,summary,publisher,year,authors,tags,alternate_titles,external_ratings\r\n"
        b'"\'=HYPERLINK(""http://evil.example"",""click"")",'
        b'"a, ""b""\r\nc",'
        b"'@Pub,"
        b"-44,"  # a number, not text: no guard
        b'"Ann, B (writer); Cy",'
        b"'-x; +y,"  # joined multi-value text is text
        b"ja: T,"
        b"S: 88.5 (1 vote); T: 90 (1200 votes); U: 7\r\n"
    )


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", '"\'\rx"'),
        ("a=1", "a=1"),
        (" =1", " =1"),
        ("", '""'),  # not a blank line, which a reader would skip
    ],
)
def test_csv_formula_guard(text: str, cell: str) -> None:
    out = export("csv", "series", [("series", columns([], SERIES_FIELDS), [{"series_name": text}])])
    assert out == f"series_name\r\n{cell}\r\n".encode()


def test_csv_parses_back_to_the_same_values() -> None:
    rows = [HOSTILE_ROW, AKIRA | {"summary": "line 1\nline 2", "publisher": "P, Inc."}]
    out = export("csv", "series", [("series", HOSTILE_COLUMNS, rows)])
    parsed = list(csv.reader(io.StringIO(out.decode("utf-8"), newline="")))
    assert parsed[0] == [c.key for c in HOSTILE_COLUMNS]
    assert parsed[1] == [
        "'" + HOSTILE_ROW["series_name"],
        HOSTILE_ROW["summary"],
        "'@Pub",
        "-44",
        "Ann, B (writer); Cy",
        "'-x; +y",
        "ja: T",
        "S: 88.5 (1 vote); T: 90 (1200 votes); U: 7",
    ]
    assert parsed[2] == ["Akira", "line 1\nline 2", "P, Inc.", "1982", "", "", "", ""]


def test_csv_has_no_bom_and_refuses_both() -> None:
    assert not export("csv", "series", SERIES_ONLY).startswith(b"\xef\xbb\xbf")
    with pytest.raises(ValueError, match="both"):
        make_encoder("csv", "both")


@pytest.mark.parametrize("kind", ["series", "books"])
async def test_fixture_csv(fixture_sections: dict[str, Sections], kind: str) -> None:
    sections = fixture_sections[kind]
    out = export("csv", kind, sections)
    parsed = list(csv.reader(io.StringIO(out.decode("utf-8"), newline="")))
    cols, rows = sections[0][1], sections[0][2]
    assert parsed[0] == [c.key for c in cols]
    assert len(parsed) == 1 + len(rows)
    for cells, row in zip(parsed[1:], rows, strict=True):
        for col, cell in zip(cols, cells, strict=True):
            value = row.get(col.key)
            if value is None:
                assert cell == ""
            elif isinstance(value, str):
                guarded = value[:1] in ("=", "+", "-", "@", "\t", "\r")
                assert cell == ("'" + value if guarded else value)
            elif isinstance(value, bool):
                assert cell == str(value).lower()
            elif isinstance(value, int | float):
                assert type(value)(cell) == value
            elif isinstance(value, datetime):
                assert datetime.fromisoformat(cell) == value
    assert b"'=HYPERLINK(" in out
