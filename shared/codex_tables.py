"""Codex's catalog tables: which ones this product reads, and rows written as Codex writes them.

In production the catalog is Codex's own database and this product only reads it (SPEC §2). The
standalone catalog (``migrate --catalog``) has exactly Codex 2.2.0's shape, where no column has a
generated id or timestamp default: Codex makes every id (a UUID) and every timestamp in Rust, and
fills ``normalized_name``, ``search_title``, ``email``, ``file_hash`` and the rest itself. The
writers of a standalone catalog — the demo seed, ``catalog restore``, the synthetic bench catalog
and the test fixtures — give the values that matter and :func:`complete` fills the others as
Codex would, so every writer stays short and every row is one Codex could have written.

A row is a dict, column → value, written with :func:`insert_rows`: the columns are those of
Codex's schema, and the demo seed, the restore and the fixtures name the ones they give where
they give them, so none of them keeps a list of a table's columns of its own. (The synthetic
catalog is generated in SQL, ``INSERT … SELECT`` over ``generate_series``, and fills every
column there. This product's own tables, such as ``exports.user_library_access``, and a
writer's temporary tables are not Codex's: their writers name their columns themselves.)
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg

# Every table of Codex's catalog schema (../shared/codex/schema.sql), in dependency order.
CODEX_TABLES = (
    "libraries",
    "users",
    "series",
    "books",
    "series_metadata",
    "book_metadata",
    "genres",
    "tags",
    "series_genres",
    "series_tags",
    "book_genres",
    "book_tags",
    "series_alternate_titles",
    "series_external_ratings",
    "user_series_ratings",
    "read_progress",
    "sharing_tags",
    "series_sharing_tags",
    "user_sharing_tags",
    "access_groups",
    "user_access_groups",
    "access_group_sharing_tags",
    "collections",
    "collection_series",
    "read_lists",
    "read_list_books",
    "api_keys",
)

# The tables the worker reads for an export (visibility, rows and their multi-value fields):
# all of them but the accounts, the keys and the names of sharing tags and access groups.
WORKER_TABLES = tuple(
    t for t in CODEX_TABLES if t not in ("users", "api_keys", "sharing_tags", "access_groups")
)
# The tables the api reads: library names, users (sign-in, is_active), Codex's API keys, and
# the tables an export reads, which the estimate (SPEC §11) counts and samples with the
# worker's own queries (``shared/catalog_query.py``).
API_TABLES = tuple(dict.fromkeys(("libraries", "users", "api_keys", *WORKER_TABLES)))

# Deterministic ids for rows whose id the writer did not give (Codex uses random v4 ids; a
# name-based one keeps the demo and the fixtures identical from run to run).
_ID_NAMESPACE = uuid.UUID("6f1c1c0e-6a43-4c55-9a57-1f4c3c9d2e10")


def normalized_name(name: str) -> str:
    """``lower(trim(name))``: the ``normalized_name`` of genres, tags, collections and lists."""
    return name.strip().lower()


def _unaccented(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def series_normalized_name(name: str) -> str:
    """A series' ``normalized_name``: accent-stripped, lower-cased, letters and digits only."""
    return "".join(c for c in _unaccented(name).lower() if c.isalnum())


def search_title(title: str | None) -> str:
    """``search_title``: the title accent-stripped and lower-cased (``''`` without a title)."""
    return _unaccented(title).lower() if title else ""


Filler = Callable[[dict[str, Any], datetime], Any]


def _now(_row: dict[str, Any], now: datetime) -> datetime:
    return now


def _created(row: dict[str, Any], now: datetime) -> datetime:
    created: datetime = row.get("created_at") or now
    return created


def _name_key(row: dict[str, Any], _now: datetime) -> str:
    return normalized_name(row["name"])


_STAMPS: dict[str, Filler] = {"created_at": _now, "updated_at": _created}

# What Codex itself fills when it writes a row, for every NOT NULL column without a database
# default that a writer may leave out (``id`` is filled for every table that has one).
_FILLERS: dict[str, dict[str, Filler]] = {
    "libraries": {"path": lambda row, _: "/" + row["name"], **_STAMPS},
    "users": {
        "email": lambda row, _: f"{row['username']}@codex.invalid",
        **_STAMPS,
    },
    "series": {
        "path": lambda row, _: row["name"],
        "normalized_name": lambda row, _: series_normalized_name(row["name"]),
        **_STAMPS,
    },
    "books": {
        "file_hash": lambda _row, _: "",
        "modified_at": _created,
        **_STAMPS,
    },
    "series_metadata": {
        "search_title": lambda row, _: search_title(row.get("title")),
        **_STAMPS,
    },
    "book_metadata": {
        "search_title": lambda row, _: search_title(row.get("title")),
        **_STAMPS,
    },
    "genres": {"normalized_name": _name_key, "created_at": _now},
    "tags": {"normalized_name": _name_key, "created_at": _now},
    "series_alternate_titles": dict(_STAMPS),
    "series_external_ratings": {"fetched_at": _now, **_STAMPS},
    "user_series_ratings": dict(_STAMPS),
    "read_progress": {
        "completed": lambda _row, _: False,
        "started_at": lambda row, now: row.get("updated_at") or now,
        "updated_at": lambda row, now: row.get("started_at") or now,
    },
    "sharing_tags": {"normalized_name": _name_key, **_STAMPS},
    "user_sharing_tags": {"created_at": _now},
    "access_groups": dict(_STAMPS),
    "user_access_groups": {"created_at": _now},
    "access_group_sharing_tags": {"created_at": _now},
    "collections": {"normalized_name": _name_key, **_STAMPS},
    "collection_series": {"created_at": _now},
    "read_lists": {"normalized_name": _name_key, **_STAMPS},
    "read_list_books": {"created_at": _now},
    "api_keys": {"permissions": lambda _row, _: "[]", **_STAMPS},
}
# Pure junction tables: a composite primary key and no id column.
_NO_ID = frozenset(
    {"series_metadata", "series_genres", "series_tags", "book_genres", "book_tags"}
    | {"series_sharing_tags"}
)


def _stable_id(table: str, row: Mapping[str, Any]) -> uuid.UUID:
    identity = json.dumps(
        [table, sorted((k, str(v)) for k, v in row.items() if not k.endswith("_at"))]
    )
    return uuid.uuid5(_ID_NAMESPACE, identity)


def complete(table: str, row: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """``row`` with every NOT NULL column Codex fills itself filled in as Codex would.

    ``now`` stands for the moment of writing (row timestamps); the current time by default.
    Values the row gives are kept as they are.
    """
    if table not in _FILLERS and table not in _NO_ID:
        raise ValueError(f"not a Codex catalog table: {table}")
    at = now or datetime.now(UTC)
    done = dict(row)
    if table not in _NO_ID and done.get("id") is None:
        done["id"] = _stable_id(table, row)
    for column, fill in _FILLERS.get(table, {}).items():
        if done.get(column) is None:
            done[column] = fill(done, at)
    return done


async def insert_rows(
    conn: asyncpg.Connection,
    table: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    now: datetime | None = None,
) -> int:
    """COPY ``rows`` (each completed by :func:`complete`) into ``table``; return how many.

    Rows may name different columns: each set of columns is copied on its own, so a column a row
    leaves out gets its database default, never a NULL.
    """
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        full = complete(table, row, now=now)
        columns = tuple(full)
        groups.setdefault(columns, []).append(tuple(full[c] for c in columns))
    for columns, records in groups.items():
        await conn.copy_records_to_table(table, records=records, columns=columns)
    return sum(len(records) for records in groups.values())
