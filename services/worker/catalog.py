"""Catalog reads for one export: visibility, counts and rows in export order (SPEC §2 to §5).

The caller opens one ``REPEATABLE READ, READ ONLY`` transaction and calls a count and then the
matching batches inside it, so the count and every row come from one snapshot. Rows are read
through a server-side cursor, ``batch_rows`` at a time, so memory stays flat whatever the size.

Choices where SPEC is silent (each is also noted next to the code that makes it):

- Text ordering never depends on the database's collation: a text key sorts by
  ``lower(x COLLATE "C")`` then by ``x COLLATE "C"``, i.e. ASCII letters fold case and everything
  else sorts by code point, identically on every server. Multi-value lists use the same rule.
- An empty string is "no data", like NULL: it is left out of the row and sorts as missing.
- ``progress`` and ``community_avg_rating`` are rounded to 2 decimals in SQL (numeric, half away
  from zero), so the value never depends on float arithmetic in Python.
- Every number that is integral is an ``int`` (``4.0`` chapters → ``4``), every other one a finite
  ``float``; NaN and infinities are no data.
- Book ``progress`` clamps ``progress_percentage`` to 0..1 and ``current_page`` to the page count.
- ``current_page``, ``completed`` and ``completed_at`` are present only when the owner has a
  ``read_progress`` row for the book; ``progress`` is always present (0 without a row).
- Only manual collections (``condition IS NULL``) are exported.
- User-specific values (unread count, progress, user rating and notes) are the owner's only.
- Library access (``user_library_access``) is applied again here, at run time, on top of the
  request's libraries, so access revoked between request and run is honoured.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from shared.fields import BOOK_FIELDS, SERIES_FIELDS, Field

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Scope:
    """Whose export it is and which libraries it covers."""

    user_id: UUID
    library_ids: list[UUID]


# ---------------------------------------------------------------------------------------------
# Ordering and value conversion


def _text_order(expr: str) -> str:
    """Locale-independent, case-insensitive order for a text key, missing values last."""
    return f'lower(({expr}) COLLATE "C") NULLS LAST, ({expr}) COLLATE "C" NULLS LAST'


def _agg_order(expr: str) -> str:
    """The same order inside ``array_agg(... ORDER BY ...)`` (no NULLs there)."""
    return f'lower(({expr}) COLLATE "C"), ({expr}) COLLATE "C"'


def _number(value: int | float) -> int | float | None:
    """Integral numbers as ``int``, others as finite ``float``; NaN/inf are no data."""
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() else value


def _authors(text: str) -> list[dict[str, str]] | None:
    """``authors_json`` → ``[{"name", "role"?}]`` in stored order; malformed entries skipped."""
    try:
        entries = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(entries, list):
        return None
    authors: list[dict[str, str]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            continue
        author = {"name": name.strip()}
        role = entry.get("role")
        if isinstance(role, str) and role.strip():
            author["role"] = role.strip()
        authors.append(author)
    return authors or None


def _alternate_titles(records: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    return [{"label": label, "title": title} for label, title in records]


def _external_ratings(records: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    ratings: list[dict[str, Any]] = []
    for source, rating, votes in records:
        item: dict[str, Any] = {"source": source}
        value = _number(rating)
        if value is not None:
            item["rating"] = value
        if votes is not None:
            item["votes"] = votes
        ratings.append(item)
    return ratings


@dataclass(frozen=True, slots=True)
class _Column:
    """How one field is read: a SQL expression, the joins it needs, an optional converter."""

    sql: str
    joins: tuple[str, ...] = ()
    convert: Converter | None = None


@dataclass(frozen=True, slots=True)
class _Join:
    """A join some fields need, and the extra CTEs it reads."""

    sql: str
    ctes: tuple[str, ...] = ()


def _grouped_names(owner: str, link: str, table: str, scope: str, extra: str = "") -> str:
    """Per owner id, the sorted non-empty names of the ``table`` rows linked through ``link``.

    ``owner`` is the link's owner column (``series_id`` / ``book_id``); the other link column is
    ``<table without the final s>_id``. Aggregating every in-scope owner at once and hash-joining
    the result is several times faster on large exports than a correlated subquery per row;
    ``scope`` (a CTE of ids) keeps the work proportional to the export, not to the catalog.
    """
    return (
        f"(SELECT lk.{owner} AS id, array_agg(x.name ORDER BY {_agg_order('x.name')}) AS names"
        f" FROM {link} lk JOIN {table} x ON x.id = lk.{table[:-1]}_id"
        f" WHERE x.name <> ''{extra} AND lk.{owner} IN (SELECT id FROM {scope})"
        f" GROUP BY lk.{owner})"
    )


def _series_names(alias: str, link: str, table: str, extra: str = "") -> _Join:
    sql = _grouped_names("series_id", link, table, "visible", extra)
    return _Join(f"LEFT JOIN {sql} {alias} ON {alias}.id = s.id")


def _book_names(alias: str, link: str, table: str) -> _Join:
    sql = _grouped_names("book_id", link, table, "scoped_books")
    return _Join(f"LEFT JOIN {sql} {alias} ON {alias}.id = b.id", ("scoped_books",))


# ---------------------------------------------------------------------------------------------
# Visibility (SPEC §3) and series order (SPEC §5). $1 = owner, $2 = requested libraries.
# Each CTE is MATERIALIZED: evaluated once, then hash-joined, never re-run per row.

_SERIES_ORDER = ", ".join(
    (
        _text_order("NULLIF(vm.title_sort, '')"),
        _text_order("NULLIF(vm.title, '')"),
        _text_order("vs.name"),
        "vs.id",
    )
)

_GRANTS = """grants AS MATERIALIZED (
    SELECT ust.sharing_tag_id, ust.access_mode
    FROM user_sharing_tags ust
    WHERE ust.user_id = $1
    UNION
    SELECT agt.sharing_tag_id, agt.access_mode
    FROM user_access_groups uag
    JOIN access_group_sharing_tags agt ON agt.access_group_id = uag.access_group_id
    WHERE uag.user_id = $1
)"""

_READABLE = """readable AS MATERIALIZED (
    SELECT lib.id
    FROM libraries lib
    WHERE lib.id = ANY($2::uuid[])
      AND (
          NOT EXISTS (SELECT 1 FROM user_library_access ula WHERE ula.user_id = $1)
          OR EXISTS (
              SELECT 1 FROM user_library_access ula
              WHERE ula.user_id = $1 AND ula.library_id = lib.id
          )
      )
)"""

# Every visible series with its export position, so the series order is defined once and books
# sort by one integer instead of repeating the series' text keys on every book.
_VISIBLE = f"""visible AS MATERIALIZED (
    SELECT vs.id, row_number() OVER (ORDER BY {_SERIES_ORDER}) AS pos
    FROM series vs
    LEFT JOIN series_metadata vm ON vm.series_id = vs.id
    WHERE vs.library_id IN (SELECT id FROM readable)
      -- Deny wins over allow, whatever the source of either grant.
      AND NOT EXISTS (
          SELECT 1 FROM series_sharing_tags sst
          JOIN grants g ON g.sharing_tag_id = sst.sharing_tag_id
          WHERE sst.series_id = vs.id AND g.access_mode = 'deny'
      )
      -- Any allow grant turns the catalog into an allow-list: untagged series disappear.
      AND (
          NOT EXISTS (SELECT 1 FROM grants g WHERE g.access_mode = 'allow')
          OR EXISTS (
              SELECT 1 FROM series_sharing_tags sst
              JOIN grants g ON g.sharing_tag_id = sst.sharing_tag_id
              WHERE sst.series_id = vs.id AND g.access_mode = 'allow'
          )
      )
)"""

# The export's books: only built when a per-book aggregate needs to be limited to them.
_SCOPED_BOOKS = """scoped_books AS MATERIALIZED (
    SELECT sb.id FROM books sb JOIN visible v ON v.id = sb.series_id WHERE NOT sb.deleted
)"""

_BASE_CTES = (_GRANTS, _READABLE, _VISIBLE)
_EXTRA_CTES = {"scoped_books": _SCOPED_BOOKS}

# ---------------------------------------------------------------------------------------------
# Series

_SERIES_JOINS: dict[str, _Join] = {
    "library": _Join("LEFT JOIN libraries l ON l.id = s.library_id"),
    # Counts cover every non-deleted book of the series; "unread" is relative to the owner.
    "counts": _Join(
        """LEFT JOIN (
        SELECT cb.series_id AS id, count(*) AS actual,
               count(*) FILTER (WHERE rp.completed IS NOT TRUE) AS unread
        FROM books cb
        LEFT JOIN read_progress rp ON rp.book_id = cb.id AND rp.user_id = $1
        WHERE NOT cb.deleted AND cb.series_id IN (SELECT id FROM visible)
        GROUP BY cb.series_id
    ) bc ON bc.id = s.id"""
    ),
    "rating": _Join("LEFT JOIN user_series_ratings ur ON ur.series_id = s.id AND ur.user_id = $1"),
    # Every user's rating counts (SPEC §3: values inside a visible row are not filtered).
    "community": _Join(
        """LEFT JOIN (
        SELECT r.series_id AS id, round(avg(r.rating), 2)::float8 AS average
        FROM user_series_ratings r
        WHERE r.series_id IN (SELECT id FROM visible)
        GROUP BY r.series_id
    ) cr ON cr.id = s.id"""
    ),
    "genres": _series_names("sg", "series_genres", "genres"),
    "tags": _series_names("stg", "series_tags", "tags"),
    # Smart collections (non-NULL condition) are computed views, not the user's curation.
    "collections": _series_names(
        "sc", "collection_series", "collections", " AND x.condition IS NULL"
    ),
    "alternate_titles": _Join(
        f"""LEFT JOIN (
        SELECT a.series_id AS id,
               array_agg(ROW(a.label, a.title)
                         ORDER BY {_agg_order("a.label")}, {_agg_order("a.title")}) AS items
        FROM series_alternate_titles a
        WHERE a.series_id IN (SELECT id FROM visible)
        GROUP BY a.series_id
    ) sat ON sat.id = s.id"""
    ),
    "external_ratings": _Join(
        f"""LEFT JOIN (
        SELECT e.series_id AS id,
               array_agg(ROW(e.source_name, e.rating::float8, e.vote_count)
                         ORDER BY {_agg_order("e.source_name")}, e.rating,
                                  e.vote_count NULLS LAST) AS items
        FROM series_external_ratings e
        WHERE e.series_id IN (SELECT id FROM visible)
        GROUP BY e.series_id
    ) ser ON ser.id = s.id"""
    ),
}

_SERIES_COLUMNS: dict[str, _Column] = {
    "series_name": _Column("s.name"),
    "series_id": _Column("s.id::text"),
    "library_id": _Column("s.library_id::text"),
    "library_name": _Column("NULLIF(l.name, '')", ("library",)),
    "path": _Column("NULLIF(s.path, '')"),
    "created_at": _Column("s.created_at"),
    "updated_at": _Column("s.updated_at"),
    "title": _Column("NULLIF(m.title, '')"),
    "summary": _Column("NULLIF(m.summary, '')"),
    "publisher": _Column("NULLIF(m.publisher, '')"),
    "status": _Column("NULLIF(m.status, '')"),
    "year": _Column("m.year"),
    "language": _Column("NULLIF(m.language, '')"),
    "authors": _Column("m.authors_json", convert=_authors),
    "genres": _Column("sg.names", ("genres",)),
    "tags": _Column("stg.names", ("tags",)),
    "alternate_titles": _Column("sat.items", ("alternate_titles",), _alternate_titles),
    "collections": _Column("sc.names", ("collections",)),
    "expected_book_count": _Column("m.total_volume_count"),
    "expected_chapter_count": _Column("m.total_chapter_count", convert=_number),
    "actual_book_count": _Column("COALESCE(bc.actual, 0)", ("counts",)),
    "unread_book_count": _Column("COALESCE(bc.unread, 0)", ("counts",)),
    "progress": _Column(
        "CASE WHEN COALESCE(bc.actual, 0) = 0 THEN 0"
        " ELSE round((bc.actual - bc.unread) * 100.0 / bc.actual, 2) END::float8",
        ("counts",),
        _number,
    ),
    "user_rating": _Column("ur.rating", ("rating",)),
    "user_notes": _Column("NULLIF(ur.notes, '')", ("rating",)),
    "community_avg_rating": _Column("cr.average", ("community",), _number),
    "external_ratings": _Column("ser.items", ("external_ratings",), _external_ratings),
}

# ---------------------------------------------------------------------------------------------
# Books

_BOOK_NAME = "COALESCE(NULLIF(bm.title, ''), b.file_name)"

_BOOK_JOINS: dict[str, _Join] = {
    "series": _Join("JOIN series s ON s.id = b.series_id"),
    "library": _Join("LEFT JOIN libraries l ON l.id = b.library_id"),
    "progress": _Join("LEFT JOIN read_progress rp ON rp.book_id = b.id AND rp.user_id = $1"),
    "genres": _book_names("bg", "book_genres", "genres"),
    "tags": _book_names("btg", "book_tags", "tags"),
    "read_lists": _book_names("brl", "read_list_books", "read_lists"),
}

# 100 when completed, else the stored fraction, else the page position, else 0 (SPEC §4).
_BOOK_PROGRESS = """CASE
    WHEN rp.completed THEN 100
    WHEN rp.progress_percentage IS NOT NULL
        THEN round((least(greatest(rp.progress_percentage, 0), 1) * 100)::numeric, 2)
    WHEN rp.current_page IS NOT NULL AND b.page_count > 0
        THEN round(least(greatest(rp.current_page, 0), b.page_count) * 100.0 / b.page_count, 2)
    ELSE 0
