"""CSV (RFC 4180): the Python encoder, and the same bytes from ``COPY``'s own CSV writer.

In the database, one ``COPY`` column per field: ``COPY`` quotes exactly what the encoder quotes
(a value holding a comma, a quote, CR or LF; quotes doubled), writes NULL as an empty cell and an
empty string as ``""`` — so text that may be empty becomes NULL, except for a lone column, where
the encoder writes ``""`` too. A last column holding ``"\\r"`` ends every record with
``,"\\r"\\n``, which nothing else can produce (a quoted value's own quotes are doubled, and a text
cell starting with CR gets the formula guard); framing turns it into the record's CRLF.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, assert_never

from services.worker.render import sql
from services.worker.render.copy import CopyRendering
from services.worker.render.encoder import SectionKind, text_renderers, unsupported
from shared.fields import Field

# A spreadsheet runs a text cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES = re.compile(r'[",\r\n]')
_CSV_TEXT = text_renderers("; ", "true", "false")
ITEM_SEPARATOR = "; "


def _csv_cell(text: str) -> str:
    if _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace('"', '""') + '"'


def _csv_value(value: Any) -> str:
    kind = type(value)
    text = _CSV_TEXT.get(kind, unsupported)(value)
    # Only text (a string, or a list joined into one) can be a formula: -2 stays a number.
    if (kind is str or kind is list) and text.startswith(_FORMULA_START):
        text = "'" + text
    return _csv_cell(text)


class CsvEncoder:
    """RFC 4180: CRLF after every record, quoted only when needed, a header row of field keys.

    No byte-order mark: RFC 4180 has none, and Python's csv, pandas, databases and Unix tools read
    a BOM as part of the first header name; spreadsheets import UTF-8 CSV without one.
    """

    def __init__(self) -> None:
        self._keys: list[str] = []

    def start(self) -> bytes:
        return b""

    def start_section(self, kind: SectionKind, columns: list[Field]) -> bytes:
        self._keys = [c.key for c in columns]
        return (",".join(_csv_cell(k) for k in self._keys) + "\r\n").encode()

    def row(self, row: dict[str, Any]) -> bytes:
        get = row.get
        search = _NEEDS_QUOTES.search
        cells = []
        for key in self._keys:
            value = get(key)
            if value is None:
                cells.append("")
            elif type(value) is str:  # most cells: inlined for speed
                if value.startswith(_FORMULA_START):
                    value = "'" + value
                cells.append(value if search(value) is None else _csv_cell(value))
            else:
                cells.append(_csv_value(value))
        # A lone empty cell would be a blank line, which readers skip: quote it, as csv does.
        line = ",".join(cells) or '""'
        return (line + "\r\n").encode()

    def separator(self) -> bytes:
        return b""

    def count_rows(self, rows: int) -> None:
        pass

    def end_section(self) -> bytes:
        return b""

    def end(self) -> bytes:
        return b""


# ---------------------------------------------------------------------------------------------
# In the database

ROW_END = b',"\r"\n'


def _guard(text: str) -> str:
    return f"exports.csv_guard({text})"


def _cell(column: sql.Column, lone: bool) -> str:
    v = column.value
    match column.kind:
        case "text":
            return _guard(f"coalesce({v}, '')" if lone else f"nullif({v}, '')")
        case "id" | "int":
            return v
        case "bool":
            return f"({v})::text"  # true / false (COPY itself would write t / f)
        case "float":
            return sql.float_text(v)
        case "time":
            return sql.rfc3339(v)
        case "names":
            return _guard(f"array_to_string({v}, {sql.lit(ITEM_SEPARATOR)})")  # never empty
        case "authors":
            return _guard(v)  # names are never blank, so the joined text is never empty
        case "alternate_titles" | "external_ratings":
            return _guard(f"nullif({v}, '')")
        case _:
            assert_never(column.kind)


def _select(columns: Sequence[sql.Column], labels: Mapping[str, str]) -> list[str]:
    lone = len(columns) == 1
    return [*(_cell(column, lone) for column in columns), sql.lit("\r")]


def _frame(body: bytes, separator: bytes) -> bytes:
    return body.replace(ROW_END, b"\r\n")


COPY = CopyRendering(
    select=_select,
    separator=ITEM_SEPARATOR,
    options={"format": "csv"},
    row_end=ROW_END,
    frame=_frame,
)
