"""Exports rendered by PostgreSQL and streamed with ``COPY``, at the speed of ``COPY`` itself.

The Python encoders (``services.worker.encoders``) define the output; this module produces the
same bytes. For a section it wraps the reference query (``catalog.raw_query``: the same CTEs,
joins, visibility filter and order, the values unconverted) in a query that renders every
field in SQL, one ``COPY`` column per field, and streams it with ``COPY ... TO STDOUT``.
``COPY``'s own writer does the rest, and Python only frames the stream, with a few C-speed
passes over each chunk and no work per row:

- CSV: ``COPY``'s CSV writer quotes exactly what the encoder quotes; a last column ends each
  record with a marker that becomes the record's CRLF.
- JSON: ``COPY``'s CSV writer with a delimiter and a quote that no JSON text holds raw, so
  nothing is quoted; every field brings its own ``,"key":`` (NULL when absent), every row its
  trailing comma; Python deletes the delimiters and the last row's comma.
- Markdown: ``COPY``'s text format; Python deletes the tab delimiters (a tab in a value arrives
  escaped) and decodes the escapes; a row end is the blank line between two sections.

PostgreSQL sends one ``CopyData`` message per row and asyncpg hands whole messages to the sink,
so a chunk ends on a row boundary; an incomplete tail is carried over all the same.

The rendering follows the encoders rule by rule (see the notes next to each helper). A value the
SQL cannot render identically makes the query fail with :data:`DECLINED` — an ``authors_json``
that orjson and PostgreSQL would parse differently (``\u0000``, numbers beyond a double, nesting
deeper than orjson allows), a timestamp outside Python's years 1 to 9999 — and the caller
finishes the section in Python from the first row not yet written (:class:`Declined`).
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from services.worker.catalog import RawColumn, Scope, literal_args, raw_query
from services.worker.encoders import Encoder

Format = Literal["json", "csv", "md"]
Section = Literal["series", "books"]

DECLINED = "codex-exports: value left to the Python renderer"
"""Marker of the error the rendering query raises for a value it cannot render identically."""

# str.isspace() (what str.strip() removes), which PostgreSQL's btrim() must match.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITESPACE_CODES = ", ".join(str(ord(c)) for c in PY_WHITESPACE)
_INLINE_WHITESPACE = PY_WHITESPACE.replace("\n", "").replace("\r", "")
_LINE_BREAK = "(\r\n?|\n)"  # the encoders' "\r\n|\r|\n"; greedy, so "\r\n" is one break


class Declined(Exception):
    """The database could not render a row identically; ``rows`` rows were written before it."""

    def __init__(self, rows: int) -> None:
        super().__init__(f"database rendering declined after {rows} rows")
        self.rows = rows


# ---------------------------------------------------------------------------------------------
# SQL building blocks. Every helper takes SQL expressions and returns one; NULL in, NULL out.


def lit(text: str) -> str:
    """An escape-string literal: the same meaning whatever ``standard_conforming_strings``."""
    if "\x00" in text:
        raise ValueError("a SQL literal cannot hold NUL")
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _strip(x: str) -> str:
    """Python's ``str.strip()``.

    btrim() walks the whole string in a UTF-8 database; most values have nothing to strip, which
    their first and last characters tell for less.
    """
    ends = f"ascii({x}) IN ({_WHITESPACE_CODES}) OR ascii(right({x}, 1)) IN ({_WHITESPACE_CODES})"
    return f"CASE WHEN {ends} THEN btrim({x}, {lit(PY_WHITESPACE)}) ELSE {x} END"


def _decline(x: str) -> str:
    # A cast error naming DECLINED. It reads x so it can never be folded into a constant (and
    # raised) while the query is planned; it only runs for the row that needs it.
    return f"(({lit(DECLINED + ' ')} || (({x}) IS NULL)::text)::int)::text"


def _float(x: str, *, json: bool = False) -> str:
    """``repr(_number(x))``, or with ``json`` what orjson writes for it; NaN/±inf are no data.

    Integral values below 2**63 print as integers. PostgreSQL prints a float8 with the shortest
    digits that read back exactly (Ryu), as Python and orjson do; only the notation differs.
    PostgreSQL uses an exponent below 1e-4 and from 1e15 up, with at least two exponent digits
    (``1e-05``, ``1.5e+15``); Python's repr from 1e16 up (so non-integral values in [1e15,
    1e16) get their decimal point moved back); orjson also writes [1e-5, 1e-4) in full
    (``0.00001``) and never pads the exponent (``1e-6``).
    """
    moved = f"regexp_replace(({x})::text, {_E15}, {_E15_FIXED})"
    small = f"({x})::text"
    if json:
        small = f"replace(regexp_replace({small}, {_E05}, {_E05_FIXED}), 'e-0', 'e-')"
    return (
        f"CASE WHEN {x} = 'NaN'::float8 OR {x} = 'Infinity'::float8"
        f" OR {x} = '-Infinity'::float8 THEN NULL"
        f" WHEN {x} = trunc({x}) AND abs({x}) < 9223372036854775808::float8"
        f" THEN ({x})::int8::text"
        f" WHEN abs({x}) >= 1e15::float8 AND abs({x}) < 1e16::float8 THEN {moved}"
        f" WHEN abs({x}) < 1e-4::float8 THEN {small}"
        f" ELSE ({x})::text END"
    )


_E15 = lit(r"^(-?[0-9])\.([0-9]{15})([0-9]+)e\+15$")
_E15_FIXED = lit(r"\1\2.\3")
_E05 = lit(r"^(-?)([0-9])\.?([0-9]*)e-05$")
_E05_FIXED = lit(r"\10.0000\2\3")  # sign, "0.0000", the digits


def _time(x: str) -> str:
    """RFC 3339 in UTC with ``Z``, microseconds only when non-zero (``encoders.rfc3339``).

    From the ISO text of the UTC timestamp (``DateStyle`` ISO, set by the caller):
    ``YYYY-MM-DD HH:MM:SS`` and, when non-zero, a fraction without its trailing zeros, which
    ``rpad`` restores to six digits. Outside years 1
    to 9999 (and for ±infinity) asyncpg gives Python no aware datetime: such a value is left to
    the reference renderer.
    """
    text = f"(({x}) AT TIME ZONE 'UTC')::text"
    padded = f"CASE WHEN length({text}) = 19 THEN {text} ELSE rpad({text}, 26, '0') END"
    iso = f"replace({padded}, ' ', 'T')"
    rendered = f"{iso} || 'Z'"
    return (
        f"CASE WHEN {x} >= '0001-01-01 00:00:00+00'::timestamptz"
        f" AND {x} < '10000-01-01 00:00:00+00'::timestamptz THEN {rendered}"
        f" WHEN {x} IS NOT NULL THEN {_decline(x)} END"
    )


def _json_string(x: str) -> str:
    # PostgreSQL escapes JSON strings exactly as orjson does: \" \\ \b \f \n \r \t, other
    # control characters as \u00XX (lowercase), everything else (DEL, U+2028, /) raw.
    return f"to_json({x})::text"


# ---------------------------------------------------------------------------------------------
# authors_json, parsed as services.worker.catalog._authors parses it


_NUL_ESCAPE = lit("\\u0000")
_HUGE_NUMBER = lit("[0-9]{100}|[eE][-+]?0*[0-9]{3}")


def _authors_doubt(a: str) -> str:
    """True when orjson and PostgreSQL's jsonb might disagree on ``a``.

    orjson accepts ``\\u0000`` (jsonb refuses it), refuses numbers beyond a double (jsonb
    accepts them) and refuses nesting deeper than 1024 (jsonb does not). Conservative: a long
    digit run, a three-digit exponent or many brackets are enough to decline.
    """
    brackets = f"length({a}) - length(replace(replace({a}, '[', ''), '{{', ''))"
    return (
        f"strpos({a}, {_NUL_ESCAPE}) > 0 OR {a} ~ {_HUGE_NUMBER}"
        f" OR (length({a}) > 1000 AND {brackets} > 1000)"
    )


def _authors(a: str, fmt: Format) -> str:
    """The rendered ``authors`` value of the raw ``authors_json`` text ``a``, or NULL.

    An entry counts when it is an object whose ``name`` is a string that is not blank; names
    and roles are stripped; a role that is not a non-blank string is left out. Stored order.
    """
    name = _strip("e.v->>'name'")
    stripped_role = _strip("e.v->>'role'")
    role = f"CASE WHEN jsonb_typeof(e.v->'role') = 'string' THEN nullif({stripped_role}, '') END"
    if fmt == "json":
        item = (
            f"""'{{"name":' || {_json_string(name)} || coalesce(',"role":' || """
            f"""{_json_string(role)}, '') || '}}'"""
        )
        value = f"'[' || string_agg({item}, ',' ORDER BY e.o) || ']'"
    else:
        item = f"{name} || coalesce(' (' || {role} || ')', '')"
        value = f"string_agg({item}, {lit('; ' if fmt == 'csv' else ', ')} ORDER BY e.o)"
    elements = (
        f"SELECT {value} FROM jsonb_array_elements("  # noqa: S608 - SQL fragments only
        f"CASE WHEN jsonb_typeof(({a})::jsonb) = 'array'"
        f" THEN ({a})::jsonb END) WITH ORDINALITY e(v, o)"
        f" WHERE jsonb_typeof(e.v->'name') = 'string' AND {name} <> ''"
    )
    return (
        f"CASE WHEN {a} IS NULL THEN NULL"
        f" WHEN {_authors_doubt(a)} THEN {_decline(a)}"
        f" WHEN NOT pg_input_is_valid({a}, 'jsonb') THEN NULL"
        f" ELSE ({elements}) END"
    )


# ---------------------------------------------------------------------------------------------
# Multi-value items (series): alternate titles and external ratings, as parallel arrays


def _alternate_titles(labels: str, titles: str, fmt: Format, cell: Callable[[str], str]) -> str:
    if fmt == "json":
        item = """'{"label":' || to_json(u.l)::text || ',"title":' || to_json(u.t)::text || '}'"""
        value = f"'[' || string_agg({item}, ',' ORDER BY u.i) || ']'"
    else:
        sep = lit("; " if fmt == "csv" else ", ")
        value = cell(f"string_agg(u.l || ': ' || u.t, {sep} ORDER BY u.i)")
    source = f"unnest({labels}, {titles}) WITH ORDINALITY u(l, t, i)"
    return f"(SELECT {value} FROM {source})"  # noqa: S608 - SQL fragments only


def _external_ratings(
    sources: str, ratings: str, votes: str, fmt: Format, cell: Callable[[str], str]
) -> str:
    rating = _float("u.r", json=fmt == "json")
    if fmt == "json":
        item = (
            """'{"source":' || to_json(u.s)::text"""
            f""" || coalesce(',"rating":' || {rating}, '')"""
            """ || coalesce(',"votes":' || u.v::text, '') || '}'"""
        )
        value = f"'[' || string_agg({item}, ',' ORDER BY u.i) || ']'"
    else:
        votes_text = (
            "CASE WHEN u.v IS NULL THEN '' WHEN u.v = 1 THEN ' (1 vote)'"
            " ELSE ' (' || u.v::text || ' votes)' END"
        )
        item = f"u.s || coalesce(': ' || {rating}, '') || {votes_text}"
        sep = lit("; " if fmt == "csv" else ", ")
        value = cell(f"string_agg({item}, {sep} ORDER BY u.i)")
    return (
        f"(SELECT {value} FROM unnest({sources}, {ratings}, {votes})"  # noqa: S608 - fragments
        " WITH ORDINALITY u(s, r, v, i))"
    )


# ---------------------------------------------------------------------------------------------
# CSV (encoders.CsvEncoder), through COPY's own CSV writer
#
# One COPY column per field: COPY quotes exactly what the encoder quotes (a value holding a
# comma, a quote, CR or LF; quotes doubled), writes NULL as an empty cell and an empty string
# as "" — so text that may be empty becomes NULL, except for a lone column, where the encoder
# writes "" too. A last column holding "\r" ends every record with ,"\r"\n, which nothing else
# can produce (a quoted value's own quotes are doubled, and a text cell starting with CR gets
# the formula guard); Python turns it into the record's CRLF.

_NL = lit("\n")
_CR = lit("\r")
_FORMULA_CODES = "61, 43, 45, 64, 9, 13"  # ascii() of = + - @ tab CR
_APOSTROPHE = lit("'")
CSV_ROW_END = b',"\r"\n'


def _guard(v: str) -> str:
    """The formula guard: text starting with = + - @ tab or CR gets a leading apostrophe."""
    return f"CASE WHEN ascii({v}) IN ({_FORMULA_CODES}) THEN {_APOSTROPHE} || {v} ELSE {v} END"


def _csv_cell(column: RawColumn, c: list[str], lone: bool) -> str:
    kind = column.kind
    if kind == "text":
        return _guard(f"coalesce({c[0]}, '')" if lone else f"nullif({c[0]}, '')")
    if kind in ("id", "int"):
        return c[0]
    if kind == "bool":
        return f"({c[0]})::text"  # true / false (COPY itself would write t / f)
    if kind == "float":
        return _float(c[0])
    if kind == "time":
        return _time(c[0])
    if kind in ("names", "authors"):
        # Never empty: names are not blank. Authors arrive joined from the lateral subquery.
        text = f"array_to_string({c[0]}, '; ')" if kind == "names" else c[0]
        return _guard(text)

    def cell(text: str) -> str:
        return _guard(f"nullif({text}, '')")

    if kind == "alternate_titles":
        return _alternate_titles(c[0], c[1], "csv", cell)
    return _external_ratings(c[0], c[1], c[2], "csv", cell)


# ---------------------------------------------------------------------------------------------
# JSON (encoders.JsonEncoder: orjson, compact, catalog key order, no nulls)
#
# COPY's CSV writer with a delimiter (\x02) and a quote (\x01) that no JSON text holds raw
# (JSON escapes every control character), so nothing is ever quoted. The anchor's column opens
# the object; every other field is one column, its ',"key":' and JSON value (NULL when the
# value is absent); a last column closes the object and adds the comma that separates rows.
# Python deletes the delimiters and holds back each chunk's last ",\n" until it knows another
# row follows. (Measured on 100,000 books, every field: about half the cost of
# json_strip_nulls(row_to_json(...)); 5% less than a key column and a value column each.)

JSON_DELIMITER = b"\x02"
_NOT_FINITE = "{v} = 'NaN'::float8 OR {v} = 'Infinity'::float8 OR {v} = '-Infinity'::float8"


def _json_value(column: RawColumn, c: list[str]) -> tuple[str, str, str]:
    """(what opens the value, the rest of its JSON text, a condition true when it is absent).

    Strings that never need escaping (uuids, timestamps) take their opening quote from the
    key's column and their closing one from their own: one concatenation instead of to_json.
    """
    kind = column.kind
    v = c[0]
    absent = f"{v} IS NULL"
    if kind == "text":
        # PostgreSQL escapes JSON strings exactly as orjson does: \" \\ \b \f \n \r \t, other
        # control characters as \u00XX (lowercase), everything else (DEL, U+2028, /) raw.
        return "", f"to_json({v})", absent  # json: COPY writes its text as it is
    if kind == "id":
        return '"', f"{v} || '\"'", absent
    if kind == "int":
        return "", v, absent
    if kind == "bool":
        return "", f"({v})::text", absent
    if kind == "float":
        # NaN and ±Infinity render as NULL, and ``key || NULL`` drops the key with them.
        return "", _float(v, json=True), absent
    if kind == "time":
        return '"', f"{_time(v)} || '\"'", absent
    if kind == "names":
        return "", f"array_to_json({v})", absent  # compact: ["a","b"]
    if kind == "authors":
        return "", v, absent  # rendered by the lateral subquery
    if kind == "alternate_titles":
        return "", _alternate_titles(c[0], c[1], "json", _no_cell), absent
    return "", _external_ratings(c[0], c[1], c[2], "json", _no_cell), absent


def _no_cell(text: str) -> str:
    return text


def _json_columns(columns: list[tuple[RawColumn, list[str]]]) -> list[str]:
    (anchor, a), *rest = columns
    # The anchor is never NULL (series.name, or a book's title else its file name, are NOT
    # NULL); were it, the row could not open with it: leave it to Python.
    opens, value, absent = _json_value(anchor, a)
    opening = lit(f'{{"{anchor.key}":{opens}')
    out = [f"CASE WHEN {absent} THEN {_decline(a[0])} ELSE {opening} || ({value})::text END"]
    for column, c in rest:
        opens, value, absent = _json_value(column, c)
        key = lit(f',"{column.key}":{opens}')
        out.append(f"CASE WHEN {absent} THEN NULL ELSE {key} || ({value})::text END")
    return [*out, "'},'"]


# ---------------------------------------------------------------------------------------------
# Markdown (encoders.MarkdownEncoder)
#
# COPY's text format with NULL written as nothing: the heading, the blank line (when there are
# bullets) and each bullet are columns; the tab delimiters are deleted and the escapes decoded
# in Python (a tab inside a value arrives escaped).

_WS_RUN = "[" + _INLINE_WHITESPACE + "]*"
# A line break with the blanks around it (what stripping each line removes).
_BREAK = lit(_WS_RUN + _LINE_BREAK + _WS_RUN)
# _BLOCK_START's marks after a line break, as an alternation (no bracket-expression quirks).
_MARK_START = lit("\n(#|>|\\+|\\*|=|_|\\||:|~|`|\\[|-)")
_MARK_ESCAPED = lit("\n\\\\\\1")  # newline, literal backslash, the mark
_DIGITS_START = lit("\n([0-9]{1,9})([.)])")
_DIGITS_ESCAPED = lit("\n\\1\\\\\\2")  # newline, the digits, literal backslash, . or )
_LINE_START = lit("\n([^\n])")
_INDENTED = lit("\n  \\1")
_HEADING_NEEDS_WORK = lit("\\\\|`|\\*|_|\\[|\\]|#|~|<|&|\r|\n")
_HEADING_SPECIAL = lit("(\\\\|`|\\*|_|\\[|\\]|#|~|&(?=#?[0-9A-Za-z]+;))")
_BACKSLASHED = lit("\\\\\\1")  # literal backslash, the match


def _md_bullet(label: str, text: str) -> str:
    """``"\\n" + _bullet(prefix, text)`` without its newline (the bullet starts with the line
    break that ends the previous line).

    ``(prefix + stripped).rstrip()``: the stripped value never ends in whitespace, so only an
    empty value changes the line (to the prefix without its trailing space). Most values are
    one line with nothing to strip and take the first branch: a few character tests.

    Multi-line: stripping the whole value drops leading and trailing blank lines as the encoder
    does; each line break and the blanks around it become one newline (so every line is
    stripped and blank lines are empty); continuation lines that would open a block get a
    backslash; non-empty continuation lines are indented by two spaces.
    """
    prefix = lit(f"\n- **{label}:** ")
    empty = lit(f"\n- **{label}:**")
    stripped = _strip(f"replace({text}, '<', '&lt;')")
    lines = f"regexp_replace({stripped}, {_BREAK}, {_NL}, 'g')"
    marks = f"regexp_replace({lines}, {_MARK_START}, {_MARK_ESCAPED}, 'g')"
    escaped = f"regexp_replace({marks}, {_DIGITS_START}, {_DIGITS_ESCAPED}, 'g')"
    indented = f"regexp_replace({escaped}, {_LINE_START}, {_INDENTED}, 'g')"
    plain = (
        f"strpos({text}, '<') = 0 AND strpos({text}, {_NL}) = 0 AND strpos({text}, {_CR}) = 0"
        f" AND ascii({text}) NOT IN ({_WHITESPACE_CODES})"
        f" AND ascii(right({text}, 1)) NOT IN ({_WHITESPACE_CODES})"
    )
    return (
        f"CASE WHEN {plain} AND {text} <> '' THEN {prefix} || {text}"
        f" WHEN {stripped} = '' THEN {empty}"
        f" ELSE {prefix} || {indented} END"
    )


def _md_plain(label: str, text: str) -> str:
    """A bullet for a value whose text has no whitespace, ``<`` or line break (numbers...)."""
    prefix = lit(f"\n- **{label}:** ")
    return f"{prefix} || {text}"


def _md_heading(v: str) -> str:
    """``"## " + _escape_heading(anchor)``, right-stripped (no newline: the bullets start with
    theirs, and a last column ends the section).

    The anchor's lines are stripped and joined by one space each (a line break and the blanks
    around it become a space), the whole is stripped, then inline markup gets a backslash.
    """
    one_line = _strip(f"regexp_replace({v}, {_BREAK}, ' ', 'g')")
    special = f"regexp_replace({one_line}, {_HEADING_SPECIAL}, {_BACKSLASHED}, 'g')"
    escaped = f"replace({special}, '<', '&lt;')"
    heading = f"CASE WHEN {v} ~ {_HEADING_NEEDS_WORK} THEN {escaped} ELSE {_strip(v)} END"
    plain = (
        f"ascii({v}) NOT IN ({_WHITESPACE_CODES})"
        f" AND ascii(right({v}, 1)) NOT IN ({_WHITESPACE_CODES})"
        f" AND {v} !~ {_HEADING_NEEDS_WORK}"
    )
    return (
        f"CASE WHEN {plain} AND {v} <> '' THEN '## ' || {v}"
        f" ELSE rtrim('## ' || coalesce({heading}, ''), ' ') END"
    )


def _md_bullet_for(column: RawColumn, label: str, c: list[str]) -> tuple[str, str]:
    """(the bullet, an expression that is NULL exactly when there is no bullet)."""
    kind = column.kind
    v = c[0]
    if kind == "text":
        return _md_bullet(label, v), v
    if kind in ("id", "int"):
        return _md_plain(label, f"({v})::text"), v
    if kind == "bool":
        return _md_plain(label, f"CASE WHEN {v} THEN 'Yes' WHEN NOT {v} THEN 'No' END"), v
    if kind == "float":
        present = f"CASE WHEN {_NOT_FINITE.format(v=v)} THEN NULL ELSE {v} END"
        return _md_plain(label, _float(v)), present
    if kind == "time":
        return _md_plain(label, _time(v)), v
    if kind == "names":
        return _md_bullet(label, f"array_to_string({v}, ', ')"), v
    if kind == "authors":
        return _md_bullet(label, v), v

    def bullet(text: str) -> str:
        return _md_bullet(label, text)

    if kind == "alternate_titles":
        return _alternate_titles(c[0], c[1], "md", bullet), v
    return _external_ratings(c[0], c[1], c[2], "md", bullet), v


def _md_columns(columns: list[tuple[RawColumn, list[str]]], labels: dict[str, str]) -> list[str]:
    (_, anchor), *rest = columns
    bullets = [_md_bullet_for(column, labels[column.key], c) for column, c in rest]
    out = [_md_heading(anchor[0])]
    if bullets:
        # A blank line between the heading and the bullets, when there is any bullet.
        present = ", ".join(p for _, p in bullets)
        out.append(f"CASE WHEN num_nonnulls({present}) > 0 THEN {_NL} END")
    return [*out, *(b for b, _ in bullets), _NL]  # each bullet starts its line; this ends the last


# ---------------------------------------------------------------------------------------------
# The rendering query


@dataclass(frozen=True, slots=True)
class Plan:
    """One section's rendering query, how its ``COPY`` is run and how each row ends."""

    sql: str  # $1 = owner, $2 = libraries
    fmt: Format
    copy_options: dict[str, str]
    row_end: bytes


