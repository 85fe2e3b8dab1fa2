"""Streamed renderers: catalog rows → JSON, CSV or Markdown bytes (SPEC §5).

The caller writes ``start()``, then for each section ``start_section()``, ``row()`` per row and
``end_section()``, then ``end()``. Every piece is UTF-8 and depends only on its inputs, so the
same rows always give the same bytes.

Rows are what ``services.worker.catalog`` yields: the anchor and the requested keys in catalog
order, absent values left out, values of type str, int, float, bool, aware UTC datetime, or a list
(of str, or of the author / alternate-title / external-rating dicts). ``row()`` runs once per
exported row, millions of times for a large export, so the text formats dispatch on the exact
value type and take a fast path for plain one-line text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

from shared.fields import Field

SectionKind = Literal["series", "books"]


class Encoder(Protocol):
    """One output format. Each call returns the bytes to append to the file."""

    def start(self) -> bytes: ...

    def start_section(self, kind: SectionKind, columns: list[Field]) -> bytes: ...

    def row(self, row: dict[str, Any]) -> bytes: ...

    def end_section(self) -> bytes: ...

    def end(self) -> bytes: ...

    # For rows rendered elsewhere (``services.worker.fast``), byte-identical to ``row()``:

    def separator(self) -> bytes:
        """What ``row()`` would write before the next row's own text."""
        ...

    def count_rows(self, rows: int) -> None:
        """Account for ``rows`` rows written elsewhere, as if ``row()`` had written them."""
        ...


def make_encoder(fmt: str, export_type: str) -> Encoder:
    """The encoder for ``fmt`` (json|csv|md) and ``export_type`` (series|books|both).

    Raises ValueError for an unknown format or type, and for CSV with ``both`` (one CSV file holds
    one table; the API refuses that combination before it gets here).
    """
    if export_type not in ("series", "books", "both"):
        raise ValueError(f"Unknown export type: {export_type!r}")
    both = export_type == "both"
    if fmt == "json":
        return JsonEncoder(both=both)
    if fmt == "csv":
        if both:
            raise ValueError("CSV format is not supported for 'both' export type")
        return CsvEncoder()
    if fmt == "md":
        return MarkdownEncoder(both=both)
    raise ValueError(f"Unknown export format: {fmt!r}")


# ---------------------------------------------------------------------------------------------
# Value text shared by CSV and Markdown

# orjson writes aware UTC datetimes as RFC 3339 with "Z", microseconds only when non-zero.
_JSON_OPTIONS = orjson.OPT_UTC_Z


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, microseconds only when non-zero — as JSON writes it."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return orjson.dumps(value, option=_JSON_OPTIONS)[1:-1].decode()


def _number_text(value: int | float) -> str:
    # repr gives the shortest text that reads back as the same float, like JSON does.
    return repr(value)


def _item_text(item: Any) -> str:
    """One element of a multi-value field as text."""
    if type(item) is str:
        return item
    if "name" in item:  # author: "Name (role)", or just "Name"
        return f"{item['name']} ({item['role']})" if "role" in item else str(item["name"])
    if "label" in item:  # alternate title: "label: title"
        return f"{item['label']}: {item['title']}"
    # External rating: "AniList: 85.5 (1200 votes)"; no parentheses when votes are unknown.
    text = str(item["source"])
    if "rating" in item:
        text += ": " + _number_text(item["rating"])
    if "votes" in item:
        votes = item["votes"]
        text += f" ({votes} vote)" if votes == 1 else f" ({votes} votes)"
    return text


def _unsupported(value: Any) -> str:
    raise TypeError(f"cannot render {type(value).__name__} in an export")


def _text_renderers(separator: str, true: str, false: str) -> dict[type, Callable[[Any], str]]:
    """Exact type → text. ``bool`` has its own entry (it is a subclass of ``int``)."""
    return {
        str: lambda v: v,
        int: _number_text,
        float: _number_text,
        bool: lambda v: true if v else false,
        datetime: rfc3339,
        list: lambda v: separator.join([_item_text(item) for item in v]),
    }


# ---------------------------------------------------------------------------------------------
# JSON


class JsonEncoder:
    """An array of row objects, one object per line so backups diff line by line.

    Type both: ``{"series": [...], "books": [...]}`` with the same layout inside. Keys keep the
    row's order (catalog order); absent values are simply not in the row, so never ``null``.
    """

    def __init__(self, *, both: bool) -> None:
        self._both = both
        self._sections = 0
        self._rows = 0

    def start(self) -> bytes:
        return b"{\n" if self._both else b""

    def start_section(self, kind: SectionKind, columns: list[Field]) -> bytes:
        self._rows = 0
        self._sections += 1
        if not self._both:
            return b"["
        prefix = b",\n" if self._sections > 1 else b""
        return prefix + orjson.dumps(kind) + b": ["

    def row(self, row: dict[str, Any]) -> bytes:
        prefix = self.separator()
        self._rows += 1
        return prefix + orjson.dumps(row, option=_JSON_OPTIONS)

    def separator(self) -> bytes:
        return b"\n" if self._rows == 0 else b",\n"

    def count_rows(self, rows: int) -> None:
        self._rows += rows

    def end_section(self) -> bytes:
        return b"\n]" if self._rows else b"]"

    def end(self) -> bytes:
        return b"\n}\n" if self._both else b"\n"


