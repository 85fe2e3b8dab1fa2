"""Catalog reads on the hand-built fixture: values, visibility, order, counts, snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from services.worker import catalog
from services.worker.catalog import Scope
from shared.codex_tables import insert_rows
from shared.fields import ALL_BOOKS, ALL_SERIES, BOOK_FIELDS, SERIES_FIELDS
from tests.conftest import Servers, seeded_database
from tests.fixture_catalog import (
    BATMAN_SUMMARY,
    BOOKS,
    FIXTURE,
    HOSTILE_NAME,
    HYPERLINK_NAME,
    at,
    build,
)

pytestmark = pytest.mark.integration

F = FIXTURE
COMICS, MANGA, PRIVATE = "Comics", "Manga & Más", "Private"


@pytest.fixture(scope="module")
async def catalog_url(real_servers: Servers) -> str:
    """One database with the fixture for the whole module (creating one costs ~0.5 s)."""
    url, _ = await seeded_database(real_servers, build)
    return url


@pytest.fixture
async def conn(catalog_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is rolled back: tests may change the catalog."""
    connection = await asyncpg.connect(catalog_url)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


def scope(user: str = "alice", *libraries: str) -> Scope:
    return Scope(F.users[user].id, F.library_ids(*libraries))


async def series_rows(
    conn: asyncpg.Connection,
    sc: Scope,
    fields: list[str] | tuple[str, ...] = ALL_SERIES,
    size: int = 100,
) -> list[dict[str, Any]]:
    batches = catalog.series_batches(conn, sc, list(fields), size)
    return [row async for batch in batches for row in batch]


async def book_rows(
    conn: asyncpg.Connection,
    sc: Scope,
    fields: list[str] | tuple[str, ...] = ALL_BOOKS,
    size: int = 100,
) -> list[dict[str, Any]]:
    batches = catalog.book_batches(conn, sc, list(fields), size)
    return [row async for batch in batches for row in batch]


def series_keys(rows: list[dict[str, Any]]) -> list[str]:
    by_id = {str(v): k for k, v in F.series.items()}
    return [by_id[r["series_id"]] for r in rows]


def book_keys(rows: list[dict[str, Any]]) -> list[str]:
    by_id = {str(v): k for k, v in F.books.items()}
    return [by_id[r["book_id"]] for r in rows]


# --- Expected values (alice, every field) ------------------------------------------------------


def s_ids(key: str, library: str) -> dict[str, str]:
    return {"series_id": str(F.series[key]), "library_id": str(F.libraries[library])}


