"""Sample rows and the driver the encoder tests share (``services.worker.render`` formats)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.worker import render as render_package
from services.worker.render import Encoder, make_encoder
from shared.fields import BOOK_FIELDS, SERIES_FIELDS, Field, columns

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


async def export_file(fmt: str, export_type: str, sections: Sections) -> bytes:
    """The whole file, as the worker writes it: a library's file on disk (XLSX) included,
    which is removed afterwards."""
    encoder = make_encoder(fmt, export_type)
    out = [render(encoder, sections)]

    async def write(data: bytes) -> None:
        out.append(data)

    try:
        await render_package.spool(encoder, write)
    finally:
        render_package.discard(encoder)
    return b"".join(out)


SERIES_ONLY: Sections = [("series", SERIES_COLUMNS, [AKIRA, BLANK])]
BOOKS_ONLY: Sections = [("books", BOOK_COLUMNS, [VOL_1, VOL_2])]
BOTH: Sections = [("series", SERIES_COLUMNS, [AKIRA]), ("books", BOOK_COLUMNS, [VOL_1])]
# Every string a renderer could get wrong: CSV/JSON/Markdown metacharacters, control
# characters, Unicode whitespace and line separators, formula starts, COPY's own escapes.
HOSTILE = [
    '"quoted", with comma',
    "back\\slash \\N \\. \\\\",
    "ctl\x01\x02\x1f\x7f end",
    "tab\there\tand\t",
    "cr\ronly",
    "lf\nonly",
    "crlf\r\nend\r\n",
    "emoji 😀 and ナルト and é",
    "sep\u2028line\u2029para",
    "=1+1",
    "+plus",
    "-minus",
    "@at",
    "\tleading tab",
    "\rleading cr",
    "# Title *b* _u_ [l](u) `c` ~s~ <b> &amp; &#35; & \\ |",
    "  padded both  ",
    "\u3000ideographic\u3000\xa0",
    "\x1c\x1dfile sep\x1e\x1f",
    "next\x85line",
    "1. one\n2) two\n- dash\n> quote\n```\n---\n| a |\n[x]: y\n1234567890. ten",
    "\n\n  lead blank\n\n  mid  \n\n\t\n",
    " \n \r\n ",
    "vertical\x0btab\x0cfeed",
    "<script>alert(1)</script>",
    "a\r\n\r\nb\n\rc",
    "\\",
    "'",
    " ",
]
