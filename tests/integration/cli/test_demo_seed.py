"""The demo catalog of `codex-exports dev`: size, variety, users, determinism, idempotency."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from services.cli.demo_seed import DEMO_SIGN_IN, SeedResult, seed_demo
from tests.conftest import Servers, create_database

pytestmark = pytest.mark.integration


async def _seed(url: str, seed: int = 42) -> SeedResult:
    conn = await asyncpg.connect(url)
    try:
        return await seed_demo(conn, seed=seed)
    finally:
        await conn.close()


async def _fingerprint(url: str) -> dict[str, str]:
    """md5 of every catalog table's rows in a stable order (password hashes left out)."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
        ]
        assert "series" in tables
        assert "books" in tables
        result: dict[str, str] = {}
        for table in tables:
            row_text = (
                "(t.id, t.username, t.role, t.created_at)::text" if table == "users" else "t::text"
            )
            result[table] = await conn.fetchval(
                f"SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), ''))"
                f" FROM (SELECT {row_text} AS x FROM {table} t) s"
            )
        return result
    finally:
        await conn.close()


async def test_seed_loads_a_catalog_of_the_promised_size_quickly(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        started = time.perf_counter()
        result = await seed_demo(conn)
        elapsed = time.perf_counter() - started
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM libraries) AS libraries,"
            " (SELECT count(*) FROM series) AS series,"
            " (SELECT count(*) FROM series_metadata) AS series_metadata,"
            " (SELECT count(*) FROM books WHERE NOT deleted) AS books"
        )

    assert result.libraries >= 3
    assert result.series >= 300
    assert result.books >= 3000
    assert (counts["libraries"], counts["series"], counts["books"]) == (
        result.libraries,
        result.series,
        result.books,
    )
    assert counts["series_metadata"] == counts["series"]
    # Generous bound: it takes well under a second; the dev command runs it on every first start.
    assert elapsed < 5, f"seeding took {elapsed:.2f} s"


async def test_both_users_sign_in_with_argon2_hashes(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        result = await seed_demo(conn)
        users = {
            r["username"]: r
            for r in await conn.fetch("SELECT id, username, role, password_hash FROM users")
        }

    assert [(u.username, u.password) for u in result.users] == DEMO_SIGN_IN
    assert set(users) == {"demo", "reader"}
    assert users["demo"]["role"] == "admin"
    assert users["reader"]["role"] == "reader"
    hasher = PasswordHasher()
    for user in result.users:
        row = users[user.username]
        assert row["id"] == user.id
        assert row["password_hash"].startswith("$argon2id$")
        assert hasher.verify(row["password_hash"], user.password)
    with pytest.raises(VerifyMismatchError):
        hasher.verify(users["demo"]["password_hash"], "reader")


async def test_admin_sees_everything_and_reader_is_restricted(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        result = await seed_demo(conn)
        demo, reader = (u.id for u in result.users)

        for table in ("exports.user_library_access", "user_sharing_tags", "user_access_groups"):
            assert (
                await conn.fetchval(f"SELECT count(*) FROM {table} WHERE user_id = $1", demo) == 0
            )

        readable = await conn.fetch(
            "SELECT library_id FROM exports.user_library_access WHERE user_id = $1", reader
        )
        assert len(readable) == 2
        assert await conn.fetchval("SELECT count(*) FROM libraries") == 3

        # The reader's only grants come through an access group: a deny, and no allow at all.
        assert (
            await conn.fetchval("SELECT count(*) FROM user_sharing_tags WHERE user_id = $1", reader)
            == 0
        )
        grants = await conn.fetch(
            "SELECT st.name, g.access_mode FROM user_access_groups uag"
            " JOIN access_group_sharing_tags g USING (access_group_id)"
            " JOIN sharing_tags st ON st.id = g.sharing_tag_id WHERE uag.user_id = $1",
            reader,
        )
        assert [(g["name"], g["access_mode"]) for g in grants] == [("mature", "deny")]

        hidden, visible = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE denied), count(*) FILTER (WHERE NOT denied)"
            " FROM (SELECT s.id, EXISTS ("
            "   SELECT 1 FROM series_sharing_tags sst"
            "   JOIN access_group_sharing_tags g ON g.sharing_tag_id = sst.sharing_tag_id"
            "   JOIN user_access_groups uag ON uag.access_group_id = g.access_group_id"
            "   WHERE sst.series_id = s.id AND uag.user_id = $1 AND g.access_mode = 'deny'"
            " ) AS denied"
            " FROM series s JOIN exports.user_library_access ula"
            "   ON ula.library_id = s.library_id AND ula.user_id = $1) x",
            reader,
        )
        assert hidden > 0
        assert visible > hidden

        # Both users have ratings and progress; the reader's are on series they can see.
        for user in (demo, reader):
            assert await conn.fetchval(
                "SELECT count(*) FROM user_series_ratings WHERE user_id = $1", user
            )
            assert await conn.fetchval(
                "SELECT count(*) FROM read_progress WHERE user_id = $1", user
            )
        outside = await conn.fetchval(
            "SELECT count(*) FROM user_series_ratings r JOIN series s ON s.id = r.series_id"
            " WHERE r.user_id = $1 AND s.library_id NOT IN"
            " (SELECT library_id FROM exports.user_library_access WHERE user_id = $1)",
            reader,
        )
        assert outside == 0
        shared = await conn.fetchval(
            "SELECT count(*) FROM (SELECT series_id FROM user_series_ratings"
            " GROUP BY series_id HAVING count(*) > 1) x"
        )
        assert shared > 0, "a community average needs series rated by both users"


