"""Excel (``.xlsx``): one sheet per section, written by XlsxWriter in constant memory (SPEC §10).

The workbook a spreadsheet user expects:

- Sheets ``Series`` and ``Books`` (type both: both, series first). Row 1 holds the field labels,
  bold, frozen, with an autofilter over the whole table; then one row per catalog row, in the
  export's order (SPEC §5).
- Cells typed as the field's kind (``catalog.field_kinds``): numbers as numbers, booleans as
  booleans, timestamps as date-times in UTC (``yyyy-mm-dd hh:mm:ss``; Excel has no time zone,
  so they are UTC wall-clock times). Multi-values are one text cell, items joined with ``; ``
  as CSV writes them (authors ``Name (role)``).
- Text is always a text cell, an inline string (the workbook's ``strings_to_formulas``,
  ``strings_to_urls`` and ``strings_to_numbers`` are off besides): ``=HYPERLINK(...)`` is a
  string, never a formula, and no ``'`` guard is needed (that is CSV's). Control characters are
  kept, in Excel's ``_xHHHH_`` escapes.
- An absent value is an empty cell.
- Column widths from the longest label or value seen in the column (characters, between 8 and
  60; XlsxWriter writes the widths when the sheet is closed, so they can follow the data).

Where Excel has limits, the file keeps every row and says what it could not hold:

- A sheet holds at most 1,048,576 rows: past that, rows go on in ``Books (2)``, ``Books (3)``,
  … with the same header.
- A cell holds at most 32,767 characters: a longer text is cut there (a summary, in practice).
- Dates before 1900-03-01 are not dates to Excel (its 1900 calendar starts there, leap-year bug
  included), nor is anything after 9999-12-31 23:59:59: such a timestamp is written as its RFC
  3339 text instead, as JSON has it.
- Numbers are written as their shortest exact text (as JSON has them); Excel reads doubles, so
  integers beyond 2**53 lose their last digits there, as in any spreadsheet.

Deterministic bytes: the document's created date is fixed to 1980-01-01T00:00:00Z (the zip
epoch; XlsxWriter stamps every part of the zip with a fixed 1980 date too), so nothing in the
file depends on when it was written. The same rows give the same file.

Memory and disk: constant memory mode writes each row to the sheet's XML in a scratch directory
as soon as the next row starts, so memory stays flat; the zip is assembled into a file in the
same directory by ``Workbook.close()``, which runs in a thread (it deflates the whole sheet XML,
at :data:`ZIP_LEVEL`: seconds for a large export), and is then streamed to the upload. The
directory is removed afterwards, whatever happened (``discard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, assert_never

import xlsxwriter
import xlsxwriter.workbook
from xlsxwriter.utility import xl_col_to_name

from services.worker import catalog
from services.worker.catalog import Kind
from services.worker.render.encoder import (
    SectionKind,
    Write,
    rfc3339,
    text_renderers,
    unsupported,
)
from shared.fields import Field

SHEET_TITLES: dict[SectionKind, str] = {"series": "Series", "books": "Books"}
MAX_ROWS = 1_048_576  # rows of one sheet, the header included
MAX_CELL_CHARS = 32_767
CREATED = datetime(1980, 1, 1)  # naive: XlsxWriter writes it as UTC
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
# Excel's first real date (serial 61; earlier ones meet its 1900 leap-year bug or are none) and
# the last second it holds (a later fraction rounds to a serial past 9999-12-31).
FIRST_DATE = datetime(1900, 3, 1, tzinfo=UTC)
LAST_DATE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
MIN_WIDTH, MAX_WIDTH = 8, 60
TIME_WIDTH = 20  # "2024-01-15 06:00:00" and the filter button
SPOOL_CHUNK = 1024 * 1024
SCRATCH_PREFIX = "codex-export-xlsx-"
# The zip's deflate level. zlib's default (6), which XlsxWriter uses, spent about a third of an
# export's time; level 2 deflates the same sheet XML three times faster for a file a fifth
# larger (measured on 100,000 books, every field: 124 MB of sheet XML, CPU seconds 1.21 / 0.41,
# 14.8 / 17.8 MB; level 1 is as fast and 27% larger, level 3 0.55 s and 12% larger). Every
# level is plain deflate: Excel, LibreOffice and openpyxl read any.
ZIP_LEVEL = 2
_LIST_TEXT = text_renderers("; ", "true", "false")[list]

Cell = Callable[[str, Any], tuple[str, int]]
"""One value as its ``<c>`` element at a cell reference, and the width it needs (characters)."""

# What XlsxWriter escapes in a string cell (its xmlwriter): Excel's own _xHHHH_ for control
# characters (a literal "_x0041_" gets its underscore escaped), then XML's &, < and >.
_NEEDS_ESCAPES = re.compile(r"[&<>\x00-\x08\x0b-\x1f\ufffe\uffff]|_x[0-9a-fA-F]{4}_")
_EXCEL_LITERAL = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f\ufffe\uffff])")
# Serial 0, with Excel's phantom 1900-02-29 counted.
_EXCEL_EPOCH = datetime(1899, 12, 30, tzinfo=UTC)


class _ZipFile(zipfile.ZipFile):
    """XlsxWriter's zip at :data:`ZIP_LEVEL`: it opens ``ZipFile(...)`` by the name in its
    ``workbook`` module and takes no level, so that name is this class in the worker process
    (set below, at import; every workbook the worker writes is an export)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("compresslevel", ZIP_LEVEL)
        super().__init__(*args, **kwargs)