def plan(section: Section, fields: list[str], fmt: Format, labels: dict[str, str]) -> Plan:
    """The rendering query for a section's ``fields`` in ``fmt``.

    ``labels`` maps field keys to their labels (Markdown bullets). Raises ValueError for an
    unknown field, as the reference query does.
    """
    raw = raw_query(section, fields)
    columns = [(column, [f"t.{name}" for name in column.names]) for column in raw.columns]
    lateral = ""
    for column, c in columns:
        if column.kind == "authors":
            # Rendered in a lateral subquery so PostgreSQL can memoize it per distinct
            # authors_json (books of a series usually share theirs); OFFSET 0 keeps it there.
            lateral = f"\nLEFT JOIN LATERAL (SELECT {_authors(c[0], fmt)} AS v OFFSET 0) au ON true"
            c[:] = ["au.v"]
    if fmt == "csv":
        lone = len(columns) == 1
        select = [_csv_cell(column, c, lone) for column, c in columns] + [_CR]
        options = {"format": "csv"}
        row_end = CSV_ROW_END
    elif fmt == "json":
        select = _json_columns(columns)
        options = {"format": "csv", "delimiter": "\x02", "quote": "\x01"}
        row_end = b"\n"
    else:
        select = _md_columns(columns, labels)
        options = {"format": "text", "null": ""}
        row_end = b"\n"
    # ORDER BY in the subquery keeps it from being flattened; its order is the output's.
    sql = f"SELECT {', '.join(select)}\nFROM (\n{raw.sql}\n) t{lateral}"
    return Plan(sql, fmt, options, row_end)


