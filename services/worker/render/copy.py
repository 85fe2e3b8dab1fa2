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

A ``COPY`` its sink abandons closes its connection
--------------------------------------------------
When the sink raises (the upload failed, ``on_rows`` raised for a cancel, the task was
cancelled inside it), asyncpg 0.32 sends a cancel request and records that an acknowledgement
is due: the result of the cancelled command, which it waits for before the next statement on
that connection. That wait never ends when the chunk the sink refused was the last one —
asyncpg already held the whole stream with its ReadyForQuery (a small section fits in one read),
the server is idle and ignores the cancel, and no other result comes. The next statement (the
savepoint's or the snapshot's ROLLBACK) then waited forever, and the export's slot with it.
Which case a failure falls in is asyncpg's private state, and even a cancel that is answered
costs a wait for the server to notice it while it streams; so :func:`copy_section` terminates
the connection (``Connection.terminate``: no round trip) whenever the ``COPY`` ends with
anything but the server's own error — the sink raised, or the task was cancelled — then
raises that error. The server rolls the transaction back as the connection closes and stops
the ``COPY`` at its next write; the pool opens a new connection for the next export. Callers
must expect the connection gone after such an error (``service._transaction`` does not let a
ROLLBACK on a closed connection replace the error). A ``COPY`` that ends with the server's
error (``Declined``, a failed query) leaves the connection in sync at ReadyForQuery, and it is
kept. None of this costs anything per row or chunk: a ``try`` around the sink's body.

Considered and not taken: a sink that records the stop and returns instead of raising (the
``COPY`` would then run to its end, a whole large export's time, before the worker could let
go); ``pg_cancel_backend`` from another connection (it races with the end of the ``COPY`` the
same way, and could cancel the next statement instead); running ``copy_from_query`` in a task
and cancelling that (a cancel that lands while the sink runs takes the same path).
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
    transaction must be rolled back to a savepoint taken before this call. When ``write`` or
    ``on_rows`` raises (or the task is cancelled while they run), ``conn`` is terminated and
    that error is raised: the transaction is gone with the connection (see the module's
    docstring).
    """
    rendering = section_plan.rendering
    row_end = rendering.row_end
    frame = rendering.frame
    rows = 0
    carry = b""
    abandoned = False

    async def sink(chunk: bytes) -> None:
        nonlocal rows, carry, abandoned
        try:
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
        except BaseException:
            abandoned = True
            raise

    try:
        # COPY takes no parameters: asyncpg quotes the arguments into the statement.
        await conn.copy_from_query(
            section_plan.sql,
            scope.user_id,
            list(scope.library_ids),
            output=sink,
            **rendering.options,
        )
    except BaseException as err:
        if abandoned or not isinstance(err, asyncpg.PostgresError):
            # Not the server's answer: asyncpg may wait forever for its cancel's acknowledgement.
            conn.terminate()
            raise
        if isinstance(err, asyncpg.exceptions.InvalidTextRepresentationError) and (
            DECLINED in str(err)
        ):
            raise Declined(rows) from None
        raise
    if carry:
        raise RuntimeError("COPY ended inside a row")
    return rows