async def test_catalog_carries_realistic_and_awkward_values(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        result = await seed_demo(conn)
        demo, reader = (u.id for u in result.users)
        summaries = [
            r["summary"]
            for r in await conn.fetch(
                "SELECT summary FROM series_metadata WHERE summary IS NOT NULL"
                " UNION ALL SELECT summary FROM book_metadata WHERE summary IS NOT NULL"
            )
        ]
        assert any("\n" in s for s in summaries), "multi-line summaries"
        assert any("," in s and '"' in s for s in summaries), "commas and quotes"
        assert any(not s.isascii() for s in summaries), "non-ASCII summaries"
        for text in ("Café", "東京", "Ægir"):
            assert any(text in s for s in summaries), text

        assert await conn.fetchval("SELECT count(*) FROM books WHERE deleted") > 0
        formats = {r["format"] for r in await conn.fetch("SELECT DISTINCT format FROM books")}
        assert formats == {"cbz", "cbr", "epub", "pdf"}
        assert await conn.fetchval("SELECT min(page_count) FROM books") > 0
        assert await conn.fetchval("SELECT min(file_size) FROM books") > 0

        statuses = {
            r["status"] for r in await conn.fetch("SELECT DISTINCT status FROM series_metadata")
        }
        assert {"ongoing", "ended", "hiatus", "abandoned", "unknown"} <= statuses
        assert await conn.fetchval(
            "SELECT count(*) FROM series_metadata WHERE title_sort IS DISTINCT FROM title"
        )
        for row in await conn.fetch(
            "SELECT authors_json FROM series_metadata WHERE authors_json IS NOT NULL"
            " UNION ALL SELECT authors_json FROM book_metadata WHERE authors_json IS NOT NULL"
        ):
            authors = json.loads(row["authors_json"])
            assert isinstance(authors, list)
            assert authors
            assert all(set(a) == {"name", "role", "sort_name"} for a in authors)

        titles = [r["title"] for r in await conn.fetch("SELECT title FROM book_metadata")]
        assert any(t and t.startswith("Vol. ") for t in titles)
        assert any(t and t.startswith("Chapter ") for t in titles)
        assert any(t is None for t in titles), "some books fall back to their file name"
        numbers = [r["number"] for r in await conn.fetch("SELECT number FROM book_metadata")]
        assert any(n % 1 for n in numbers), "fractional chapter numbers such as 10.5"

        for table in (
            "genres",
            "tags",
            "series_genres",
            "series_tags",
            "book_genres",
            "book_tags",
            "series_alternate_titles",
            "read_lists",
            "read_list_books",
        ):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") > 0, table

        collections = await conn.fetch(
            "SELECT c.condition IS NULL AS manual, count(cs.series_id) AS members"
            " FROM collections c LEFT JOIN collection_series cs ON cs.collection_id = c.id"
            " GROUP BY c.id, c.condition"
        )
        assert sum(1 for c in collections if not c["manual"]) == 1
        assert sum(1 for c in collections if c["manual"] and c["members"]) >= 3

        sources = {
            r["source_name"]
            for r in await conn.fetch("SELECT DISTINCT source_name FROM series_external_ratings")
        }
        assert {"AniList", "MyAnimeList", "ComicVine"} <= sources
        low, high = await conn.fetchrow(
            "SELECT min(rating), max(rating) FROM series_external_ratings"
        )
        assert 0 <= low <= high <= 100
        assert await conn.fetchval(
            "SELECT count(*) FROM user_series_ratings WHERE notes LIKE '%' || chr(10) || '%'"
        )

        for user in (demo, reader):
            kinds = await conn.fetchrow(
                "SELECT count(*) FILTER (WHERE completed AND completed_at IS NOT NULL) AS done,"
                " count(*) FILTER (WHERE NOT completed AND progress_percentage IS NOT NULL"
                "   AND current_page = 0) AS percentage_only,"
                " count(*) FILTER (WHERE NOT completed AND progress_percentage IS NULL"
                "   AND current_page > 0) AS page_only"
                " FROM read_progress WHERE user_id = $1",
                user,
            )
            assert kinds["done"] > 0
            assert kinds["percentage_only"] > 0
            assert kinds["page_only"] > 0


async def test_same_seed_same_catalog_in_two_databases(real_servers: Servers) -> None:
    first_url, second_url, other_url = await asyncio.gather(
        create_database(real_servers), create_database(real_servers), create_database(real_servers)
    )
    first = await _seed(first_url)
    second = await _seed(second_url)
    other = await _seed(other_url, seed=7)

    assert first == second
    first_print, second_print = await _fingerprint(first_url), await _fingerprint(second_url)
    assert first_print == second_print

    other_print = await _fingerprint(other_url)
    assert other_print["series"] != first_print["series"]
    assert other.books >= 3000


async def test_reseeding_is_a_no_op(pool: asyncpg.Pool, fresh_database: str) -> None:
    first = await _seed(fresh_database)
    before = await _fingerprint(fresh_database)
    async with pool.acquire() as conn:
        hashes = await conn.fetch("SELECT username, password_hash FROM users ORDER BY username")

    again = await _seed(fresh_database)

    assert again == first
    assert await _fingerprint(fresh_database) == before
    async with pool.acquire() as conn:
        assert (
            await conn.fetch("SELECT username, password_hash FROM users ORDER BY username")
            == hashes
        )


async def test_concurrent_seeds_load_one_catalog(fresh_database: str) -> None:
    results = await asyncio.gather(*(_seed(fresh_database) for _ in range(3)))

    assert results[0] == results[1] == results[2]
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM users") == 2
        assert (
            await conn.fetchval("SELECT count(*) FROM books WHERE NOT deleted") == results[0].books
        )
    finally:
        await conn.close()