# ---------------------------------------------------------------------------------------------
# Streaming


def _unescape(data: bytes) -> bytes:
    """Decode COPY text-format escapes (``\\\\ \\b \\f \\n \\r \\t \\v``, tab delimiter).

    ``codecs.escape_decode`` reads exactly these (and nothing else ever follows a backslash in
    a COPY text stream), in one C pass.
    """
    if b"\\" not in data:
        return data
    return codecs.escape_decode(data)[0]


def _frame(fmt: Format, body: bytes, separator: bytes) -> bytes:
    """Whole COPY rows → the file's bytes for them (``separator``: what precedes the first)."""
    if fmt == "csv":
        return body.replace(CSV_ROW_END, b"\r\n")
    if fmt == "json":
        return separator + body[:-2].replace(JSON_DELIMITER, b"")  # rows end with ",\n"
    return separator + _unescape(body[:-1].replace(b"\t", b""))


Write = Callable[[bytes], Awaitable[Any]]

# PostgreSQL sends a CopyData message per row and asyncpg wakes the sink for whatever one read
# brought (often under 10 KB). Chunks below this size make the sink pause, so the next read
# is bigger: about a tenth of the Python CPU per byte, the same throughput (measured: the
# pause only happens while PostgreSQL is slower than the sink).
COALESCE_BYTES = 128 * 1024
COALESCE_SECONDS = 0.004


