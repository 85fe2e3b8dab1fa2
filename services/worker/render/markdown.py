"""Markdown: one ``## <anchor>`` section per row, then ``- **Label:** value`` bullets; and the
same bytes from ``COPY``.

In the database, ``COPY``'s text format with NULL written as nothing: the heading, the blank
line (when there are bullets) and each bullet are columns; framing deletes the tab delimiters
and decodes the escapes (a tab inside a value arrives escaped). A row ends with the blank line
between two sections.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping, Sequence
from typing import Any, assert_never

from services.worker.render import sql
from services.worker.render.copy import CopyRendering
from services.worker.render.encoder import SectionKind, text_renderers, unsupported
from shared.fields import Field

ITEM_SEPARATOR = ", "
_MD_TEXT = text_renderers(ITEM_SEPARATOR, "Yes", "No")
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


def _md_text(value: Any) -> str:
    return _MD_TEXT.get(type(value), unsupported)(value)


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


# ---------------------------------------------------------------------------------------------
# In the database: each bullet starts with the line break that ends the previous line.

_NEWLINE = sql.lit("\n")


def _bullet_sql(column: sql.Column, label: str) -> tuple[str, str]:
    """(the bullet, an expression that is NULL exactly when there is no bullet)."""
    v = column.value
    quoted = sql.lit(label)
    match column.kind:
        case "text" | "authors" | "alternate_titles" | "external_ratings":
            return f"exports.md_bullet({quoted}, {v})", v
        case "id" | "int":
            return f"exports.md_line({quoted}, ({v})::text)", v
        case "bool":
            yes_no = f"CASE WHEN {v} THEN 'Yes' WHEN NOT {v} THEN 'No' END"
            return f"exports.md_line({quoted}, {yes_no})", v
        case "float":  # NaN and ±inf are no data: no bullet
            return f"exports.md_line({quoted}, {sql.float_text(v)})", f"exports.finite({v})"
        case "time":
            return f"exports.md_line({quoted}, {sql.rfc3339(v)})", v
        case "names":
            names = f"array_to_string({v}, {sql.lit(ITEM_SEPARATOR)})"
            return f"exports.md_bullet({quoted}, {names})", v
        case _:
            assert_never(column.kind)


def _select(columns: Sequence[sql.Column], labels: Mapping[str, str]) -> list[str]:
    anchor, *rest = columns
    bullets = [_bullet_sql(column, labels[column.key]) for column in rest]
    out = [f"exports.md_heading({anchor.value})"]
    if bullets:
        # A blank line between the heading and the bullets, when there is any bullet.
        present = ", ".join(p for _, p in bullets)
        out.append(f"CASE WHEN num_nonnulls({present}) > 0 THEN {_NEWLINE} END")
    # Each bullet starts its line; the last column ends the last line.
    return [*out, *(b for b, _ in bullets), _NEWLINE]


def _unescape(data: bytes) -> bytes:
    """Decode COPY text-format escapes (``\\\\ \\b \\f \\n \\r \\t \\v``, tab delimiter).

    ``codecs.escape_decode`` reads exactly these (and nothing else ever follows a backslash in
    a COPY text stream), in one C pass.
    """
    if b"\\" not in data:
        return data
    return codecs.escape_decode(data)[0]


def _frame(body: bytes, separator: bytes) -> bytes:
    return separator + _unescape(body[:-1].replace(b"\t", b""))


COPY = CopyRendering(
    select=_select,
    separator=ITEM_SEPARATOR,
    options={"format": "text", "null": ""},
    row_end=b"\n",
    frame=_frame,
)