EXPECTED_SERIES: list[dict[str, Any]] = [
    {
        "series_name": "Akira",
        **s_ids("akira", "manga"),
        "library_name": MANGA,
        "path": "/manga/Akira",
        "created_at": at(15, 6),
        "updated_at": at(15, 6),
        "title": "Akira",
        "summary": "Neo-Tokyo, 2019.",
        "status": "ended",
        "year": 1982,
        "language": "ja",
        "genres": ["Cyberpunk"],
        "tags": ["tokyo"],
        "actual_book_count": 1,
        "unread_book_count": 1,
        "progress": 0,
        "user_rating": 100,
        "community_avg_rating": 100,
    },
    {
        "series_name": "Batman: Year One",
        **s_ids("batman", "comics"),
        "library_name": COMICS,
        "path": "/comics/Batman Year One",
        "created_at": at(10, 9),
        "updated_at": datetime(2024, 2, 1, 12, 30, 45, 123456, tzinfo=UTC),
        "title": "Batman: Year One",
        "summary": BATMAN_SUMMARY,
        "publisher": "DC Comics, Inc.",
        "status": "ended",
        "year": 1987,
        "language": "en",
        # Stored order; entries without a name dropped; blank role omitted; names trimmed.
        "authors": [
            {"name": "Frank Miller", "role": "writer"},
            {"name": "David Mazzucchelli", "role": "penciller"},
            {"name": "Richmond Lewis"},
            {"name": "Todd Klein"},
        ],
        "genres": ["crime", "Superhero"],
        "tags": ["classic", "Noir"],
        "alternate_titles": [
            {"label": "en", "title": "Batman - Year One"},
            {"label": "English", "title": "Year One"},
            {"label": "ja", "title": "バットマン: イヤーワン"},
        ],
        "collections": ["best of", "DC Classics"],  # the smart "Ended series" is not exported
        "expected_book_count": 4,
        "expected_chapter_count": 4,  # 4.0 in the database
        "actual_book_count": 5,  # the deleted chapter three does not count
        "unread_book_count": 4,
        "progress": 20,
        "user_rating": 90,
        "user_notes": 'Loved it, "really"\nSecond line',
        "community_avg_rating": 80.33,  # (90 + 71 + 80) / 3
        "external_ratings": [
            {"source": "AniList", "rating": 90},
            {"source": "ComicVine", "rating": 88.5, "votes": 1200},
        ],
    },
    {
        "series_name": "Naruto",
        **s_ids("naruto", "manga"),
        "library_name": MANGA,
        "path": "/manga/Naruto",
        "created_at": at(13, 7),
        "updated_at": at(14, 7),
        "title": "Naruto",
        "summary": "Ninja story.",
        "publisher": "Shueisha",
        "status": "ongoing",
        "year": 1999,
        "language": "ja",
        "genres": ["Action", "Shōnen"],
        "tags": ["ninja"],
        "collections": ["best of"],
        "expected_book_count": 72,
        "expected_chapter_count": 700.5,
        "actual_book_count": 3,
        "unread_book_count": 2,
        "progress": 33.33,
        "community_avg_rating": 60,  # bob's rating only; alice has none of her own
        "external_ratings": [{"source": "MyAnimeList", "rating": 80, "votes": 5000}],
    },
    {
        "series_name": "Secret Diary",
        **s_ids("secret", "private"),
        "library_name": PRIVATE,
        "path": "/private/Secret Diary",
        "created_at": at(16, 5),
        "updated_at": at(16, 5),
        "title": "Secret Diary",
        "actual_book_count": 0,
        "unread_book_count": 0,
        "progress": 0,
    },
    {
        "series_name": HOSTILE_NAME,
        **s_ids("hostile", "comics"),
        "library_name": COMICS,
        "path": "/comics/hostile",
        "created_at": at(12, 8),
        "updated_at": at(12, 8),
        "title": HOSTILE_NAME,
        "summary": "-2 degrees\n=SUM(A1:A2)\n> not a quote",
        "publisher": "@Publisher",
        "status": "hiatus",
        "actual_book_count": 1,
        "unread_book_count": 1,
        "progress": 0,
    },
    {
        "series_name": "Zeta",
        **s_ids("zeta_comics", "comics"),
        "library_name": COMICS,
        "path": "/comics/Zeta",
        "created_at": at(17, 4),
        "updated_at": at(17, 4),
        "title": "Zeta",
        "actual_book_count": 1,
        "unread_book_count": 1,
        "progress": 0,
    },
    {
        "series_name": "Zeta",
        **s_ids("zeta_manga", "manga"),
        "library_name": MANGA,
        "created_at": at(18, 3),
        "updated_at": at(18, 3),
        "title": "Zeta",
        "actual_book_count": 4,
        "unread_book_count": 4,
        "progress": 0,
    },
    {
        "series_name": HYPERLINK_NAME,
        **s_ids("hyperlink", "comics"),
        "library_name": COMICS,
        "path": "/comics/hyperlink",
        "created_at": at(11, 0),
        "updated_at": at(11, 0),
        "actual_book_count": 1,
        "unread_book_count": 1,
        "progress": 0,
    },
]


def b_ids(key: str, series: str, library: str) -> dict[str, str]:
    return {
        "book_id": str(F.books[key]),
        "series_id": str(F.series[series]),
        "library_id": str(F.libraries[library]),
    }


def stamps(n: int) -> dict[str, datetime]:
    return {"created_at": at(20, 10, n), "updated_at": at(21, 10, n)}


