"""The three renderers: exact bytes on small inputs, safety on hostile text, and the fixture."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from markdown_it import MarkdownIt

from services.worker import catalog
from services.worker.encoders import Encoder, make_encoder, rfc3339
from shared.fields import ALL_BOOKS, ALL_SERIES, BOOK_FIELDS, SERIES_FIELDS, Field, columns
from tests.conftest import Servers, create_database
from tests.fixture_catalog import BATMAN_SUMMARY, FIXTURE, HOSTILE_NAME, build

SERIES_COLUMNS = columns(["title", "year", "genres", "progress", "created_at"], SERIES_FIELDS)
BOOK_COLUMNS = columns(["number", "completed", "completed_at"], BOOK_FIELDS)

AKIRA = {
    "series_name": "Akira",
    "created_at": datetime(2024, 1, 15, 6, tzinfo=UTC),
    "title": "Akira",
    "year": 1982,
    "genres": ["Cyberpunk", "Sci-Fi"],
    "progress": 33.33,
}
BLANK = {"series_name": "Blank", "progress": 0}
VOL_1 = {
    "book_name": "Vol 1",
    "number": 1.5,
    "completed": True,
    "completed_at": datetime(2024, 4, 1, 8, 0, 0, 500000, tzinfo=UTC),
}
VOL_2 = {"book_name": "Vol 2", "number": 2, "completed": False}

Sections = list[tuple[str, list[Field], list[dict[str, Any]]]]


def render(encoder: Encoder, sections: Sections) -> bytes:
    """Drive an encoder exactly as the worker does."""
    out = [encoder.start()]
    for kind, cols, rows in sections:
        out.append(encoder.start_section(kind, cols))  # type: ignore[arg-type]
        out.extend(encoder.row(row) for row in rows)
        out.append(encoder.end_section())
    out.append(encoder.end())
    return b"".join(out)


def export(fmt: str, export_type: str, sections: Sections) -> bytes:
    return render(make_encoder(fmt, export_type), sections)


SERIES_ONLY: Sections = [("series", SERIES_COLUMNS, [AKIRA, BLANK])]
BOOKS_ONLY: Sections = [("books", BOOK_COLUMNS, [VOL_1, VOL_2])]
BOTH: Sections = [("series", SERIES_COLUMNS, [AKIRA]), ("books", BOOK_COLUMNS, [VOL_1])]


# --- JSON ----------------------------------------------------------------------------------------


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


# --- CSV -----------------------------------------------------------------------------------------


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


# --- Markdown ------------------------------------------------------------------------------------


def test_markdown_series_bytes() -> None:
    assert export("md", "series", SERIES_ONLY).decode() == (
        "## Akira\n"
        "\n"
        "- **Created At:** 2024-01-15T06:00:00Z\n"
        "- **Title:** Akira\n"
        "- **Year:** 1982\n"
        "- **Genres:** Cyberpunk, Sci-Fi\n"
        "- **Progress:** 33.33\n"
        "\n"
        "## Blank\n"
        "\n"
        "- **Progress:** 0\n"
    )


def test_markdown_both_bytes() -> None:
    assert export("md", "both", BOTH).decode() == (
        "# Series\n"
        "\n"
        "## Akira\n"
        "\n"
        "- **Created At:** 2024-01-15T06:00:00Z\n"
        "- **Title:** Akira\n"
        "- **Year:** 1982\n"
        "- **Genres:** Cyberpunk, Sci-Fi\n"
        "- **Progress:** 33.33\n"
        "\n"
        "# Books\n"
        "\n"
        "## Vol 1\n"
        "\n"
        "- **Number:** 1.5\n"
        "- **Completed:** Yes\n"
        "- **Completed At:** 2024-04-01T08:00:00.500000Z\n"
    )


def test_markdown_books_and_empty_sections() -> None:
    assert export("md", "books", BOOKS_ONLY).decode() == (
        "## Vol 1\n\n- **Number:** 1.5\n- **Completed:** Yes\n"
        "- **Completed At:** 2024-04-01T08:00:00.500000Z\n"
        "\n"
        "## Vol 2\n\n- **Number:** 2\n- **Completed:** No\n"
    )
    assert export("md", "series", [("series", SERIES_COLUMNS, [])]) == b"_No series._\n"
    empty_books = [("series", SERIES_COLUMNS, [BLANK]), ("books", BOOK_COLUMNS, [])]
    assert export("md", "both", empty_books).decode() == (
        "# Series\n\n## Blank\n\n- **Progress:** 0\n\n# Books\n\n_No books._\n"
    )
    only_anchor = [("series", columns([], SERIES_FIELDS), [{"series_name": "A"}, BLANK])]
    assert export("md", "series", only_anchor) == b"## A\n\n## Blank\n"


def test_markdown_escapes_headings_and_keeps_values_inside_bullets() -> None:
    row = {
        "series_name": HOSTILE_NAME + "\n<script> ~x~ `c` \\ _u_ # &amp; & x",
        "title": HOSTILE_NAME,
        "summary": "\n" + BATMAN_SUMMARY + "\r\n\r\n  > quote\n\t+ plus\n1) one\n| a | b |\n\n\n",
        "authors": [{"name": "Ann <Writer>", "role": "writer"}],
    }
    cols = columns(["title", "summary", "authors"], SERIES_FIELDS)
    assert export("md", "series", [("series", cols, [row])]).decode() == (
        r"## \# Title \*bold\* \[x\](y) &lt;script> \~x\~ \`c\` \\ \_u\_ \# \&amp; & x" + "\n"
        "\n"
        "- **Title:** # Title *bold* [x](y)\n"
        "- **Summary:** Bruce Wayne returns to Gotham.\n"
        r"  \## Evil" + "\n"
        r"  \- x" + "\n"
        r"  \---" + "\n"
        "  &lt;script>alert(1)&lt;/script>\n"
        r'  1\. not a list, "quoted"' + "\n"
        "\n"
        r"  \> quote" + "\n"
        r"  \+ plus" + "\n"
        r"  1\) one" + "\n"
        r"  \| a | b |" + "\n"
        "- **Authors:** Ann &lt;Writer> (writer)\n"
    )


def markdown_structure(text: str) -> dict[str, int]:
    """Count the document's blocks, line by line, failing on any line of unexpected shape."""
    counts = {"h1": 0, "h2": 0, "bullets": 0}
    for line in text.split("\n"):
        if line.startswith("# "):
            counts["h1"] += 1
        elif line.startswith("## "):
            counts["h2"] += 1
        elif line.startswith("- **"):
            counts["bullets"] += 1
        elif line.startswith("  "):
            rest = line[2:]
            assert rest, line
            assert not rest[0].isspace(), line
            # No continuation line may open a block of its own.
            assert not re.match(r"([#>+*=_|:~`\[-]|[0-9]+[.)]|<)", rest), line
        else:
            assert line in ("", "_No series._", "_No books._"), line
    return counts


