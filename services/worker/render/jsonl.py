"""JSON Lines: one JSON object per line, the JSON export's row objects (SPEC §10); and the same
bytes from ``COPY``.

Each line is exactly the row object the JSON export writes (orjson, compact, catalog key order,
no nulls), then ``\\n``. Type both: series lines, then book lines, each object opening with
``"type":"series"`` or ``"type":"books"`` (no field is named ``type``). An empty export is an
empty file: no lines.

In the database, the JSON rendering (``json.COPY``'s columns), its last column closing the
object without JSON's separating comma: rows arrive as ``{...}\\n``, each its line. Framing
deletes the delimiters and, for type both, puts the type key after each row's opening brace (a
raw line feed can only be a row's end: JSON escapes every control character), in one or two
C-speed passes per chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from services.worker.render import json as json_format
from services.worker.render import sql
from services.worker.render.copy import CopyRendering
from services.worker.render.encoder import JSON_OPTIONS, SectionKind
from shared.fields import Field


def _opening(kind: SectionKind, both: bool) -> bytes:
    """What opens every row object of a section: ``{``, or ``{"type":"<kind>",`` for both."""
    return b'{"type":' + orjson.dumps(kind) + b"," if both else b"{"


class JsonLinesEncoder:
    """One row object per line; for type both, each tagged with its section."""

    def __init__(self, *, both: bool) -> None:
        self._both = both
        self._opening = b"{"

    def start(self) -> bytes:
        return b""

    def start_section(self, kind: SectionKind, columns: list[Field]) -> bytes:
        self._opening = _opening(kind, self._both)
        return b""

    def row(self, row: dict[str, Any]) -> bytes:
        # A row always holds its anchor, so the object is never "{}".
        return self._opening + orjson.dumps(row, option=JSON_OPTIONS)[1:] + b"\n"

    def separator(self) -> bytes:
        """What opens each row object in place of its ``{`` (the framing reads it)."""
        return self._opening

    def count_rows(self, rows: int) -> None:
        pass

    def end_section(self) -> bytes:
        return b""

    def end(self) -> bytes:
        return b""


# ---------------------------------------------------------------------------------------------
# In the database


def _select(columns: Sequence[sql.Column], labels: Mapping[str, str]) -> list[str]:
    # JSON's columns, but the last closes the object without the comma that separates JSON's
    # array items: a row is its line.
    *fields, _ = json_format.COPY.select(columns, labels)
    return [*fields, "'}'"]


def _frame(body: bytes, opening: bytes) -> bytes:
    lines = body.replace(json_format.DELIMITER, b"")
    if opening == b"{":
        return lines
    # Every row starts with "{": the chunk's first byte, and each byte after a line feed.
    return opening + lines[1:-1].replace(b"\n{", b"\n" + opening) + b"\n"


COPY = CopyRendering(
    select=_select,
    separator=json_format.COPY.separator,
    options=json_format.COPY.options,
    row_end=json_format.COPY.row_end,
    frame=_frame,
)