EXPECTED_BOOKS: list[dict[str, Any]] = [
    {
        "book_name": "Akira 1",
        **b_ids("akira_1", "akira", "manga"),
        "series_name": "Akira",
        "library_name": MANGA,
        "file_name": "Akira 01.cbz",
        "file_path": "/manga/Akira/Akira 01.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 360,
        "number": 1,
        **stamps(13),
        "title": "Akira 1",
        "authors": [
            {"name": "Katsuhiro Otomo", "role": "writer"},
            {"name": "Katsuhiro Otomo", "role": "artist"},
        ],
        "genres": ["Action", "Cyberpunk"],
        "read_lists": ["Summer Reading"],
        "progress": 0,
    },
    {
        "book_name": "Chapter One",
        **b_ids("batman_1", "batman", "comics"),
        "series_name": "Batman: Year One",
        "library_name": COMICS,
        "file_name": "Batman Year One 001.cbz",
        "file_path": "/comics/Batman Year One/Batman Year One 001.cbz",
        "file_size": 52_428_800,
        "book_format": "cbz",
        "page_count": 48,
        "number": 1,
        **stamps(1),
        "title": "Chapter One",
        "summary": "Gordon arrives.",
        "publisher": "DC Comics",
        "year": 1987,
        "language": "en",
        "authors": [{"name": "Frank Miller", "role": "writer"}],
        "genres": ["crime"],
        "tags": ["classic"],
        "read_lists": ["Batman Order", "Summer Reading"],
        "progress": 100,
        "current_page": 48,
        "completed": True,
        "completed_at": at(65, 20, 15),
    },
    {
        "book_name": "Chapter Two",
        **b_ids("batman_2", "batman", "comics"),
        "series_name": "Batman: Year One",
        "library_name": COMICS,
        "file_name": "Batman Year One 002.cbz",
        "file_path": "/comics/Batman Year One/Batman Year One 002.cbz",
        "file_size": 48_000_000,
        "book_format": "cbz",
        "page_count": 48,
        "number": 2,
        **stamps(2),
        "title": "Chapter Two",
        "read_lists": ["Batman Order"],
        "progress": 50,  # progress_percentage only
        "current_page": 0,
        "completed": False,
    },
    {
        "book_name": "Chapter Two and a Half",
        **b_ids("batman_2_5", "batman", "comics"),
        "series_name": "Batman: Year One",
        "library_name": COMICS,
        "file_name": "Batman Year One 002.5.cbz",
        "file_path": "/comics/Batman Year One/Batman Year One 002.5.cbz",
        "file_size": 1_500,
        "book_format": "cbz",
        "page_count": 48,
        "number": 2.5,
        **stamps(3),
        "title": "Chapter Two and a Half",
        "read_lists": ["Batman Order"],
        "progress": 25,  # page 12 of 48
        "current_page": 12,
        "completed": False,
    },
    {
        "book_name": "Chapter Ten",
        **b_ids("batman_10", "batman", "comics"),
        "series_name": "Batman: Year One",
        "library_name": COMICS,
        "file_name": "Batman Year One 010.cbz",
        "file_path": "/comics/Batman Year One/Batman Year One 010.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 32,
        "number": 10,
        **stamps(4),
        "title": "Chapter Ten",
        "read_lists": ["Batman Order"],
        "progress": 0,  # no read_progress row: no current_page / completed either
    },
    {
        "book_name": "Batman Annual.cbr",  # no metadata: the file name
        **b_ids("batman_annual", "batman", "comics"),
        "series_name": "Batman: Year One",
        "library_name": COMICS,
        "file_name": "Batman Annual.cbr",
        "file_path": "/comics/Batman Year One/Batman Annual.cbr",
        "file_size": 2_000_000_000,
        "book_format": "cbr",
        "page_count": 0,
        **stamps(6),
        "progress": 0,  # only bob completed it
    },
    {
        "book_name": "ナルト 第1巻",
        **b_ids("naruto_1", "naruto", "manga"),
        "series_name": "Naruto",
        "library_name": MANGA,
        "file_name": "Naruto v01.cbz",
        "file_path": "/manga/Naruto/Naruto v01.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 200,
        "number": 1,
        **stamps(9),
        "title": "ナルト 第1巻",
        "year": 1999,
        "language": "ja",
        "genres": ["Shōnen"],
        "read_lists": ["Summer Reading"],
        "progress": 100,
        "current_page": 200,
        "completed": True,
        "completed_at": datetime(2024, 4, 1, 8, 0, 0, 500000, tzinfo=UTC),
    },
    {
        "book_name": "@x vol 2",
        **b_ids("naruto_2", "naruto", "manga"),
        "series_name": "Naruto",
        "library_name": MANGA,
        "file_name": "Naruto v02.cbz",
        "file_path": "/manga/Naruto/Naruto v02.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 200,
        "number": 2,
        **stamps(10),
        "title": "@x vol 2",
        "progress": 0,
    },
    {
        "book_name": '"Quoted", title',
        **b_ids("naruto_3", "naruto", "manga"),
        "series_name": "Naruto",
        "library_name": MANGA,
        "file_name": "Naruto v03.cbz",
        "file_path": "/manga/Naruto/Naruto v03.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 200,
        "number": 3,
        **stamps(11),
        "title": '"Quoted", title',
        "progress": 33.33,  # progress_percentage 0.333333 wins over page 66
        "current_page": 66,
        "completed": False,
    },
    {
        "book_name": "-2 <b>bold</b>\nsecond line",
        **b_ids("hostile_1", "hostile", "comics"),
        "series_name": HOSTILE_NAME,
        "library_name": COMICS,
        "file_name": "hostile.cbz",
        "file_path": "/comics/hostile/hostile.cbz",
        "file_size": 1_000_000,
        "page_count": 48,
        "number": 1,
        **stamps(8),
        "title": "-2 <b>bold</b>\nsecond line",
        "summary": "Line one\r\n# not a heading\n\n  - not a bullet",
        "authors": [{"name": 'Ann, "The" Writer', "role": "writer"}],
        "tags": ["Noir"],
        "progress": 0,
    },
    {
        "book_name": "Zeta 1",
        **b_ids("zeta_1", "zeta_comics", "comics"),
        "series_name": "Zeta",
        "library_name": COMICS,
        "file_name": "Zeta 01.cbz",
        "file_path": "/comics/Zeta/Zeta 01.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 48,
        "number": 1,
        **stamps(14),
        "title": "Zeta 1",
        "progress": 0,
    },
    {
        "book_name": "Zeta 1",
        **b_ids("zeta_2", "zeta_manga", "manga"),
        "series_name": "Zeta",
        "library_name": MANGA,
        "file_name": "Zeta 01.cbz",
        "file_path": "/manga/Zeta/Zeta 01.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 48,
        "number": 1,  # stored as 1.0
        **stamps(15),
        "title": "Zeta 1",
        "progress": 0,
    },
    {
        "book_name": "zeta extra",
        **b_ids("zeta_extra_a", "zeta_manga", "manga"),
        "series_name": "Zeta",
        "library_name": MANGA,
        "file_name": "zeta-a.cbz",
        "file_path": "/manga/Zeta/zeta-a.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 48,
        **stamps(17),
        "title": "zeta extra",
        "progress": 0,
    },
    {
        "book_name": "zeta extra",
        **b_ids("zeta_extra_b", "zeta_manga", "manga"),
        "series_name": "Zeta",
        "library_name": MANGA,
        "file_name": "zeta-b.cbz",
        "file_path": "/manga/Zeta/zeta-b.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 48,
        **stamps(18),
        "title": "zeta extra",
        "progress": 0,
    },
    {
        "book_name": "zeta-extra.cbz",  # empty title: the file name
        **b_ids("zeta_extra_file", "zeta_manga", "manga"),
        "series_name": "Zeta",
        "library_name": MANGA,
        "file_name": "zeta-extra.cbz",
        "file_path": "/manga/Zeta/zeta-extra.cbz",
        "file_size": 1_000_000,
        "book_format": "cbz",
        "page_count": 48,
        **stamps(16),
        "progress": 0,
    },
    {
        "book_name": "+1 Issue.cbz",
        **b_ids("hyperlink_1", "hyperlink", "comics"),
        "series_name": HYPERLINK_NAME,
        "library_name": COMICS,
        "file_name": "+1 Issue.cbz",
        "file_path": "/comics/hyperlink/+1 Issue.cbz",
        "file_size": 1000,
        "book_format": "cbz",
        "page_count": 0,
        **stamps(7),
        "progress": 0,  # page 5 of a book without pages
        "current_page": 5,
        "completed": False,
    },
]


