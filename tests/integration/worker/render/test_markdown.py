"""The Markdown format (``services.worker.render.markdown``): the encoder's bytes and structure,
and the framing of the database's rendering."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from services.worker.render import markdown
from shared.fields import SERIES_FIELDS, columns
from tests.fixture_catalog import BATMAN_SUMMARY, HOSTILE_NAME
from tests.services.worker.render.samples import (
    BLANK,
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


async def test_fixture_markdown(fixture_sections: dict[str, Sections]) -> None:
    both = fixture_sections["series"] + fixture_sections["books"]
    text = export("md", "both", both).decode()
    bullets = sum(len(row) - 1 for _, _, rows in both for row in rows)
    assert markdown_structure(text) == {"h1": 2, "h2": 8 + 16, "bullets": bullets}
    items = [len(row) - 1 for _, _, rows in both for row in rows if len(row) > 1]
    assert_commonmark_structure(text, h1=2, h2=8 + 16, items=items)
    assert "## \\# Title \\*bold\\* \\[x\\](y)\n" in text
    assert '## =HYPERLINK("http://evil.example","click")\n' in text


def test_copy_text_unescape() -> None:
    # What COPY's text format sends for each byte PostgreSQL escapes, and a run of backslashes.
    escaped = b"a\\\\b\\bc\\fd\\ne\\rf\\tg\\vh\\\\\\\\n\\\\"
    assert markdown._unescape(escaped) == b"a\\b\bc\fd\ne\rf\tg\vh\\\\n\\"
    assert markdown._unescape(b"plain") == b"plain"