xlsxwriter.workbook.ZipFile = _ZipFile


def _escaped(text: str) -> str:
    if _NEEDS_ESCAPES.search(text) is None:
        return text
    text = _EXCEL_LITERAL.sub(r"_x005F\1", text)
    text = _CONTROL.sub(lambda m: f"_x{ord(m.group(1)):04X}_", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _string_cell(ref: str, text: str, style: str = "") -> str:
    value = _escaped(text)
    # Leading or trailing blanks survive only with xml:space (decided after the _xHHHH_
    # escapes, as XlsxWriter decides it).
    space = ' xml:space="preserve"' if value[:1].isspace() or value[-1:].isspace() else ""
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{space}>{value}</t></is></c>'


# Each cell writer takes the one value type its kind holds and fails loudly on any other, as
# the text encoders do (``encoder.unsupported``).


def _text(ref: str, value: Any) -> tuple[str, int]:
    if type(value) is not str:
        unsupported(value)
    text = value[:MAX_CELL_CHARS]
    return _string_cell(ref, text), len(text)


def _items(ref: str, value: Any) -> tuple[str, int]:
    if type(value) is not list:
        unsupported(value)
    return _text(ref, _LIST_TEXT(value))


def _number(ref: str, value: Any) -> tuple[str, int]:
    if type(value) is not int and type(value) is not float:
        unsupported(value)
    text = repr(value)  # the shortest text that reads back as the same double, as JSON's
    return f'<c r="{ref}"><v>{text}</v></c>', len(text)


def _boolean(ref: str, value: Any) -> tuple[str, int]:
    if type(value) is not bool:
        unsupported(value)
    return f'<c r="{ref}" t="b"><v>{1 if value else 0}</v></c>', 5


class XlsxEncoder:
    """A workbook with a sheet per section; the file is produced by :meth:`spool`.

    XlsxWriter makes the workbook: its parts, styles, frozen pane, autofilter, column widths,
    properties and the zip. The rows of each sheet, nearly all of the file, are written here,
    straight into the sheet's constant-memory row file, as XlsxWriter writes them (inline
    strings, its escapes) but without its per-cell calls, which cost about 4 µs a cell, most of
    an export's time (measured: 100,000 books with every field took 25 s that way). Writing
    them here also closes a hole in XlsxWriter's constant-memory strings: a text that starts
    with ``<r>`` and ends with ``</r>`` is taken for rich-text XML and written unescaped, so a
    series named ``<r>…</r></is></c><c r="B2"><f>HYPERLINK(…)</f></c>…`` became a formula cell
    (``tests/integration/worker/render/test_xlsx.py`` keeps it text). Here every text is
    escaped, always.

    XlsxWriter internals this relies on, all of constant-memory mode: a sheet's
    ``row_data_fh`` (the row file), ``_check_dimensions`` (the sheet's extent, which
    ``<dimension>`` and the row file's copy need), a format's ``_get_xf_index`` (its style
    number) and, to discard an unfinished workbook, ``_opt_close``. The tests read every file
    back with openpyxl, so a change there fails them rather than the files.
    """

    def __init__(self, *, both: bool) -> None:
        self._dir: Path | None = None
        self._book: Any = None
        self._bold = ""
        self._time = ""
        self._kind: SectionKind = "series"
        self._columns: list[Field] = []
        # Per column: its index, key, the cell's opening up to its row number (``<c r="B``), its
        # letters and its writer.
        self._cells: list[tuple[int, str, str, str, Cell]] = []
        self._sheet: Any = None
        self._out: Any = None  # the sheet's row file
        self._part = 0  # the section's sheets so far (more than one past Excel's row limit)
        self._row = 0
        self._widths: list[int] = []

    # -- cells, by kind ------------------------------------------------------------------------

    def _cell(self, kind: Kind) -> Cell:
        match kind:
            case "text" | "id":
                return _text
            case "int" | "float":
                return _number
            case "bool":
                return _boolean
            case "time":
                return self._timestamp
            case "names" | "authors" | "alternate_titles" | "external_ratings":
                return _items
            case _:
                assert_never(kind)

    def _timestamp(self, ref: str, value: Any) -> tuple[str, int]:
        if type(value) is not datetime:
            unsupported(value)
        if value.tzinfo is None:  # asyncpg's "infinity" (datetime.max) is naive: UTC, as Parquet
            value = value.replace(tzinfo=UTC)
        if not FIRST_DATE <= value <= LAST_DATE:
            return _text(ref, rfc3339(value))
        delta = value - _EXCEL_EPOCH  # an aware difference: the offset is counted
        serial = delta.days + (delta.seconds + delta.microseconds / 1e6) / 86400
        return f'<c r="{ref}"{self._time}><v>{serial!r}</v></c>', TIME_WIDTH

    # -- the encoder ---------------------------------------------------------------------------

    def start(self) -> bytes:
        """Open the workbook in a new scratch directory (``discard`` removes it)."""
        self._dir = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        self._book = xlsxwriter.Workbook(
            str(self._dir / "export.xlsx"),
            {
                "constant_memory": True,
                "tmpdir": str(self._dir),
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        self._book.set_properties({"created": CREATED})
        # Style numbers for the cells written here (XlsxWriter numbers its formats on use).
        bold = self._book.add_format({"bold": True})
        time_format = self._book.add_format({"num_format": TIME_FORMAT})
        self._bold = f' s="{bold._get_xf_index()}"'
        self._time = f' s="{time_format._get_xf_index()}"'
        return b""

    def start_section(self, kind: SectionKind, columns: list[Field]) -> bytes:
        self._kind = kind
        self._columns = columns
        kinds = catalog.field_kinds(kind)
        self._cells = []
        for col, c in enumerate(columns):
            letters = xl_col_to_name(col)
            self._cells.append((col, c.key, f'<c r="{letters}', letters, self._cell(kinds[c.key])))
        self._part = 0
        self._open_sheet()
        return b""

    def _open_sheet(self) -> None:
        self._part += 1
        title = SHEET_TITLES[self._kind]
        name = title if self._part == 1 else f"{title} ({self._part})"
        self._sheet = self._book.add_worksheet(name)
        self._out = self._sheet.row_data_fh
        header = "".join(
            _string_cell(f"{letters}1", c.label, self._bold)
            for (_, _, _, letters, _), c in zip(self._cells, self._columns, strict=True)
        )
        self._out.write(f'<row r="1">{header}</row>')
        self._sheet.freeze_panes(1, 0)
        # Room for the label and its filter button.
        self._widths = [len(c.label) + 3 for c in self._columns]
        self._row = 1

    def _close_sheet(self) -> None:
        last = len(self._columns) - 1
        # The rows were written around XlsxWriter: give it the sheet's extent.
        self._sheet._check_dimensions(0, 0)
        self._sheet._check_dimensions(self._row - 1, last)
        self._sheet.autofilter(0, 0, max(self._row - 1, 1), last)
        for col, width in enumerate(self._widths):
            self._sheet.set_column(col, col, min(max(width + 1, MIN_WIDTH), MAX_WIDTH))

    def row(self, row: dict[str, Any]) -> bytes:
        if self._row == MAX_ROWS:
            self._close_sheet()
            self._open_sheet()
        number = str(self._row + 1)
        widths = self._widths
        get = row.get
        cells = [f'<row r="{number}">']
        append = cells.append
        for col, key, opening, letters, cell in self._cells:
            value = get(key)
            if value is None:
                continue
            kind = type(value)
            if (  # most cells: plain one-piece text, inlined for speed (as _text writes it)
                cell is _text
                and kind is str
                and len(value) <= MAX_CELL_CHARS
                # nothing to escape (every character _escaped changes is unprintable, or one
                # of &<> or the "_x" of a literal) and no blank to keep at either end (the only
                # printable blank is the space)
                and value.isprintable()
                and "&" not in value
                and "<" not in value
                and ">" not in value
                and "_x" not in value
                and value[:1] != " "
                and value[-1:] != " "
            ):
                append(f'{opening}{number}" t="inlineStr"><is><t>{value}</t></is></c>')
                width = len(value)
            elif cell is _number and (kind is int or kind is float):  # inlined as well
                text = repr(value)
                append(f'{opening}{number}"><v>{text}</v></c>')
                width = len(text)
            else:
                xml, width = cell(letters + number, value)
                append(xml)
            if width > widths[col]:
                widths[col] = width
        append("</row>")
        self._out.write("".join(cells))
        self._row += 1
        return b""

    def separator(self) -> bytes:
        return b""

    def count_rows(self, rows: int) -> None:
        raise NotImplementedError("an XLSX workbook is written from typed rows only")

    def end_section(self) -> bytes:
        self._close_sheet()
        return b""

    def end(self) -> bytes:
        return b""

    # -- the file ------------------------------------------------------------------------------

    async def spool(self, write: Write) -> None:
        """Finish the workbook (in a thread) and stream its file through ``write``."""
        if self._dir is None:
            raise RuntimeError("XlsxEncoder.start() was not called")
        await asyncio.to_thread(self._book.close)
        handle = await asyncio.to_thread((self._dir / "export.xlsx").open, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, SPOOL_CHUNK):
                await write(chunk)
        finally:
            handle.close()

    def discard(self) -> None:
        """Remove the scratch directory and everything in it (idempotent).

        A workbook never closed (the export failed or was cancelled) still holds each sheet's
        open row file: XlsxWriter has no abort, so they are closed through its own per-sheet
        ``_opt_close`` (what ``close()`` does first), then removed with the directory.
        """
        if self._book is not None and not self._book.fileclosed:
            for sheet in self._book.worksheets():
                with contextlib.suppress(Exception):
                    sheet._opt_close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


def remove_abandoned(older_than_seconds: float = 3600.0, root: Path | None = None) -> int:
    """Remove scratch directories a worker left when it died mid-export (killed, out of
    memory), which ``discard`` never got to; return how many. For a worker's start: a pod's
    ``/tmp`` outlives a crashed container. A directory written to within ``older_than_seconds``
    may be a live export of another worker process sharing ``/tmp``, and is kept (a running
    export writes its rows, then its zip, without pause).
    """
    base = root or Path(tempfile.gettempdir())
    cutoff = time.time() - older_than_seconds
    removed = 0
    for folder in base.glob(f"{SCRATCH_PREFIX}*"):
        try:
            newest = max(p.stat().st_mtime for p in (folder, *folder.iterdir()))
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if folder.is_dir() and newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
