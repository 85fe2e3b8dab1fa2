"""The catalog's export queries (SPEC §2 to §5), written once: visibility, counts, and per field
the SQL that reads its value, the joins it needs and its kind.

The worker runs them (``services.worker.catalog``: its count, then its rows, in one
``REPEATABLE READ, READ ONLY`` snapshot; ``services.worker.render`` wraps :func:`raw_query` to
render inside ``COPY``), and the api counts and samples them for an estimate before anything is
queued (``shared.estimate``): one rule for who sees what, never a copy.

Choices where SPEC is silent (each is also noted next to the code that makes it):

- Text ordering never depends on the database's collation: a text key sorts by
  ``lower(x COLLATE "C")`` then by ``x COLLATE "C"``, i.e. ASCII letters fold case and everything
  else sorts by code point, identically on every server. Multi-value lists use the same rule.
- An empty string is "no data", like NULL: it is left out of the row and sorts as missing.
- ``progress`` and ``community_avg_rating`` are rounded to 2 decimals in SQL (numeric, half away
  from zero), so the value never depends on float arithmetic in Python.
- Every number that is integral is an ``int`` (``4.0`` chapters → ``4``), every other one a finite
  ``float``; NaN and infinities are no data. Integral values of 2**63 and more stay floats
  (``1e+22``): JSON writers refuse integers past 64 bits.
- Book ``progress`` clamps ``progress_percentage`` to 0..1 and ``current_page`` to the page count.
- ``current_page``, ``completed`` and ``completed_at`` are present only when the owner has a
  ``read_progress`` row for the book; ``progress`` is always present (0 without a row).
- Only manual collections (``condition IS NULL``) are exported.
- User-specific values (unread count, progress, user rating and notes) are the owner's only.
- Library access (``shared.library_access``) is applied again here, at run time, on top of the
  request's libraries, so access revoked between request and run is honoured.
- ``total_chapter_count`` is a ``real`` (float4) in Codex: it is read through its shortest text
  form, so a stored 47.1 exports as 47.1, not as float4's 47.099998474121094.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import asyncpg
import orjson

from shared import library_access
from shared.catalog_rules import (
    GRANTS,
    aggregate_order,
    book_order,
    series_order,
    visible,
)
from shared.fields import BOOK_FIELDS, SERIES_FIELDS, Field

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class Scope:
    """Whose export it is and which libraries it covers."""

    user_id: UUID
    library_ids: list[UUID]


# ---------------------------------------------------------------------------------------------
# Ordering and value conversion


_INT64_LIMIT = 2.0**63


def exported_number(value: int | float) -> int | float | None:
    """Integral numbers as ``int``, others as finite ``float``; NaN/inf are no data.

    An integral float as large as 2**63 stays a float (``1e+22``): JSON writers refuse
    integers past 64 bits, and its digits past the 17th would be noise anyway.
    """
    if isinstance(value, int):
        return value
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < _INT64_LIMIT else value


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
        value = exported_number(rating)
        if value is not None:
            item["rating"] = value
        if votes is not None:
            item["votes"] = votes
        ratings.append(item)
    return ratings


Kind = Literal[
    "text",
    "id",
    "int",
    "float",
    "bool",
    "time",
    "names",
    "authors",
    "alternate_titles",
    "external_ratings",
]
"""What a column holds, for the database rendering (``services.worker.render``):