async def copy_section(
    conn: asyncpg.Connection,
    section_plan: Plan,
    scope: Scope,
    encoder: Encoder,
    write: Write,
    on_rows: Callable[[int], None],
) -> int:
    """Stream one section's rows, rendered by the database, through ``write``.

    ``on_rows(n)`` runs after every chunk (progress, cancel: an exception it raises aborts the
    ``COPY`` at once). Returns the number of rows written. Raises :class:`Declined` when the
    query met a value it cannot render: the first ``rows`` rows are written, and the
    transaction must be rolled back to a savepoint taken before this call.
    """
    owner, libraries = literal_args(scope)
    sql = re.sub(r"\$([12])\b", lambda m: owner if m[1] == "1" else libraries, section_plan.sql)
    fmt = section_plan.fmt
    row_end = section_plan.row_end
    rows = 0
    carry = b""

    async def sink(chunk: bytes) -> None:
        nonlocal rows, carry
        data = carry + chunk if carry else chunk
        end = data.rfind(row_end) + len(row_end)
        if end < len(row_end):  # no row end at all
            carry = bytes(data)
            return
        if end != len(data):
            data, carry = data[:end], bytes(data[end:])
        else:
            carry = b""
        count = data.count(row_end)
        await write(_frame(fmt, data, encoder.separator()))
        encoder.count_rows(count)
        rows += count
        on_rows(count)
        if len(chunk) < COALESCE_BYTES:
            # asyncpg stops reading while the sink runs: a short pause lets the next chunk
            # grow in the socket buffer instead of waking the loop for every few rows.
            await asyncio.sleep(COALESCE_SECONDS)

    try:
        await conn.copy_from_query(sql, output=sink, **section_plan.copy_options)
    except asyncpg.exceptions.InvalidTextRepresentationError as err:
        if DECLINED not in str(err):
            raise
        raise Declined(rows) from None
    if carry:
        raise RuntimeError("COPY ended inside a row")
    return rows


def as_format(fmt: str) -> Format:
    """``fmt`` checked to be one of the formats (ValueError otherwise)."""
    if fmt not in _FORMATS:
        raise ValueError(f"Unknown export format: {fmt!r}")
    return _FORMATS[fmt]


_FORMATS: dict[str, Format] = {"json": "json", "csv": "csv", "md": "md"}