HOSTILE_TEXTS = [
    "## Evil",
    "- x",
    "---",
    "***",
    "___",
    "===",
    "> quote",
    "1. one",
    "2) two",
    "```",
    "~~~",
    "<div>",
    "<!-- c -->",
    "[ref]: http://x",
    "| a | b |",
    "|---|---|",
    ":--|--:",
    "    code",
    "\t- tab",
    "# Title *bold* [x](y)",
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_markdown_hostile_lines_never_make_structure(text: str) -> None:
    rows = [
        {"series_name": text, "summary": f"{text}\n{text}\n\n{text}", "title": text},
        {"series_name": "next", "title": "t"},
    ]
    cols = columns(["title", "summary"], SERIES_FIELDS)
    out = export("md", "both", [("series", cols, rows), ("books", BOOK_COLUMNS, [])]).decode()
    assert markdown_structure(out) == {"h1": 2, "h2": 2, "bullets": 3}
    assert_commonmark_structure(out, h1=2, h2=2, items=[2, 1])


def assert_commonmark_structure(text: str, *, h1: int, h2: int, items: list[int]) -> None:
    """Parse with a CommonMark (+ GFM tables) parser: only the blocks the encoder meant."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    kinds = [t.type for t in tokens]
    assert kinds.count("heading_open") == h1 + h2
    assert [t.tag for t in tokens if t.type == "heading_open"].count("h1") == h1
    forbidden = {"hr", "blockquote_open", "fence", "code_block", "html_block", "table_open"}
    assert not forbidden & set(kinds)
    assert not any(c.type == "html_inline" for t in tokens for c in t.children or [])
    # One flat bullet list per row that has bullets, with one item per present value.
    lists, depth, sizes = 0, 0, []
    for token in tokens:
        if token.type == "bullet_list_open":
            depth += 1
            assert depth == 1, "nested list"
            lists += 1
            sizes.append(0)
        elif token.type == "bullet_list_close":
            depth -= 1
        elif token.type == "list_item_open" and depth == 1:
            sizes[-1] += 1
        assert token.type != "ordered_list_open"
    assert sizes == items


# --- All formats ---------------------------------------------------------------------------------


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


def test_timestamps_are_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2024, 1, 1, 12, tzinfo=plus_two)) == "2024-01-01T10:00:00Z"
    assert rfc3339(datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000001Z"


def test_unsupported_value_types_fail_loudly() -> None:
    cols = columns(["year"], SERIES_FIELDS)
    for fmt in ("csv", "md"):
        encoder = make_encoder(fmt, "series")
        encoder.start_section("series", cols)
        with pytest.raises(TypeError):
            encoder.row({"series_name": "x", "year": object()})


# --- The fixture, end to end ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def fixture_sections(real_servers: Servers) -> dict[str, Sections]:
    """The fixture's full series and book exports (alice, every field), read once."""
    url = await create_database(real_servers)
    conn = await asyncpg.connect(url)
    try:
        await build(conn)
        sc = catalog.Scope(FIXTURE.users["alice"].id, FIXTURE.library_ids())
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            series = [
                r async for b in catalog.series_batches(conn, sc, list(ALL_SERIES), 4) for r in b
            ]
            books = [r async for b in catalog.book_batches(conn, sc, list(ALL_BOOKS), 4) for r in b]
    finally:
        await conn.close()
    return {
        "series": [("series", columns(ALL_SERIES, SERIES_FIELDS), series)],
        "books": [("books", columns(ALL_BOOKS, BOOK_FIELDS), books)],
    }


def _no_nulls(value: Any) -> bool:
    if isinstance(value, dict):
        return all(_no_nulls(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_nulls(v) for v in value)
    return value is not None


@pytest.mark.integration
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


@pytest.mark.integration
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


@pytest.mark.integration
async def test_fixture_markdown(fixture_sections: dict[str, Sections]) -> None:
    both = fixture_sections["series"] + fixture_sections["books"]
    text = export("md", "both", both).decode()
    bullets = sum(len(row) - 1 for _, _, rows in both for row in rows)
    assert markdown_structure(text) == {"h1": 2, "h2": 8 + 16, "bullets": bullets}
    items = [len(row) - 1 for _, _, rows in both for row in rows if len(row) > 1]
    assert_commonmark_structure(text, h1=2, h2=8 + 16, items=items)
    assert "## \\# Title \\*bold\\* \\[x\\](y)\n" in text
    assert '## =HYPERLINK("http://evil.example","click")\n' in text