# ---------------------------------------------------------------------------------------------
# CSV

# A spreadsheet runs a text cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES = re.compile(r'[",\r\n]')
_CSV_TEXT = _text_renderers("; ", "true", "false")


def _csv_cell(text: str) -> str:
    if _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + text.replace('"', '""') + '"'


def _csv_value(value: Any) -> str:
    kind = type(value)
    text = _CSV_TEXT.get(kind, _unsupported)(value)
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
# Markdown

_MD_TEXT = _text_renderers(", ", "Yes", "No")
# Inline markup in a heading, escaped so a name renders literally. "<" becomes an entity, which
# every renderer shows as "<" and none reads as the start of raw HTML.
# "&" only where it would start an entity reference ("&amp;", "&#35;").
_HEADING_SPECIAL = re.compile(r"[\\`*_\[\]#~]|&(?=#?[0-9A-Za-z]+;)")
_HEADING_NEEDS_WORK = re.compile(r"[\\`*_\[\]#~<&\r\n]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_VALUE_NEEDS_WORK = re.compile(r"[<\r\n]")
# A line that would open a block if it began a line inside the bullet: heading, quote, list
# item, thematic break, setext underline, table row, code fence, link reference definition.
# Ordered-list markers ("1." / "1)") are escaped on their punctuation.
_BLOCK_START = re.compile(r"^(?:(?P<mark>[#>+*=_|:~`\[-])|(?P<digits>[0-9]{1,9})[.)])")

_SECTION_TITLES: dict[SectionKind, str] = {"series": "Series", "books": "Books"}


def _escape_heading(text: str) -> str:
    if _HEADING_NEEDS_WORK.search(text) is None:
        return text.strip()
    # A heading is one line: line breaks become spaces.
    one_line = " ".join(part.strip() for part in _LINE_BREAK.split(text)).strip()
    return _HEADING_SPECIAL.sub(r"\\\g<0>", one_line).replace("<", "&lt;")


def _escape_block_start(line: str) -> str:
    match = _BLOCK_START.match(line)
    if match is None:
        return line
    if match.group("mark"):
        return "\\" + line
    end = match.end("digits")
    return line[:end] + "\\" + line[end:]


def _bullet(prefix: str, text: str) -> str:
    """``- **Label:** value``; further lines indented two spaces so they stay in the bullet.

    Continuation lines lose their leading blanks and have a leading block marker escaped, so a
    summary line such as ``## Evil``, ``- x`` or ``---`` stays text inside this bullet. Blank
    lines inside the value are kept (the bullet continues after them); leading and trailing
    blank lines are dropped.
    """
    if _VALUE_NEEDS_WORK.search(text) is None:
        return (prefix + text.strip()).rstrip() + "\n"
    lines = _LINE_BREAK.split(text.replace("<", "&lt;"))
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    while len(lines) > 1 and not lines[0].strip():
        lines.pop(0)
    out = [(prefix + lines[0].strip()).rstrip()]
    for line in lines[1:]:
        stripped = line.strip()
        out.append("  " + _escape_block_start(stripped) if stripped else "")
    return "\n".join(out) + "\n"


class MarkdownEncoder:
    """One ``## <anchor>`` section per row, then ``- **Label:** value`` bullets.

    Blocks (the H1 parts, each row's section) are separated by one blank line. Type both: a
    ``# Series`` part then a ``# Books`` part; a single type has no H1. An empty section says so
    in one italic line rather than leaving the part (or the whole file) empty.
    """

    def __init__(self, *, both: bool) -> None:
        self._both = both
        self._blocks = 0
        self._rows = 0
        self._kind: SectionKind = "series"
        self._anchor = ""
        self._bullets: list[tuple[str, str]] = []

    def _block(self, text: str) -> bytes:
        separator = self.separator()
        self._blocks += 1
        return separator + text.encode()

    def start(self) -> bytes:
        return b""

    def start_section(self, kind: SectionKind, columns: list[Field]) -> bytes:
        self._kind = kind
        self._rows = 0
        self._anchor = columns[0].key
        self._bullets = [(c.key, f"- **{c.label}:** ") for c in columns[1:]]
        return self._block(f"# {_SECTION_TITLES[kind]}\n") if self._both else b""

    def row(self, row: dict[str, Any]) -> bytes:
        self._rows += 1
        anchor = row.get(self._anchor)
        heading = "" if anchor is None else _escape_heading(_md_text(anchor))
        parts = [f"## {heading}".rstrip(), "\n"]
        get = row.get
        for key, prefix in self._bullets:
            value = get(key)
            if value is None:
                continue
            if len(parts) == 2:
                parts.append("\n")
            parts.append(_bullet(prefix, _md_text(value)))
        return self._block("".join(parts))

    def separator(self) -> bytes:
        return b"" if self._blocks == 0 else b"\n"

    def count_rows(self, rows: int) -> None:
        self._rows += rows
        self._blocks += rows

    def end_section(self) -> bytes:
        if self._rows:
            return b""
        return self._block(f"_No {_SECTION_TITLES[self._kind].lower()}._\n")

    def end(self) -> bytes:
        return b""


def _md_text(value: Any) -> str:
    return _MD_TEXT.get(type(value), _unsupported)(value)
