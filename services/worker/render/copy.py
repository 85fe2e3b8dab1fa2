"""A section rendered by PostgreSQL and streamed with ``COPY``, at the speed of ``COPY`` itself.

For a section, :func:`plan` wraps the reference query (``catalog.raw_query``: the same CTEs,
joins, visibility filter and order, the values unconverted) in a query that renders every field
in SQL, one ``COPY`` column per field (each format's ``CopyRendering`` says how), and
:func:`copy_section` streams it with ``COPY ... TO STDOUT``. ``COPY``'s own writer does the
rest, and Python only frames the stream, with a few C-speed passes over each chunk and no work
per row. PostgreSQL sends one ``CopyData`` message per row and asyncpg hands whole messages to
the sink, so a chunk ends on a row boundary; an incomplete tail is carried over all the same.

A value the SQL cannot render identically makes the query fail with :data:`DECLINED` — an
``authors_json`` that orjson and PostgreSQL would parse differently (``\\u0000``, numbers beyond
a double, nesting deeper than orjson allows), a timestamp outside Python's years 1 to 9999 — and
the caller finishes the section in Python from the first row not yet written (:class:`Declined`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.worker.catalog import Scope, raw_query
from services.worker.render import sql
from services.worker.render.encoder import Encoder, SectionKind

DECLINED = "codex-exports: value left to the Python renderer"
"""Marker of the error the rendering query raises (``exports.declined``) for a value it cannot
render identically."""


class Declined(Exception):
    """The database could not render a row identically; ``rows`` rows were written before it."""

    def __init__(self, rows: int) -> None:
        super().__init__(f"database rendering declined after {rows} rows")
        self.rows = rows


@dataclass(frozen=True, slots=True)
class CopyRendering:
    """How PostgreSQL renders one format: its ``COPY`` columns and how the stream is framed."""

    select: Callable[[Sequence[sql.Column], Mapping[str, str]], list[str]]
    """The ``COPY`` columns of a section's fields (labels by key, for Markdown)."""
    separator: str | None
    """What joins the items of a multi-value field; None: they are a JSON array."""
    options: Mapping[str, str]
    """``COPY`` options (format, delimiter, quote, null)."""
    row_end: bytes
    """What ends every row in the ``COPY`` stream (and nothing else in it)."""
    frame: Callable[[bytes, bytes], bytes]
    """Whole ``COPY`` rows and what precedes the first (the encoder's separator) → file bytes."""


@dataclass(frozen=True, slots=True)
class Plan:
    """One section's rendering query and how its ``COPY`` is run and framed."""

    sql: str  # $1 = owner, $2 = libraries
    rendering: CopyRendering


def plan(
    section: SectionKind, fields: list[str], rendering: CopyRendering, labels: Mapping[str, str]
) -> Plan:
    """The rendering query for a section's ``fields``.

    ``labels`` maps field keys to their labels (Markdown bullets). Raises ValueError for an
    unknown field, as the reference query does.
    """
    raw = raw_query(section, fields)
    columns: list[sql.Column] = []
    laterals: list[str] = []
    for raw_column in raw.columns:
        column = sql.Column(
            raw_column.key, raw_column.kind, tuple(f"t.{name}" for name in raw_column.names)
        )
        call = sql.multi_value(column, rendering.separator)
        if call is not None:
            alias = f"m{len(laterals)}"
            laterals.append(f"\nLEFT JOIN LATERAL {call} {alias}(v) ON true")
            column = sql.Column(column.key, column.kind, (f"{alias}.v",))
        columns.append(column)
    select = ", ".join(rendering.select(columns, labels))
    # ORDER BY in the subquery keeps it from being flattened; its order is the output's.
    return Plan(f"SELECT {select}\nFROM (\n{raw.sql}\n) t{''.join(laterals)}", rendering)


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
    rendering = section_plan.rendering
    row_end = rendering.row_end
    frame = rendering.frame
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
        await write(frame(data, encoder.separator()))
        encoder.count_rows(count)
        rows += count
        on_rows(count)
        if len(chunk) < COALESCE_BYTES:
            # asyncpg stops reading while the sink runs: a short pause lets the next chunk
            # grow in the socket buffer instead of waking the loop for every few rows.
            await asyncio.sleep(COALESCE_SECONDS)

    try:
        # COPY takes no parameters: asyncpg quotes the arguments into the statement.
        await conn.copy_from_query(
            section_plan.sql,
            scope.user_id,
            list(scope.library_ids),
            output=sink,
            **rendering.options,
        )
    except asyncpg.exceptions.InvalidTextRepresentationError as err:
        if DECLINED not in str(err):
            raise
        raise Declined(rows) from None
    if carry:
        raise RuntimeError("COPY ended inside a row")
    return rows
