"""The XLSX format (``services.worker.render.xlsx``) read back with openpyxl: sheets, header,
cell types, the formula guard, Excel's limits, the scratch directory."""

from __future__ import annotations

import io
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest

from services.worker.render import xlsx
from shared.fields import SERIES_FIELDS, columns
from tests.integration.worker.render.readers import excel_text, read_xlsx
from tests.services.worker.render.samples import (
    BOOK_COLUMNS,
    BOTH,
    HOSTILE,
    SERIES_COLUMNS,
    Sections,
    export_file,
)

# Encoder tests beside the fixture catalog's full exports, read from real PostgreSQL.
pytestmark = pytest.mark.integration


def _scratch() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("codex-export-xlsx-*")}


async def test_both_sheets_header_and_cell_types() -> None:
    before = _scratch()
    data = await export_file("xlsx", "both", BOTH)
    assert _scratch() == before  # the scratch directory is gone
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == ["Series", "Books"]
    series, books = book["Series"], book["Books"]
    assert [c.value for c in series[1]] == [c.label for c in SERIES_COLUMNS]
    assert all(c.font.b for c in series[1]) and not any(c.font.b for c in series[2])
    assert series.freeze_panes == "A2" and books.freeze_panes == "A2"
    assert series.auto_filter.ref == "A1:F2"
    akira = {c.column_letter: c for c in series[2]}
    assert (akira["A"].value, akira["A"].data_type) == ("Akira", "s")
    assert akira["B"].value == datetime(2024, 1, 15, 6)  # UTC wall-clock time
    assert akira["B"].is_date and akira["B"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert (akira["D"].value, akira["D"].data_type) == (1982, "n")
    assert akira["E"].value == "Cyberpunk; Sci-Fi"
    assert (akira["F"].value, akira["F"].data_type) == (33.33, "n")
    vol = [c.value for c in books[2]]
    assert vol == ["Vol 1", 1.5, True, datetime(2024, 4, 1, 8, 0, 0, 500000)]
    assert books["C2"].data_type == "b"
    # Widths follow the longest label or value, within bounds.
    widths = {k: d.width for k, d in series.column_dimensions.items()}
    assert xlsx.MIN_WIDTH <= min(widths.values()) and max(widths.values()) <= xlsx.MAX_WIDTH + 1
    assert widths["B"] >= xlsx.TIME_WIDTH


async def test_text_is_never_a_formula_and_stays_exact() -> None:
    texts = [t for t in HOSTILE if t] + [
        '=HYPERLINK("http://evil","click")',
        "_x0041_ literal",
        # XlsxWriter's own constant-memory strings take <r>…</r> for rich-text XML, unescaped:
        # this name would have become a formula cell in B2.
        '<r><t>x</t></r></is></c><c r="B2"><f>HYPERLINK("http://evil","click")</f></c>'
        '<c r="C2" t="inlineStr"><is><r><t>y</t></r>',
        "<r>rich?</r>",
        "\ufffe\uffff nonchars",
    ]
    rows = [{"series_name": t, "title": t} for t in texts]
    data = await export_file(
        "xlsx", "series", [("series", columns(["title"], SERIES_FIELDS), rows)]
    )
    sheet = openpyxl.load_workbook(io.BytesIO(data))["Series"]
    for cells, text in zip(sheet.iter_rows(min_row=2), texts, strict=True):
        assert len(cells) == 2  # nothing injected beside the two cells
        for cell in cells:
            assert cell.data_type == "s", (text, cell.data_type)
            assert excel_text(cell.value) == text
    assert b"<f>" not in data  # no formula anywhere in the file


async def test_excel_limits_long_text_and_dates_outside_excel() -> None:
    long = "x" * 40_000
    rows = [
        {"series_name": long, "created_at": datetime(5, 3, 4, tzinfo=UTC)},
        {
            "series_name": "late",
            "created_at": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        },
        {"series_name": "ok", "created_at": datetime(1900, 3, 1, tzinfo=UTC)},
        # asyncpg reads PostgreSQL's 'infinity' as a naive datetime.max.
        {"series_name": "infinity", "created_at": datetime.max},
    ]
    data = await export_file(
        "xlsx", "series", [("series", columns(["created_at"], SERIES_FIELDS), rows)]
    )
    _, body = read_xlsx(data)["Series"]
    assert body[0] == ["x" * 32_767, "0005-03-04T00:00:00Z"]
    assert body[1] == ["late", "9999-12-31T23:59:59.999999Z"]
    assert body[2] == ["ok", datetime(1900, 3, 1)]
    assert body[3] == ["infinity", "9999-12-31T23:59:59.999999Z"]


async def test_rows_past_excel_sheet_limit_go_on_in_a_second_sheet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(xlsx, "MAX_ROWS", 4)  # header + 3 rows per sheet
    rows = [{"book_name": f"Vol {n}"} for n in range(8)]
    data = await export_file("xlsx", "books", [("books", BOOK_COLUMNS[:1], rows)])
    sheets = read_xlsx(data)
    assert list(sheets) == ["Books", "Books (2)", "Books (3)"]
    assert all(header == ["Book Name"] for header, _ in sheets.values())
    assert [r[0] for _, body in sheets.values() for r in body] == [r["book_name"] for r in rows]


async def test_empty_sections_keep_their_sheets() -> None:
    data = await export_file(
        "xlsx", "both", [("series", SERIES_COLUMNS, []), ("books", BOOK_COLUMNS, [])]
    )
    sheets = read_xlsx(data)
    assert [(name, header[0], body) for name, (header, body) in sheets.items()] == [
        ("Series", "Series Name", []),
        ("Books", "Book Name", []),
    ]


async def test_the_bytes_are_fixed_by_the_rows(fixture_sections: dict[str, Sections]) -> None:
    both = fixture_sections["series"] + fixture_sections["books"]
    first = await export_file("xlsx", "both", both)
    assert first == await export_file("xlsx", "both", both)
    book = openpyxl.load_workbook(io.BytesIO(first))
    assert book.properties.created == datetime(1980, 1, 1)
    assert [len(list(book[s].iter_rows())) - 1 for s in book.sheetnames] == [8, 16]
