"""Catalog reads for one export: its rows in export order, ``batch_rows`` at a time.

The queries themselves — visibility, counts, per field its SQL, joins and kind — are
``shared.catalog_query``'s, which the api's estimate uses too (one rule, never a copy). The
caller opens one ``REPEATABLE READ, READ ONLY`` transaction and calls a count and then the
matching batches inside it, so the count and every row come from one snapshot. Rows are read
through a server-side cursor, ``batch_rows`` at a time, so memory stays flat whatever the size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import asyncpg

from shared.catalog_query import Converter, Query, args, book_query, series_query
from shared.catalog_query import Kind as Kind
from shared.catalog_query import RawColumn as RawColumn
from shared.catalog_query import RawQuery as RawQuery
from shared.catalog_query import Scope as Scope
from shared.catalog_query import count_books as count_books
from shared.catalog_query import count_series as count_series
from shared.catalog_query import field_kinds as field_kinds
from shared.catalog_query import raw_query as raw_query
from shared.catalog_query import readable_library_ids as readable_library_ids

__all__ = [
    "Kind",
    "RawColumn",
    "RawQuery",
    "Scope",
    "book_batches",
    "book_query",
    "count_books",
    "count_series",
    "field_kinds",
    "raw_query",
    "readable_library_ids",
    "section_batches",
    "series_batches",
    "series_query",
]


def section_batches(
    conn: asyncpg.Connection,
    section: Literal["series", "books"],
    scope: Scope,
    fields: list[str],
    batch_rows: int,
    *,
    skip: int = 0,
) -> AsyncIterator[list[dict[str, Any]]]:
    """A section's rows (anchor + ``fields``, catalog order, absent values left out), in export
    order, ``batch_rows`` at a time.

    ``skip`` leaves out the first rows (the order is total, so they are always the same rows).
    Must run inside a transaction (server-side cursor); raises ValueError for an unknown field.
    """
    query = series_query(fields) if section == "series" else book_query(fields)
    return _batches(conn, query, scope, batch_rows, skip)


def series_batches(
    conn: asyncpg.Connection, scope: Scope, fields: list[str], batch_rows: int, *, skip: int = 0
) -> AsyncIterator[list[dict[str, Any]]]:
    """Series rows: :func:`section_batches` of ``series``."""
    return section_batches(conn, "series", scope, fields, batch_rows, skip=skip)


def book_batches(
    conn: asyncpg.Connection, scope: Scope, fields: list[str], batch_rows: int, *, skip: int = 0
) -> AsyncIterator[list[dict[str, Any]]]:
    """Book rows: :func:`section_batches` of ``books``."""
    return section_batches(conn, "books", scope, fields, batch_rows, skip=skip)


async def _batches(
    conn: asyncpg.Connection, query: Query, scope: Scope, batch_rows: int, skip: int = 0
) -> AsyncIterator[list[dict[str, Any]]]:
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    if skip < 0:
        raise ValueError("skip must not be negative")
    keys = query.keys
    converters = tuple(
        (key, convert) for key, convert in zip(keys, query.converters, strict=True) if convert
    )
    sql = query.sql if not skip else f"{query.sql}\nOFFSET {int(skip)}"
    cursor = await conn.cursor(sql, *args(scope))
    while True:
        records = await cursor.fetch(batch_rows)
        if not records:
            return
        yield [_to_row(record, keys, converters) for record in records]
        if len(records) < batch_rows:
            return


def _to_row(
    record: Sequence[Any], keys: tuple[str, ...], converters: tuple[tuple[str, Converter], ...]
) -> dict[str, Any]:
    # Runs once per exported row: build the dict in one pass, then convert the few typed values
    # in place (assigning to an existing key keeps its position, so catalog order holds).
    row = {key: value for key, value in zip(keys, record, strict=True) if value is not None}
    for key, convert in converters:
        value = row.get(key)
        if value is not None:
            converted = convert(value)
            if converted is None:
                del row[key]
            else:
                row[key] = converted
    return row