END::float8"""

_BOOK_COLUMNS: dict[str, _Column] = {
    "book_name": _Column(_BOOK_NAME),
    "book_id": _Column("b.id::text"),
    "series_id": _Column("b.series_id::text"),
    "library_id": _Column("b.library_id::text"),
    "series_name": _Column("s.name", ("series",)),
    "library_name": _Column("NULLIF(l.name, '')", ("library",)),
    "file_name": _Column("NULLIF(b.file_name, '')"),
    "file_path": _Column("NULLIF(b.path, '')"),
    "file_size": _Column("b.file_size"),
    "book_format": _Column("NULLIF(b.format, '')"),
    "page_count": _Column("b.page_count"),
    "number": _Column("bm.number::float8", convert=_number),
    "created_at": _Column("b.created_at"),
    "updated_at": _Column("b.updated_at"),
    "title": _Column("NULLIF(bm.title, '')"),
    "summary": _Column("NULLIF(bm.summary, '')"),
    "publisher": _Column("NULLIF(bm.publisher, '')"),
    "year": _Column("bm.year"),
    "language": _Column("NULLIF(bm.language_iso, '')"),
    "authors": _Column("bm.authors_json", convert=_authors),
    "genres": _Column("bg.names", ("genres",)),
    "tags": _Column("btg.names", ("tags",)),
    "read_lists": _Column("brl.names", ("read_lists",)),
    "progress": _Column(_BOOK_PROGRESS, ("progress",), _number),
    "current_page": _Column("rp.current_page", ("progress",)),
    "completed": _Column("rp.completed", ("progress",)),
    "completed_at": _Column("rp.completed_at", ("progress",)),
}

# Books follow their series' position, then number, then name, then id (SPEC §5).
_BOOK_ORDER = ", ".join(("v.pos", "bm.number NULLS LAST", _text_order(_BOOK_NAME), "b.id"))


# ---------------------------------------------------------------------------------------------
# Query building


@dataclass(frozen=True, slots=True)
class _Query:
    sql: str
    keys: tuple[str, ...]
    converters: tuple[Converter | None, ...]


def _with(*ctes: str) -> str:
    return "WITH " + ",\n".join(ctes) + "\n"


def _query(
    fields: list[str],
    catalog: tuple[Field, ...],
    columns: dict[str, _Column],
    joins: dict[str, _Join],
    body: tuple[str, ...],
    tail: tuple[str, ...],
) -> _Query:
    """SELECT the anchor + requested fields (catalog order) with only the joins they need."""
    wanted = set(fields)
    unknown = wanted - {f.key for f in catalog}
    if unknown:
        raise ValueError(f"Unknown field: {sorted(unknown)[0]}")
    keys = tuple(f.key for f in catalog if f.is_anchor or f.key in wanted)
    needed = {name for key in keys for name in columns[key].joins}
    # Registry order, so the same field set always gives the same SQL text.
    chosen = [join for name, join in joins.items() if name in needed]
    ctes = [*_BASE_CTES, *dict.fromkeys(_EXTRA_CTES[c] for join in chosen for c in join.ctes)]
    select = ",\n    ".join(f'{columns[key].sql} AS "{key}"' for key in keys)
    sql = "\n".join(
        (_with(*ctes) + "SELECT " + select, *body, *(join.sql for join in chosen), *tail)
    )
    return _Query(sql, keys, tuple(columns[key].convert for key in keys))


def series_query(fields: list[str]) -> _Query:
    """The series SELECT for ``fields`` ($1 = owner, $2 = libraries); exposed for EXPLAIN."""
    return _query(
        fields,
        SERIES_FIELDS,
        _SERIES_COLUMNS,
        _SERIES_JOINS,
        (
            "FROM visible v",
            "JOIN series s ON s.id = v.id",
            "LEFT JOIN series_metadata m ON m.series_id = s.id",
        ),
        ("ORDER BY v.pos",),
    )


def book_query(fields: list[str]) -> _Query:
    """The book SELECT for ``fields`` ($1 = owner, $2 = libraries); exposed for EXPLAIN."""
    return _query(
        fields,
        BOOK_FIELDS,
        _BOOK_COLUMNS,
        _BOOK_JOINS,
        (
            "FROM books b",
            "JOIN visible v ON v.id = b.series_id",
            "LEFT JOIN book_metadata bm ON bm.book_id = b.id",
        ),
        ("WHERE NOT b.deleted", "ORDER BY " + _BOOK_ORDER),
    )


def _args(scope: Scope) -> tuple[UUID, list[UUID]]:
    return scope.user_id, list(scope.library_ids)


# ---------------------------------------------------------------------------------------------
# Public API


async def readable_library_ids(
    conn: asyncpg.Connection, user_id: UUID, requested: list[UUID]
) -> list[UUID]:
    """The requested libraries that exist and that the user may read, in request order.

    A user without ``user_library_access`` rows may read every library (SPEC §2).
    """
    rows = await conn.fetch(_with(_READABLE) + "SELECT id FROM readable", user_id, requested)
    readable = {row["id"] for row in rows}
    return [lid for lid in dict.fromkeys(requested) if lid in readable]


async def count_series(conn: asyncpg.Connection, scope: Scope) -> int:
    """Visible series in scope (the number of rows ``series_batches`` yields)."""
    sql = _with(*_BASE_CTES) + "SELECT count(*) FROM visible"
    return int(await conn.fetchval(sql, *_args(scope)))


async def count_books(conn: asyncpg.Connection, scope: Scope) -> int:
    """Non-deleted books of visible series (the number of rows ``book_batches`` yields)."""
    sql = _with(*_BASE_CTES) + (
        "SELECT count(*) FROM books b JOIN visible v ON v.id = b.series_id WHERE NOT b.deleted"
    )
    return int(await conn.fetchval(sql, *_args(scope)))


def series_batches(
    conn: asyncpg.Connection, scope: Scope, fields: list[str], batch_rows: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """Series rows (anchor + ``fields``, catalog order, absent values left out), in export order.

    Must run inside a transaction (server-side cursor); raises ValueError for an unknown field.
    """
    return _batches(conn, series_query(fields), scope, batch_rows)


def book_batches(
    conn: asyncpg.Connection, scope: Scope, fields: list[str], batch_rows: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """Book rows (anchor + ``fields``, catalog order, absent values left out), in export order.

    Must run inside a transaction (server-side cursor); raises ValueError for an unknown field.
    """
    return _batches(conn, book_query(fields), scope, batch_rows)


async def _batches(
    conn: asyncpg.Connection, query: _Query, scope: Scope, batch_rows: int
) -> AsyncIterator[list[dict[str, Any]]]:
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    keys = query.keys
    converters = tuple(
        (key, convert) for key, convert in zip(keys, query.converters, strict=True) if convert
    )
    cursor = await conn.cursor(query.sql, *_args(scope))
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
