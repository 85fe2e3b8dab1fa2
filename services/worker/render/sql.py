"""SQL expressions that render values, for the formats' database rendering.

Each helper takes SQL expressions and returns one; NULL in, NULL out. The rendering itself lives
in named SQL functions (``shared/migrations/exports/0004_render_functions.sql``), which the
planner inlines; these helpers only name the calls, so a format module reads as a list of
``exports.<function>(<column>)``. Arguments are columns of the section's query (``t.c3``), or
for a multi-value field its rendered text (``m0.v``); the only literals are our own constants
(field keys and labels, separators), quoted by :func:`lit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from services.worker.catalog import Kind


def lit(text: str) -> str:
    """An escape-string literal: the same meaning whatever ``standard_conforming_strings``."""
    if "\x00" in text:
        raise ValueError("a SQL literal cannot hold NUL")
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True, slots=True)
class Column:
    """One field of a section's rendering query: its key, kind and the SQL that reads it.

    ``values`` are the raw columns (``catalog.Kind`` says which), except for the multi-value
    kinds, whose one value is their text as :func:`multi_value` rendered it.
    """

    key: str
    kind: Kind
    values: tuple[str, ...]

    @property
    def value(self) -> str:
        return self.values[0]


def multi_value(column: Column, separator: str | None) -> str | None:
    """The set-returning call that renders a multi-value column as one row of text, else None.

    Items are joined by ``separator``, or with None written as a JSON array. The query joins the
    call ``LATERAL``, so PostgreSQL may memoize it per distinct value.
    """
    args = ", ".join(column.values)
    style, extra = ("json", "") if separator is None else ("text", ", " + lit(separator))
    match column.kind:
        case "authors":
            return f"exports.authors_as_{style}({args}{extra})"
        case "alternate_titles":
            return f"exports.alternate_titles_as_{style}({args}{extra})"
        case "external_ratings":
            return f"exports.external_ratings_as_{style}({args}{extra})"
        case "text" | "id" | "int" | "float" | "bool" | "time" | "names":
            return None
        case _:
            assert_never(column.kind)


def declined(x: str) -> str:
    """Fails the query with ``render.copy.DECLINED`` when evaluated (reads ``x`` so it is
    never evaluated while the query is planned)."""
    return f"exports.declined(({x}) IS NULL)"


def json_string(x: str) -> str:
    """A JSON string, escaped as orjson escapes it."""
    return f"exports.json_string({x})"


def float_text(x: str) -> str:
    """``repr()`` of the number the Python reference reads; NULL for NaN and ±inf."""
    return f"exports.float_text({x})"


def json_number(x: str) -> str:
    """What orjson writes for the same number; NULL for NaN and ±inf."""
    return f"exports.json_number({x})"


def rfc3339(x: str) -> str:
    """``encoder.rfc3339`` of a timestamptz; declined outside years 1 to 9999."""
    return f"exports.rfc3339({x})"