``text`` a string (may need escaping), ``id`` a uuid as text (never needs escaping), ``int``,
``float`` (float8: NaN and infinities are no data, integral values print as integers), ``bool``,
``time`` (timestamptz), ``names`` (text[], already sorted), ``authors`` (the raw
``authors_json`` text), ``alternate_titles`` (labels[], titles[]) and ``external_ratings``
(sources[], ratings float8[], votes int[]) as parallel arrays in export order.
"""


@dataclass(frozen=True, slots=True)
class _Column:
    """How one field is read: a SQL expression, the joins it needs, an optional converter.

    ``kind`` and ``raw`` are for the database renderer: ``raw`` lists the expressions it reads
    instead of ``sql`` when the Python reference reads a composite value (arrays of records).
    """

    sql: str
    joins: tuple[str, ...] = ()
    convert: Converter | None = None
    kind: Kind = "text"
    raw: tuple[str, ...] = ()


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
    ``scope`` (a CTE of unique ids) keeps the work proportional to the export, not to the
    catalog: joined from it, a small scope reads the links through their index.
    """
    return (
        f"(SELECT lk.{owner} AS id, array_agg(x.name ORDER BY {aggregate_order('x.name')}) AS names"
        f" FROM {scope} in_scope JOIN {link} lk ON lk.{owner} = in_scope.id"
        f" JOIN {table} x ON x.id = lk.{table[:-1]}_id"
        f" WHERE x.name <> ''{extra}"
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

_READABLE = f"""readable AS MATERIALIZED (
    SELECT lib.id
    FROM libraries lib
    WHERE lib.id = ANY($2::uuid[]) AND {library_access.readable("lib.id", "$1")}
)"""

# Every visible series with its export position, so the series order is defined once and books
# sort by one integer instead of repeating the series' text keys on every book.
# "library_id = ANY($2)" is redundant with readable (a subset of $2), but it lets the planner
# estimate the scope from series.library_id's statistics: a small library in a large catalog
# then reads its books through books_series_id_idx instead of scanning every book.
_IN_SCOPE = f"""vs.library_id = ANY($2::uuid[])
      AND vs.library_id IN (SELECT id FROM readable)
      AND {visible("vs.id")}"""
_VISIBLE = f"""visible AS MATERIALIZED (
    SELECT vs.id, row_number() OVER (ORDER BY {series_order("vs", "vm")}) AS pos
    FROM series vs
    LEFT JOIN series_metadata vm ON vm.series_id = vs.id
    WHERE {_IN_SCOPE}
)"""

# The export's books: only built when a per-book aggregate needs to be limited to them.
_SCOPED_BOOKS = """scoped_books AS MATERIALIZED (
    SELECT sb.id FROM books sb JOIN visible v ON v.id = sb.series_id WHERE NOT sb.deleted
)"""

_BASE_CTES = (GRANTS, _READABLE, _VISIBLE)
_EXTRA_CTES = {"scoped_books": _SCOPED_BOOKS}


def _sample_ctes(series: int, books: int) -> tuple[str, ...]:
    """``visible`` as at most ``series`` of the visible series, and ``sampled_books`` as at
    most ``books`` of their books: chosen by a hash of their ids, so the same catalog gives the
    same sample (an estimate does not jitter), spread over the whole scope, not its first rows.
    The series' positions are not computed (a sample has no order)."""
    return (
        GRANTS,
        _READABLE,
        f"""visible AS MATERIALIZED (
    SELECT vs.id, 0::bigint AS pos
    FROM series vs
    WHERE {_IN_SCOPE}
    ORDER BY md5(vs.id::text) LIMIT {int(series)}
)""",
        f"""sampled_books AS MATERIALIZED (
    SELECT sb.id FROM books sb JOIN visible v ON v.id = sb.series_id WHERE NOT sb.deleted
    ORDER BY md5(sb.id::text) LIMIT {int(books)}
)""",
    )


# In a sample, a per-book aggregate covers the sampled books only.
_SAMPLE_EXTRA_CTES = {"scoped_books": "scoped_books AS (SELECT id FROM sampled_books)"}

# ---------------------------------------------------------------------------------------------
# Series

_RATING_ORDER = f"{aggregate_order('e.source_name')}, e.rating, e.vote_count NULLS LAST"
_ALT_TITLE_ORDER = f"{aggregate_order('a.label')}, {aggregate_order('a.title')}"

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
                         ORDER BY {_ALT_TITLE_ORDER}) AS items,
               -- The same items as parallel arrays, for the database renderer. Items that tie
               -- on every sort key are equal, so the three sorts agree.
               array_agg(a.label
                         ORDER BY {_ALT_TITLE_ORDER}) AS labels,
               array_agg(a.title
                         ORDER BY {_ALT_TITLE_ORDER}) AS titles
        FROM series_alternate_titles a
        WHERE a.series_id IN (SELECT id FROM visible)
        GROUP BY a.series_id
    ) sat ON sat.id = s.id"""
    ),
    "external_ratings": _Join(
        f"""LEFT JOIN (
        SELECT e.series_id AS id,
               array_agg(ROW(e.source_name, e.rating::float8, e.vote_count)
                         ORDER BY {_RATING_ORDER}) AS items,
               array_agg(e.source_name ORDER BY {_RATING_ORDER}) AS sources,
               array_agg(e.rating::float8 ORDER BY {_RATING_ORDER}) AS ratings,
               array_agg(e.vote_count ORDER BY {_RATING_ORDER}) AS votes
        FROM series_external_ratings e
        WHERE e.series_id IN (SELECT id FROM visible)
        GROUP BY e.series_id
    ) ser ON ser.id = s.id"""
    ),
}

_SERIES_COLUMNS: dict[str, _Column] = {
    "series_name": _Column("s.name"),
    "series_id": _Column("s.id::text", kind="id"),
    "library_id": _Column("s.library_id::text", kind="id"),
    "library_name": _Column("NULLIF(l.name, '')", ("library",)),
    "path": _Column("NULLIF(s.path, '')"),
    "created_at": _Column("s.created_at", kind="time"),
    "updated_at": _Column("s.updated_at", kind="time"),
    "title": _Column("NULLIF(m.title, '')"),
    "summary": _Column("NULLIF(m.summary, '')"),
    "publisher": _Column("NULLIF(m.publisher, '')"),
    "status": _Column("NULLIF(m.status, '')"),
    "year": _Column("m.year", kind="int"),
    "language": _Column("NULLIF(m.language, '')"),
    "authors": _Column("m.authors_json", convert=_authors, kind="authors"),
    "genres": _Column("sg.names", ("genres",), kind="names"),
    "tags": _Column("stg.names", ("tags",), kind="names"),
    "alternate_titles": _Column(
        "sat.items",
        ("alternate_titles",),
        _alternate_titles,
        kind="alternate_titles",
        raw=("sat.labels", "sat.titles"),
    ),
    "collections": _Column("sc.names", ("collections",), kind="names"),
    "expected_book_count": _Column("m.total_volume_count", kind="int"),
    "expected_chapter_count": _Column(
        "m.total_chapter_count::text::float8", convert=exported_number, kind="float"
    ),
    "actual_book_count": _Column("COALESCE(bc.actual, 0)", ("counts",), kind="int"),
    "unread_book_count": _Column("COALESCE(bc.unread, 0)", ("counts",), kind="int"),
    "progress": _Column(
        "CASE WHEN COALESCE(bc.actual, 0) = 0 THEN 0"
        " ELSE round((bc.actual - bc.unread) * 100.0 / bc.actual, 2) END::float8",
        ("counts",),
        exported_number,
        kind="float",
    ),
    "user_rating": _Column("ur.rating", ("rating",), kind="int"),
    "user_notes": _Column("NULLIF(ur.notes, '')", ("rating",)),
    "community_avg_rating": _Column("cr.average", ("community",), exported_number, kind="float"),
    "external_ratings": _Column(
        "ser.items",
        ("external_ratings",),
        _external_ratings,
        kind="external_ratings",
        raw=("ser.sources", "ser.ratings", "ser.votes"),
    ),
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
    "book_id": _Column("b.id::text", kind="id"),
    "series_id": _Column("b.series_id::text", kind="id"),
    "library_id": _Column("b.library_id::text", kind="id"),
    "series_name": _Column("s.name", ("series",)),
    "library_name": _Column("NULLIF(l.name, '')", ("library",)),
    "file_name": _Column("NULLIF(b.file_name, '')"),
    "file_path": _Column("NULLIF(b.path, '')"),
    "file_size": _Column("b.file_size", kind="int"),
    "book_format": _Column("NULLIF(b.format, '')"),
    "page_count": _Column("b.page_count", kind="int"),
    "number": _Column("bm.number::float8", convert=exported_number, kind="float"),
    "created_at": _Column("b.created_at", kind="time"),
    "updated_at": _Column("b.updated_at", kind="time"),
    "title": _Column("NULLIF(bm.title, '')"),
    "summary": _Column("NULLIF(bm.summary, '')"),
    "publisher": _Column("NULLIF(bm.publisher, '')"),
    "year": _Column("bm.year", kind="int"),
    "language": _Column("NULLIF(bm.language_iso, '')"),
    "authors": _Column("bm.authors_json", convert=_authors, kind="authors"),
    "genres": _Column("bg.names", ("genres",), kind="names"),
    "tags": _Column("btg.names", ("tags",), kind="names"),
    "read_lists": _Column("brl.names", ("read_lists",), kind="names"),
    "progress": _Column(_BOOK_PROGRESS, ("progress",), exported_number, kind="float"),
    "current_page": _Column("rp.current_page", ("progress",), kind="int"),
    "completed": _Column("rp.completed", ("progress",), kind="bool"),
    "completed_at": _Column("rp.completed_at", ("progress",), kind="time"),
}

# Books follow their series' position, then number, then name, then id (SPEC §5).
_BOOK_ORDER = book_order("v.pos", "bm.number", _BOOK_NAME, "b.id")


# ---------------------------------------------------------------------------------------------
# Query building


@dataclass(frozen=True, slots=True)
class Query:
    sql: str
    keys: tuple[str, ...]
    converters: tuple[Converter | None, ...]


def _with(*ctes: str) -> str:
    return "WITH " + ",\n".join(ctes) + "\n"


@dataclass(frozen=True, slots=True)
class _Section:
    """Everything that makes one section's query: catalog, columns, joins, FROM and ORDER BY."""

    catalog: tuple[Field, ...]
    columns: dict[str, _Column]
    joins: dict[str, _Join]
    body: tuple[str, ...]
    tail: tuple[str, ...]
    sample_body: tuple[str, ...]
    """The FROM of a sample (``_sample_ctes``): no filter left to apply, no order."""


