"""What every format's Python encoder is, and the value text the text formats share.

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

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

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

    # For rows rendered by the database (``render.copy``), byte-identical to ``row()``:

    def separator(self) -> bytes:
        """What ``row()`` would write before the next row's own text."""
        ...

    def count_rows(self, rows: int) -> None:
        """Account for ``rows`` rows written elsewhere, as if ``row()`` had written them."""
        ...


Write = Callable[[bytes], Awaitable[Any]]


@runtime_checkable
class Spooled(Protocol):
    """An encoder whose library writes the file itself, on the worker's disk (XLSX).

    Its other calls return no bytes; after ``end()`` the worker calls ``spool`` to finish the
    file and stream it through ``write``, and ``discard`` always, once the export has ended in
    any way (completed, failed, cancelled), to remove what it wrote on disk.
    """

    async def spool(self, write: Write) -> None: ...

    def discard(self) -> None: ...


# orjson writes aware UTC datetimes as RFC 3339 with "Z", microseconds only when non-zero.
JSON_OPTIONS = orjson.OPT_UTC_Z


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, microseconds only when non-zero — as JSON writes it."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return orjson.dumps(value, option=JSON_OPTIONS)[1:-1].decode()


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


def unsupported(value: Any) -> str:
    """Fail loudly on a value type no catalog column yields."""
    raise TypeError(f"cannot render {type(value).__name__} in an export")


def text_renderers(separator: str, true: str, false: str) -> dict[type, Callable[[Any], str]]:
    """Exact type → text, for CSV and Markdown. ``bool`` has its own entry (it is a subclass of
    ``int``); a list is joined by ``separator``."""
    return {
        str: lambda v: v,
        int: _number_text,
        float: _number_text,
        bool: lambda v: true if v else false,
        datetime: rfc3339,
        list: lambda v: separator.join([_item_text(item) for item in v]),
    }