def in_catalog_order(row: dict[str, Any], fields: tuple[Any, ...]) -> bool:
    order = [f.key for f in fields]
    return list(row) == [k for k in order if k in row]


# --- Values ------------------------------------------------------------------------------------


async def test_every_series_field_has_its_expected_value(conn: asyncpg.Connection) -> None:
    rows = await series_rows(conn, scope())
    assert rows == EXPECTED_SERIES
    for row in rows:
        assert in_catalog_order(row, SERIES_FIELDS)


async def test_every_book_field_has_its_expected_value(conn: asyncpg.Connection) -> None:
    rows = await book_rows(conn, scope())
    assert rows == EXPECTED_BOOKS
    for row in rows:
        assert in_catalog_order(row, BOOK_FIELDS)


def _plain_types(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(_plain_types(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_types(v) for k, v in value.items())
    if isinstance(value, datetime):
        return value.utcoffset() is not None and value.utcoffset().total_seconds() == 0
    return type(value) in (str, int, float, bool)


async def test_values_are_plain_types_and_never_none(conn: asyncpg.Connection) -> None:
    rows = await series_rows(conn, scope()) + await book_rows(conn, scope())
    for row in rows:
        assert all(_plain_types(v) for v in row.values()), row


async def test_user_specific_values_are_the_owners(conn: asyncpg.Connection) -> None:
    bob_series = {r["series_name"]: r for r in await series_rows(conn, scope("bob"))}
    naruto = bob_series["Naruto"]
    assert (naruto["user_rating"], naruto["user_notes"]) == (60, "ok")
    assert (naruto["unread_book_count"], naruto["progress"]) == (3, 0)
    assert naruto["community_avg_rating"] == 60

    carol_books = {r["book_id"]: r for r in await book_rows(conn, scope("carol"))}
    batman_1 = carol_books[str(F.books["batman_1"])]
    assert (batman_1["progress"], batman_1["current_page"], batman_1["completed"]) == (
        90,
        10,
        False,
    )
    assert "completed_at" not in batman_1
    carol_series = {r["series_id"]: r for r in await series_rows(conn, scope("carol"))}
    batman = carol_series[str(F.series["batman"])]
    assert (batman["user_rating"], batman["unread_book_count"]) == (80, 5)
    assert "user_notes" not in batman  # an empty note is no data


async def test_only_requested_fields_and_the_anchor(conn: asyncpg.Connection) -> None:
    rows = await series_rows(conn, scope(), [])
    assert rows == [{"series_name": r["series_name"]} for r in EXPECTED_SERIES]
    rows = await book_rows(conn, scope(), ["read_lists", "number"])
    assert rows == [
        {k: r[k] for k in ("book_name", "number", "read_lists") if k in r} for r in EXPECTED_BOOKS
    ]


def test_unrequested_joins_are_skipped() -> None:
    sql = catalog.book_query(["title", "number"]).sql
    for absent in (
        "read_progress",
        "scoped_books",
        "book_genres",
        "read_list_books",
        "JOIN libraries l ",
    ):
        assert absent not in sql
    sql = catalog.series_query(["title"]).sql
    for absent in ("books", "user_series_ratings", "series_genres", "collection_series"):
        assert absent not in sql
    assert "read_progress" in catalog.book_query(["completed"]).sql


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        catalog.series_query(["title", "nope"])
    with pytest.raises(ValueError, match="collections"):
        catalog.book_query(["collections"])  # a series field, not a book field


# --- Order, counts, batches ---------------------------------------------------------------------


async def test_order_is_the_specified_one_with_missing_values_last(
    conn: asyncpg.Connection,
) -> None:
    # akira's lowercase title_sort sorts before "Batman" (case-insensitive, locale-independent);
    # series without title_sort follow, ordered by title; the two "Zeta" tie until their ids;
    # the series with no metadata at all comes last. Books: numbers numerically (2.5 < 10), no
    # number last, equal names by id.
    assert series_keys(await series_rows(conn, scope())) == list(F.visible_series["alice"])
    assert book_keys(await book_rows(conn, scope())) == list(F.visible_books["alice"])


async def test_order_does_not_depend_on_the_database_collation(
    conn: asyncpg.Connection,
) -> None:
    sql = catalog.series_query(["title"]).sql + catalog.book_query(["title"]).sql
    assert 'COLLATE "C"' in sql
    # A case that a linguistic collation would order differently from code points.
    await conn.execute("UPDATE series_metadata SET title_sort = 'Éclair' WHERE title = 'Naruto'")
    keys = series_keys(await series_rows(conn, scope(), ["series_id"]))
    assert keys.index("naruto") > keys.index("secret")  # É (U+00C9) after every ASCII letter


@pytest.mark.parametrize("user", ["alice", "bob", "carol"])
async def test_counts_equal_the_rows(conn: asyncpg.Connection, user: str) -> None:
    sc = scope(user)
    n_series = await catalog.count_series(conn, sc)
    n_books = await catalog.count_books(conn, sc)
    assert n_series == len(await series_rows(conn, sc, [])) == len(F.visible_series[user])
    assert n_books == len(await book_rows(conn, sc, [])) == len(F.visible_books[user])


async def test_batches_split_the_same_rows(conn: asyncpg.Connection) -> None:
    batches = [b async for b in catalog.book_batches(conn, scope(), ["title"], 5)]
    assert [len(b) for b in batches] == [5, 5, 5, 1]
    assert [r for b in batches for r in b] == await book_rows(conn, scope(), ["title"])
    with pytest.raises(ValueError, match="batch_rows"):
        await anext(catalog.series_batches(conn, scope(), [], 0))


async def test_one_snapshot_for_count_and_rows(pool: asyncpg.Pool) -> None:
    # As the worker does: one REPEATABLE READ, READ ONLY transaction for the count and the rows,
    # while another session deletes a book and adds one.
    async with pool.acquire() as conn:
        await build(conn)
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            count = await catalog.count_books(conn, scope())
            async with pool.acquire() as other:
                await other.execute(
                    "UPDATE books SET deleted = true WHERE id = $1", F.books["akira_1"]
                )
                await insert_rows(
                    other,
                    "books",
                    [
                        {
                            "series_id": F.series["akira"],
                            "library_id": F.libraries["manga"],
                            "path": "/manga/Akira/late.cbz",
                            "file_name": "late.cbz",
                            "file_size": 0,
                            "format": "cbz",
                            "page_count": 0,
                        }
                    ],
                )
            rows = [r async for b in catalog.book_batches(conn, scope(), [], 3) for r in b]
        assert count == len(rows) == 16
        names = [r["book_name"] for r in rows]
        assert "Akira 1" in names
        assert "late.cbz" not in names
        # A new snapshot sees both changes.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            names = [r["book_name"] for r in await book_rows(conn, scope(), [])]
        assert "Akira 1" not in names
        assert "late.cbz" in names


async def test_deleted_books_never_appear_nor_count(conn: asyncpg.Connection) -> None:
    rows = await book_rows(conn, scope(), ["book_id"])
    deleted = {str(F.books[k]) for k in F.deleted_books}
    assert len(deleted) == 2
    assert not deleted & {r["book_id"] for r in rows}
    batman = next(
        r for r in await series_rows(conn, scope()) if r["series_name"] == "Batman: Year One"
    )
    assert batman["actual_book_count"] == 5


# --- Visibility ----------------------------------------------------------------------------------


async def grant(conn: asyncpg.Connection, user: str, tag: str, mode: str) -> None:
    await insert_rows(
        conn,
        "user_sharing_tags",
        [{"user_id": F.users[user].id, "sharing_tag_id": F.sharing_tags[tag], "access_mode": mode}],
    )


async def join_group(conn: asyncpg.Connection, user: str, group: str) -> None:
    await insert_rows(
        conn,
        "user_access_groups",
        [{"user_id": F.users[user].id, "access_group_id": F.access_groups[group]}],
    )


async def visible(conn: asyncpg.Connection, sc: Scope) -> tuple[list[str], list[str]]:
    series = series_keys(await series_rows(conn, sc, ["series_id"]))
    books = await book_rows(conn, sc, ["book_id", "series_id"])
    # A book is visible exactly when its series is visible.
    by_series = {str(F.series[k]) for k in series}
    assert {r["series_id"] for r in books} <= by_series
    return series, book_keys(books)


def _series_of(book_key: str) -> str:
    return next(b.series for b in BOOKS if b.key == book_key)


VISIBILITY_CASES = {
    # no grants: everything in the readable libraries
    "no grants": (
        [],
        [
            "akira",
            "batman",
            "naruto",
            "secret",
            "hostile",
            "zeta_comics",
            "zeta_manga",
            "hyperlink",
        ],
    ),
    # a deny hides tagged series; untagged stay visible
    "deny": (
        [("mature", "deny")],
        ["batman", "naruto", "secret", "zeta_comics", "zeta_manga", "hyperlink"],
    ),
    # an allow makes an allow-list: untagged series disappear
    "allow": ([("all-ages", "allow")], ["akira", "naruto", "secret", "zeta_comics"]),
    # deny beats allow: akira carries both all-ages and mature
    "deny beats allow": (
        [("all-ages", "allow"), ("mature", "deny")],
        ["naruto", "secret", "zeta_comics"],
    ),
    "two allows": (
        [("all-ages", "allow"), ("staff-picks", "allow")],
        ["akira", "naruto", "secret", "zeta_comics"],
    ),
    "allow on a tag no series in scope carries": ([("staff-picks", "allow")], ["secret"]),
}


@pytest.mark.parametrize("case", list(VISIBILITY_CASES))
async def test_sharing_tag_rules(conn: asyncpg.Connection, case: str) -> None:
    grants, expected = VISIBILITY_CASES[case]
    for tag, mode in grants:
        await grant(conn, "alice", tag, mode)
    series, books = await visible(conn, scope())
    assert series == expected
    assert books == [k for k in F.visible_books["alice"] if _series_of(k) in expected]


async def test_group_grants_count_and_deny_wins_across_sources(conn: asyncpg.Connection) -> None:
    # alice's own allow of "mature" against the kids group's deny of it: deny wins.
    await grant(conn, "alice", "mature", "allow")
    await join_group(conn, "alice", "kids")
    series, _ = await visible(conn, scope())
    assert series == ["naruto", "secret", "zeta_comics"]  # all-ages (group allow), not mature


async def test_fixture_users_see_what_the_fixture_says(conn: asyncpg.Connection) -> None:
    for user in ("alice", "bob", "carol"):
        series, books = await visible(conn, scope(user))
        assert series == list(F.visible_series[user])
        assert books == list(F.visible_books[user])


async def test_library_access(conn: asyncpg.Connection) -> None:
    bob = F.users["bob"].id
    unknown = UUID(int=12345)
    requested = [F.libraries["private"], F.libraries["comics"], unknown, F.libraries["comics"]]
    assert await catalog.readable_library_ids(conn, bob, requested) == [F.libraries["comics"]]
    alice = F.users["alice"].id
    assert await catalog.readable_library_ids(conn, alice, requested) == [
        F.libraries["private"],
        F.libraries["comics"],
    ]
    # Access is checked again when the export runs, whatever the scope says.
    series, books = await visible(conn, scope("bob", "private", "manga"))
    assert (series, books) == (["naruto"], ["naruto_1", "naruto_2", "naruto_3"])
    # A scope narrower than what the user may read.
    series, _ = await visible(conn, scope("alice", "private"))
    assert series == ["secret"]
    assert await visible(conn, Scope(F.users["alice"].id, [])) == ([], [])