_SERIES = _Section(
    SERIES_FIELDS,
    _SERIES_COLUMNS,
    _SERIES_JOINS,
    (
        "FROM visible v",
        "JOIN series s ON s.id = v.id",
        "LEFT JOIN series_metadata m ON m.series_id = s.id",
    ),
    ("ORDER BY v.pos",),
    (
        "FROM visible v",
        "JOIN series s ON s.id = v.id",
        "LEFT JOIN series_metadata m ON m.series_id = s.id",
    ),
)
_BOOKS = _Section(
    BOOK_FIELDS,
    _BOOK_COLUMNS,
    _BOOK_JOINS,
    (
        "FROM books b",
        "JOIN visible v ON v.id = b.series_id",
        "LEFT JOIN book_metadata bm ON bm.book_id = b.id",
    ),
    ("WHERE NOT b.deleted", "ORDER BY " + _BOOK_ORDER),
    (
        "FROM sampled_books sb",
        "JOIN books b ON b.id = sb.id",
        "JOIN visible v ON v.id = b.series_id",
        "LEFT JOIN book_metadata bm ON bm.book_id = b.id",
    ),
)
_SECTIONS = {"series": _SERIES, "books": _BOOKS}


def _keys(section: _Section, fields: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The anchor + requested fields in catalog order; ValueError for an unknown field."""
    wanted = set(fields)
    unknown = wanted - {f.key for f in section.catalog}
    if unknown:
        raise ValueError(f"Unknown field: {sorted(unknown)[0]}")
    return tuple(f.key for f in section.catalog if f.is_anchor or f.key in wanted)


def _select(
    section: _Section,
    keys: tuple[str, ...],
    select: list[str],
    sample: tuple[int, int] | None = None,
) -> str:
    """``SELECT select`` with only the joins ``keys`` need, the visibility filter and order;
    with ``sample`` (series, books), over that sample of the scope and in no order."""
    needed = {name for key in keys for name in section.columns[key].joins}
    # Registry order, so the same field set always gives the same SQL text.
    chosen = [join for name, join in section.joins.items() if name in needed]
    base, extra = (
        (_BASE_CTES, _EXTRA_CTES) if sample is None else (_sample_ctes(*sample), _SAMPLE_EXTRA_CTES)
    )
    ctes = [*base, *dict.fromkeys(extra[c] for join in chosen for c in join.ctes)]
    return "\n".join(
        (
            _with(*ctes) + "SELECT " + ",\n    ".join(select),
            *(section.body if sample is None else section.sample_body),
            *(join.sql for join in chosen),
            *(section.tail if sample is None else ()),
        )
    )


def _query(section: _Section, fields: list[str]) -> Query:
    """SELECT the anchor + requested fields (catalog order) with only the joins they need."""
    keys = _keys(section, fields)
    columns = section.columns
    sql = _select(section, keys, [f'{columns[key].sql} AS "{key}"' for key in keys])
    return Query(sql, keys, tuple(columns[key].convert for key in keys))


def series_query(fields: list[str]) -> Query:
    """The series SELECT for ``fields`` ($1 = owner, $2 = libraries); exposed for EXPLAIN."""
    return _query(_SERIES, fields)


def book_query(fields: list[str]) -> Query:
    """The book SELECT for ``fields`` ($1 = owner, $2 = libraries); exposed for EXPLAIN."""
    return _query(_BOOKS, fields)


@dataclass(frozen=True, slots=True)
class RawColumn:
    """One field of a :func:`raw_query`: its kind and the output columns holding it."""

    key: str
    kind: Kind
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RawQuery:
    """The section's query for the database renderer ($1 = owner, $2 = libraries).

    The same CTEs, joins, visibility filter and ``ORDER BY`` as the reference query, and the
    same values, unconverted: ``c0``, ``c1``, ... hold the fields in catalog order (a field of
    kind ``alternate_titles`` or ``external_ratings`` takes several, see :data:`Kind`).
    """

    sql: str
    columns: tuple[RawColumn, ...]


def raw_query(
    section: Literal["series", "books"],
    fields: list[str],
    *,
    sample: tuple[int, int] | None = None,
) -> RawQuery:
    """The typed rows of a section, for a renderer that wraps them (``render.copy.plan``).

    With ``sample=(series, books)``: the same columns over at most that many visible series
    (and books of theirs), in no order — what an estimate measures (``shared.estimate``).
    """
    spec = _SECTIONS[section]
    keys = _keys(spec, fields)
    select: list[str] = []
    columns: list[RawColumn] = []
    for key in keys:
        column = spec.columns[key]
        names: list[str] = []
        for expr in column.raw or (column.sql,):
            names.append(f"c{len(select)}")
            select.append(f"{expr} AS {names[-1]}")
        columns.append(RawColumn(key, column.kind, tuple(names)))
    return RawQuery(_select(spec, keys, select, sample), tuple(columns))


def field_kinds(section: Literal["series", "books"]) -> dict[str, Kind]:
    """Every field of a section by key, with the :data:`Kind` of value it holds (for the typed
    formats: a spreadsheet cell type, a Parquet column type)."""
    return {key: column.kind for key, column in _SECTIONS[section].columns.items()}


def args(scope: Scope) -> tuple[UUID, list[UUID]]:
    """The query arguments of a scope: ``$1`` the owner, ``$2`` the libraries."""
    return scope.user_id, list(scope.library_ids)


# ---------------------------------------------------------------------------------------------
# Public API


async def readable_library_ids(
    conn: asyncpg.Connection, user_id: UUID, requested: list[UUID]
) -> list[UUID]:
    """The requested libraries that exist and that the user may read, in request order.

    A user without library access rows may read every library (SPEC §2).
    """
    rows = await conn.fetch(_with(_READABLE) + "SELECT id FROM readable", user_id, requested)
    readable = {row["id"] for row in rows}
    return [lid for lid in dict.fromkeys(requested) if lid in readable]


async def count_series(conn: asyncpg.Connection, scope: Scope) -> int:
    """Visible series in scope (the number of rows ``series_batches`` yields)."""
    sql = _with(*_BASE_CTES) + "SELECT count(*) FROM visible"
    return int(await conn.fetchval(sql, *args(scope)))


COUNT_BOTH = _with(*_BASE_CTES) + (
    "SELECT (SELECT count(*) FROM visible) AS series,"
    " (SELECT count(*) FROM books b JOIN visible v ON v.id = b.series_id WHERE NOT b.deleted)"
    " AS books"
)
"""Both counts in one statement ($1 owner, $2 libraries): what :func:`count_series` and
:func:`count_books` answer, from one snapshot."""


async def count_books(conn: asyncpg.Connection, scope: Scope) -> int:
    """Non-deleted books of visible series (the number of rows ``book_batches`` yields)."""
    sql = _with(*_BASE_CTES) + (
        "SELECT count(*) FROM books b JOIN visible v ON v.id = b.series_id WHERE NOT b.deleted"
    )
    return int(await conn.fetchval(sql, *args(scope)))


COUNT_AT_MOST = _with(
    GRANTS,
    _READABLE,
    f"""visible AS MATERIALIZED (
    SELECT vs.id FROM series vs
    WHERE {_IN_SCOPE}
    LIMIT $3
)""",
) + (
    "SELECT (SELECT count(*) FROM visible) AS series,"
    " (SELECT count(*) FROM (SELECT 1 FROM books b JOIN visible v ON v.id = b.series_id"
    " WHERE NOT b.deleted LIMIT $3) x) AS books"
)
"""Both counts, each stopped at ``$3`` ($1 owner, $2 libraries, $3 the bound): no order, no
full scan, so its cost is bounded by the bound whatever the catalog's size. The books are those
of the first ``$3`` visible series only: exact while the series are under the bound."""


async def count_rows_at_most(
    conn: asyncpg.Connection, scope: Scope, export_type: str, bound: int
) -> int:
    """The rows an export of ``export_type`` would have, or ``bound`` when it has at least
    ``bound`` (series for ``series``, books for ``books``, both summed for ``both``).

    The same visibility as the export's own count (:data:`COUNT_BOTH`), stopped early. A scope
    with ``bound`` visible series or more answers ``bound`` for every type, even a books export
    of series that have few books: the one case where it overstates, never understates.
    """
    if bound <= 0:
        return 0
    record = await conn.fetchrow(COUNT_AT_MOST, *args(scope), bound)
    series, books = int(record["series"]), int(record["books"])
    if series >= bound:
        return bound
    rows = {"series": series, "books": books}.get(export_type, series + books)
    return min(rows, bound)
