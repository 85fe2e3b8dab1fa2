"""A small hand-built catalog with known values, for tests that need real catalog data.

``await build(conn)`` inserts it into a freshly migrated database and returns ``FIXTURE``, which
names every id. Everything is fixed (uuids, timestamps, text), so an export of it is byte-for-byte
stable across runs and machines.

What it holds (keys are the names used in ``Fixture``):

Libraries ``comics`` "Comics", ``manga`` "Manga & Más", ``private`` "Private".

Users (all with password ``PASSWORD``):
- ``alice`` (admin): no library rows, no grants — sees everything. Her reading progress and
  ratings are the interesting ones.
- ``bob`` (reader): may read ``comics`` and ``manga`` only; member of access group ``kids``, which
  allows ``all-ages`` and denies ``mature`` — sees ``naruto`` and ``zeta_comics`` only.
- ``carol`` (maintainer): her own grant denies ``mature`` — sees every series but ``hostile`` and
  ``akira``.

Series, in alice's export order (title_sort, then title, then name, then id; missing last):

==============  =========  =========================================  ========================
key             library    what it exercises                          sharing tags
==============  =========  =========================================  ========================
akira           manga      lowercase title_sort sorts before "B"      all-ages, mature
batman          comics     every field; hostile summary; 5 books + 1  —
                           deleted; ratings by all three users
naruto          manga      malformed authors_json; 700.5 chapters     all-ages
secret          private    no books (counts 0, progress 0)            staff-picks, all-ages
hostile         comics     Markdown/CSV-hostile name, no title_sort   mature
zeta_comics     comics     same title and name as zeta_manga → id     all-ages
zeta_manga      manga      empty path; book name ties                 —
hyperlink       comics     ``=HYPERLINK(...)`` name, no metadata row  —
==============  =========  =========================================  ========================

Books (deleted ones are ``batman_3_deleted`` and ``naruto_4_deleted``), in alice's order:
akira_1; batman_1 (completed), batman_2 (progress_percentage only), batman_2_5 (current_page
only), batman_10 (no progress), batman_annual (no metadata, no number); naruto_1 (completed),
naruto_2, naruto_3 (33.33 %); hostile_1; zeta_1; zeta_2, zeta_extra_a, zeta_extra_b (same name,
by id), zeta_extra_file (empty title → file name); hyperlink_1 (current_page on a 0-page book).

``FIXTURE.visible_series`` / ``visible_books`` list, per user, what an export over all three
libraries holds, in export order. ``at(day, hour, ...)`` rebuilds the fixture's timestamps, and
``SERIES`` / ``BOOKS`` hold every inserted value for tests that need one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from shared.codex_tables import insert_rows

PASSWORD = "fixture-password"
# argon2id hash of PASSWORD, computed once so building the fixture costs no hashing time.
PASSWORD_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$d6d2vT1dirqMaXhvuy54mw$"
    "wGiZggy21Ie91GjpusddRoi7Cg9G8Faw9sOSuSsTpN4"
)


def _id(kind: int, n: int) -> UUID:
    """Readable fixed ids: the first group says what it is, the last which one."""
    return UUID(f"{kind:08x}-0000-4000-8000-{n:012x}")


def at(day: int, hour: int = 10, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """A fixed UTC timestamp in January to April 2024 (``day`` counts from 2024-01-01 = 1)."""
    return datetime(2024, 1, 1, hour, minute, second, micro, tzinfo=UTC) + timedelta(days=day - 1)


@dataclass(frozen=True)
class FixtureUser:
    id: UUID
    username: str
    role: str
    password: str = PASSWORD


@dataclass(frozen=True)
class Fixture:
    """The ids of everything ``build`` inserted, by the short keys of the module docstring."""

    libraries: dict[str, UUID]
    library_names: dict[str, str]
    users: dict[str, FixtureUser]
    series: dict[str, UUID]
    books: dict[str, UUID]
    deleted_books: frozenset[str]
    sharing_tags: dict[str, UUID]
    access_groups: dict[str, UUID]
    # Visible series / books per user over all libraries, in export order.
    visible_series: dict[str, tuple[str, ...]] = field(default_factory=dict)
    visible_books: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def library_ids(self, *keys: str) -> list[UUID]:
        """Library ids by key, in the given order; all three when no key is given."""
        return [self.libraries[k] for k in (keys or tuple(self.libraries))]


# --- Libraries, users, grants ------------------------------------------------------------------

LIBRARIES = {
    "comics": (_id(1, 1), "Comics"),
    "manga": (_id(1, 2), "Manga & Más"),
    "private": (_id(1, 3), "Private"),
}
USERS = {
    "alice": FixtureUser(_id(2, 1), "alice", "admin"),
    "bob": FixtureUser(_id(2, 2), "bob", "reader"),
    "carol": FixtureUser(_id(2, 3), "carol", "maintainer"),
}
SHARING_TAGS = {"mature": _id(9, 1), "all-ages": _id(9, 2), "staff-picks": _id(9, 3)}
ACCESS_GROUPS = {"kids": _id(10, 1)}
GROUP_GRANTS = [("kids", "all-ages", "allow"), ("kids", "mature", "deny")]
GROUP_MEMBERS = [("bob", "kids")]
USER_GRANTS = [("carol", "mature", "deny")]
LIBRARY_ACCESS = [("bob", "comics"), ("bob", "manga")]

GENRES = {
    name: _id(5, n)
    for n, name in enumerate(["Superhero", "crime", "Action", "Cyberpunk", "Shōnen"], 1)
}
TAGS = {name: _id(6, n) for n, name in enumerate(["classic", "Noir", "ninja", "tokyo"], 1)}
# name → (id, condition); a non-null condition is a smart collection and is never exported.
COLLECTIONS: dict[str, tuple[UUID, Any]] = {
    "DC Classics": (_id(7, 1), None),
    "best of": (_id(7, 2), None),
    "Ended series": (_id(7, 3), '{"status": "ended"}'),
}
READ_LISTS = {"Batman Order": _id(8, 1), "Summer Reading": _id(8, 2), "Empty list": _id(8, 3)}

# --- Series ------------------------------------------------------------------------------------

BATMAN_SUMMARY = (
    "Bruce Wayne returns to Gotham.\n## Evil\n- x\n---\n<script>alert(1)</script>\n"
    '1. not a list, "quoted"'
)
HOSTILE_NAME = "# Title *bold* [x](y)"
HYPERLINK_NAME = '=HYPERLINK("http://evil.example","click")'


@dataclass(frozen=True)
class _Series:
    key: str
    n: int
    library: str
    name: str
    path: str
    created: datetime
    updated: datetime
    # series_metadata row, or None for a series without one (Codex writes both rows of a new
    # series, but an export can run between the two writes of a scan).
    meta: dict[str, Any] | None = None
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    sharing: tuple[str, ...] = ()
    collections: tuple[str, ...] = ()
    alternate_titles: tuple[tuple[str, str], ...] = ()
    external: tuple[tuple[str, float, int | None], ...] = ()
    # user → (rating, notes)
    ratings: dict[str, tuple[int, str | None]] = field(default_factory=dict)


SERIES = [
    _Series(
        "batman",
        1,
        "comics",
        "Batman: Year One",
        "/comics/Batman Year One",
        at(10, 9),
        at(32, 12, 30, 45, 123456),
        meta={
            "title": "Batman: Year One",
            "title_sort": "Batman Year One",
            "summary": BATMAN_SUMMARY,
            "publisher": "DC Comics, Inc.",
            "status": "ended",
            "language": "en",
            "year": 1987,
            "total_volume_count": 4,
            "total_chapter_count": 4.0,
            "authors_json": (
                '[{"name": "Frank Miller", "role": "writer", "sort_name": "Miller, Frank"},'
                ' {"name": "David Mazzucchelli", "role": "penciller"},'
                ' {"role": "colorist"}, "just a string", {"name": "Richmond Lewis"},'
                ' {"name": "", "role": "letterer"}, {"name": " Todd Klein ", "role": ""}]'
            ),
        },
        genres=("Superhero", "crime"),
        tags=("Noir", "classic"),
        collections=("DC Classics", "best of", "Ended series"),
        alternate_titles=(
            ("ja", "バットマン: イヤーワン"),
            ("English", "Year One"),
            ("en", "Batman - Year One"),
        ),
        external=(("ComicVine", 88.5, 1200), ("AniList", 90, None)),
        ratings={
            "alice": (90, 'Loved it, "really"\nSecond line'),
            "bob": (71, None),
            "carol": (80, ""),
        },
    ),
    _Series(
        "hyperlink",
        2,
        "comics",
        HYPERLINK_NAME,
        "/comics/hyperlink",
        at(11, 0),
        at(11, 0),
    ),
    _Series(
        "hostile",
        3,
        "comics",
        HOSTILE_NAME,
        "/comics/hostile",
        at(12, 8),
        at(12, 8),
        meta={
            "title": HOSTILE_NAME,
            "summary": "-2 degrees\n=SUM(A1:A2)\n> not a quote",
            "publisher": "@Publisher",
            "status": "hiatus",
            "authors_json": "[]",
        },
        sharing=("mature",),
    ),
    _Series(
        "naruto",
        4,
        "manga",
        "Naruto",
        "/manga/Naruto",
        at(13, 7),
        at(14, 7),
        meta={
            "title": "Naruto",
            "title_sort": "Naruto",
            "summary": "Ninja story.",
            "publisher": "Shueisha",
            "status": "ongoing",
            "language": "ja",
            "year": 1999,
            "total_volume_count": 72,
            "total_chapter_count": 700.5,
            "authors_json": "not json",
        },
        genres=("Shōnen", "Action"),
        tags=("ninja",),
        sharing=("all-ages",),
        collections=("best of",),
        external=(("MyAnimeList", 80, 5000),),
        ratings={"bob": (60, "ok")},
    ),
    _Series(
        "akira",
        5,
        "manga",
        "Akira",
        "/manga/Akira",
        at(15, 6),
        at(15, 6),
        meta={
            "title": "Akira",
            "title_sort": "akira",
            "summary": "Neo-Tokyo, 2019.",
            "status": "ended",
            "language": "ja",
            "year": 1982,
        },
        genres=("Cyberpunk",),
        tags=("tokyo",),
        sharing=("all-ages", "mature"),
        ratings={"alice": (100, None)},
    ),
    _Series(
        "secret",
        6,
        "private",
        "Secret Diary",
        "/private/Secret Diary",
        at(16, 5),
        at(16, 5),
        meta={"title": "Secret Diary", "title_sort": "Secret Diary"},
        sharing=("staff-picks", "all-ages"),
    ),
    _Series(
        "zeta_comics",
        7,
        "comics",
        "Zeta",
        "/comics/Zeta",
        at(17, 4),
        at(17, 4),
        meta={"title": "Zeta"},
        sharing=("all-ages",),
    ),
    _Series(
        "zeta_manga",
        8,
        "manga",
        "Zeta",
        "",
        at(18, 3),
        at(18, 3),
        meta={"title": "Zeta", "title_sort": ""},
    ),
]

# --- Books -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Book:
    key: str
    n: int
    series: str
    file_name: str
    file_size: int = 1_000_000
    format: str = "cbz"
    page_count: int = 48
    deleted: bool = False
    # book_metadata row, or None for a book without one.
    meta: dict[str, Any] | None = None
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    read_lists: tuple[str, ...] = ()
    # user → (current_page, progress_percentage, completed, completed_at)
    progress: dict[str, tuple[int, float | None, bool, datetime | None]] = field(
        default_factory=dict
    )


BOOKS = [
    _Book(
        "batman_1",
        1,
        "batman",
        "Batman Year One 001.cbz",
        file_size=52_428_800,
        meta={
            "title": "Chapter One",
            "number": "1",
            "summary": "Gordon arrives.",
            "publisher": "DC Comics",
            "language_iso": "en",
            "year": 1987,
            "authors_json": '[{"name": "Frank Miller", "role": "writer"}]',
        },
        genres=("crime",),
        tags=("classic",),
        read_lists=("Summer Reading", "Batman Order"),
        progress={
            "alice": (48, None, True, at(65, 20, 15)),
            "carol": (10, 0.9, False, None),
        },
    ),
    _Book(
        "batman_2",
        2,
        "batman",
        "Batman Year One 002.cbz",
        file_size=48_000_000,
        meta={"title": "Chapter Two", "number": "2"},
        read_lists=("Batman Order",),
        progress={"alice": (0, 0.5, False, None)},
    ),
    _Book(
        "batman_2_5",
        3,
        "batman",
        "Batman Year One 002.5.cbz",
        file_size=1_500,
        meta={"title": "Chapter Two and a Half", "number": "2.5"},
        read_lists=("Batman Order",),
        progress={"alice": (12, None, False, None)},
    ),
    _Book(
        "batman_10",
        4,
        "batman",
        "Batman Year One 010.cbz",
        page_count=32,
        meta={"title": "Chapter Ten", "number": "10"},
        read_lists=("Batman Order",),
    ),
    _Book(
        "batman_3_deleted",
        5,
        "batman",
        "Batman Year One 003.cbz",
        deleted=True,
        meta={"title": "Chapter Three", "number": "3"},
        read_lists=("Batman Order",),
        progress={"alice": (48, None, True, at(66))},
    ),
    _Book(
        "batman_annual",
        6,
        "batman",
        "Batman Annual.cbr",
        file_size=2_000_000_000,
        format="cbr",
        page_count=0,
        progress={"bob": (0, None, True, at(67))},
    ),
    _Book(
        "hyperlink_1",
        7,
        "hyperlink",
        "+1 Issue.cbz",
        file_size=1000,
        page_count=0,
        progress={"alice": (5, None, False, None)},
    ),
    _Book(
        "hostile_1",
        8,
        "hostile",
        "hostile.cbz",
        format="",
        meta={
            "title": "-2 <b>bold</b>\nsecond line",
            "number": "1",
            "summary": "Line one\r\n# not a heading\n\n  - not a bullet",
            "authors_json": '[{"name": "Ann, \\"The\\" Writer", "role": "writer"}]',
        },
        tags=("Noir",),
    ),
    _Book(
        "naruto_1",
        9,
        "naruto",
        "Naruto v01.cbz",
        page_count=200,
        meta={"title": "ナルト 第1巻", "number": "1", "language_iso": "ja", "year": 1999},
        genres=("Shōnen",),
        read_lists=("Summer Reading",),
        progress={"alice": (200, None, True, at(92, 8, 0, 0, 500000))},
    ),
    _Book(
        "naruto_2",
        10,
        "naruto",
        "Naruto v02.cbz",
        page_count=200,
        meta={"title": "@x vol 2", "number": "2"},
    ),
    _Book(
        "naruto_3",
        11,
        "naruto",
        "Naruto v03.cbz",
        page_count=200,
        meta={"title": '"Quoted", title', "number": "3"},
        progress={"alice": (66, 0.333333, False, None)},
    ),
    _Book(
        "naruto_4_deleted",
        12,
        "naruto",
        "Naruto v04.cbz",
        deleted=True,
        meta={"title": "Deleted volume", "number": "4"},
    ),
    _Book(
        "akira_1",
        13,
        "akira",
        "Akira 01.cbz",
        page_count=360,
        meta={
            "title": "Akira 1",
            "number": "1",
            "authors_json": (
                '[{"name": "Katsuhiro Otomo", "role": "writer"},'
                ' {"name": "Katsuhiro Otomo", "role": "artist"}]'
            ),
        },
        genres=("Cyberpunk", "Action"),
        read_lists=("Summer Reading",),
    ),
    _Book("zeta_1", 14, "zeta_comics", "Zeta 01.cbz", meta={"title": "Zeta 1", "number": "1"}),
    _Book("zeta_2", 15, "zeta_manga", "Zeta 01.cbz", meta={"title": "Zeta 1", "number": "1.0"}),
    _Book("zeta_extra_file", 16, "zeta_manga", "zeta-extra.cbz", meta={"title": ""}),
    _Book("zeta_extra_a", 17, "zeta_manga", "zeta-a.cbz", meta={"title": "zeta extra"}),
    _Book("zeta_extra_b", 18, "zeta_manga", "zeta-b.cbz", meta={"title": "zeta extra"}),
]

_SERIES_BY_KEY = {s.key: s for s in SERIES}

FIXTURE = Fixture(
    libraries={k: v[0] for k, v in LIBRARIES.items()},
    library_names={k: v[1] for k, v in LIBRARIES.items()},
    users=dict(USERS),
    series={s.key: _id(3, s.n) for s in SERIES},
    books={b.key: _id(4, b.n) for b in BOOKS},
    deleted_books=frozenset(b.key for b in BOOKS if b.deleted),
    sharing_tags=dict(SHARING_TAGS),
    access_groups=dict(ACCESS_GROUPS),
    visible_series={
        "alice": (
            "akira",
            "batman",
            "naruto",
            "secret",
            "hostile",
            "zeta_comics",
            "zeta_manga",
            "hyperlink",
        ),
        "bob": ("naruto", "zeta_comics"),
        "carol": ("batman", "naruto", "secret", "zeta_comics", "zeta_manga", "hyperlink"),
    },
    visible_books={
        "alice": (
            "akira_1",
            "batman_1",
            "batman_2",
            "batman_2_5",
            "batman_10",
            "batman_annual",
            "naruto_1",
            "naruto_2",
            "naruto_3",
            "hostile_1",
            "zeta_1",
            "zeta_2",
            "zeta_extra_a",
            "zeta_extra_b",
            "zeta_extra_file",
            "hyperlink_1",
        ),
        "bob": ("naruto_1", "naruto_2", "naruto_3", "zeta_1"),
        "carol": (
            "batman_1",
            "batman_2",
            "batman_2_5",
            "batman_10",
            "batman_annual",
            "naruto_1",
            "naruto_2",
            "naruto_3",
            "zeta_1",
            "zeta_2",
            "zeta_extra_a",
            "zeta_extra_b",
            "zeta_extra_file",
            "hyperlink_1",
        ),
    },
)


# --- Loading -----------------------------------------------------------------------------------


async def build(conn: asyncpg.Connection) -> Fixture:
    """Insert the fixture catalog (in one transaction) and return its ids."""
    async with conn.transaction():
        await _insert_reference_data(conn)
        await _insert_series(conn)
        await _insert_books(conn)
    return FIXTURE


async def _insert(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    # Codex's NOT NULL columns the fixture does not care about (ids of link rows, timestamps,
    # normalized names) are filled as Codex fills them, at the fixture's first day.
    await insert_rows(conn, table, rows, now=at(1))


async def _insert_reference_data(conn: asyncpg.Connection) -> None:
    f = FIXTURE
    await _insert(
        conn,
        "libraries",
        [{"id": lid, "name": name, "path": f"/{key}"} for key, (lid, name) in LIBRARIES.items()],
    )
    await _insert(
        conn,
        "users",
        [
            {"id": u.id, "username": u.username, "password_hash": PASSWORD_HASH, "role": u.role}
            for u in USERS.values()
        ],
    )
    await _insert(
        conn, "sharing_tags", [{"id": tid, "name": name} for name, tid in SHARING_TAGS.items()]
    )
    await _insert(
        conn, "access_groups", [{"id": gid, "name": name} for name, gid in ACCESS_GROUPS.items()]
    )
    await _insert(
        conn,
        "access_group_sharing_tags",
        [
            {
                "access_group_id": ACCESS_GROUPS[g],
                "sharing_tag_id": SHARING_TAGS[t],
                "access_mode": mode,
            }
            for g, t, mode in GROUP_GRANTS
        ],
    )
    await _insert(
        conn,
        "user_access_groups",
        [{"user_id": USERS[u].id, "access_group_id": ACCESS_GROUPS[g]} for u, g in GROUP_MEMBERS],
    )
    await _insert(
        conn,
        "user_sharing_tags",
        [
            {"user_id": USERS[u].id, "sharing_tag_id": SHARING_TAGS[t], "access_mode": mode}
            for u, t, mode in USER_GRANTS
        ],
    )
    # This product's own table (exports schema), not one of Codex's.
    await conn.executemany(
        "INSERT INTO exports.user_library_access (user_id, library_id) VALUES ($1, $2)",
        [(USERS[u].id, f.libraries[lib]) for u, lib in LIBRARY_ACCESS],
    )
    await _insert(conn, "genres", [{"id": i, "name": n} for n, i in GENRES.items()])
    await _insert(conn, "tags", [{"id": i, "name": n} for n, i in TAGS.items()])
    await _insert(
        conn,
        "collections",
        [{"id": cid, "name": name, "condition": cond} for name, (cid, cond) in COLLECTIONS.items()],
    )
    await _insert(
        conn, "read_lists", [{"id": rid, "name": name} for name, rid in READ_LISTS.items()]
    )


def _decimal(value: float | str | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


async def _insert_series(conn: asyncpg.Connection) -> None:
    f = FIXTURE
    await _insert(
        conn,
        "series",
        [
            {
                "id": f.series[s.key],
                "library_id": f.libraries[s.library],
                "path": s.path,
                "name": s.name,
                "created_at": s.created,
                "updated_at": s.updated,
            }
            for s in SERIES
        ],
    )
    await _insert(
        conn,
        "series_metadata",
        [
            {
                "series_id": f.series[s.key],
                # A status left out is NULL (none known), not the column's default 'ongoing'.
                "status": None,
                **s.meta,
                "created_at": s.created,
                "updated_at": s.updated,
            }
            for s in SERIES
            if s.meta is not None
        ],
    )
    links: list[tuple[str, list[dict[str, Any]]]] = [
        (
            "series_genres",
            [
                {"series_id": f.series[s.key], "genre_id": GENRES[g]}
                for s in SERIES
                for g in s.genres
            ],
        ),
        (
            "series_tags",
            [{"series_id": f.series[s.key], "tag_id": TAGS[t]} for s in SERIES for t in s.tags],
        ),
        (
            "series_sharing_tags",
            [
                {"series_id": f.series[s.key], "sharing_tag_id": SHARING_TAGS[t]}
                for s in SERIES
                for t in s.sharing
            ],
        ),
        (
            "collection_series",
            [
                {"collection_id": COLLECTIONS[c][0], "series_id": f.series[s.key], "position": n}
                for s in SERIES
                for n, c in enumerate(s.collections)
            ],
        ),
        (
            "series_alternate_titles",
            [
                {"series_id": f.series[s.key], "label": lab, "title": t}
                for s in SERIES
                for lab, t in s.alternate_titles
            ],
        ),
        (
            "series_external_ratings",
            [
                {
                    "series_id": f.series[s.key],
                    "source_name": src,
                    "rating": _decimal(r),
                    "vote_count": v,
                }
                for s in SERIES
                for src, r, v in s.external
            ],
        ),
        (
            "user_series_ratings",
            [
                {
                    "user_id": USERS[u].id,
                    "series_id": f.series[s.key],
                    "rating": rating,
                    "notes": notes,
                }
                for s in SERIES
                for u, (rating, notes) in s.ratings.items()
            ],
        ),
    ]
    for table, rows in links:
        await _insert(conn, table, rows)


async def _insert_books(conn: asyncpg.Connection) -> None:
    f = FIXTURE
    await _insert(
        conn,
        "books",
        [
            {
                "id": f.books[b.key],
                "series_id": f.series[b.series],
                "library_id": f.libraries[_SERIES_BY_KEY[b.series].library],
                "path": f"{_SERIES_BY_KEY[b.series].path or '/manga/Zeta'}/{b.file_name}",
                "file_name": b.file_name,
                "file_size": b.file_size,
                "format": b.format,
                "page_count": b.page_count,
                "deleted": b.deleted,
                "created_at": at(20, 10, b.n),
                "updated_at": at(21, 10, b.n),
            }
            for b in BOOKS
        ],
    )
    await _insert(
        conn,
        "book_metadata",
        [
            {"book_id": f.books[b.key], **b.meta, "number": _decimal(b.meta.get("number"))}
            for b in BOOKS
            if b.meta is not None
        ],
    )
    await _insert(
        conn,
        "book_genres",
        [{"book_id": f.books[b.key], "genre_id": GENRES[g]} for b in BOOKS for g in b.genres],
    )
    await _insert(
        conn,
        "book_tags",
        [{"book_id": f.books[b.key], "tag_id": TAGS[t]} for b in BOOKS for t in b.tags],
    )
    await _insert(
        conn,
        "read_list_books",
        [
            {"read_list_id": READ_LISTS[r], "book_id": f.books[b.key], "position": b.n}
            for b in BOOKS
            for r in b.read_lists
        ],
    )
    await _insert(
        conn,
        "read_progress",
        [
            {
                "user_id": USERS[u].id,
                "book_id": f.books[b.key],
                "current_page": page,
                "progress_percentage": pct,
                "completed": done,
                "completed_at": done_at,
                "started_at": at(60),
                "updated_at": at(70),
            }
            for b in BOOKS
            for u, (page, pct, done, done_at) in b.progress.items()
        ],
    )
