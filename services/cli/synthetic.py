"""A large synthetic catalog generated inside PostgreSQL (``generate_series``), deterministic.

For benchmarks and fault tests: 1,000,000 books load in seconds. Values are derived from row
numbers (``hashtext``-free arithmetic), so two databases built with the same sizes are equal.
Rows have Codex's shape: every NOT NULL column Codex fills (ids, timestamps, normalized names,
search titles, file hashes) is filled here too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

NAMESPACE = uuid.UUID("6f1c1b1e-5b1a-4c1e-9a4b-0c0d0000e0e0")
# Row timestamps of everything whose time is not part of the data (Codex's tables have no
# timestamp defaults: every writer gives them).
_T0 = "timestamptz '2024-01-01 00:00:00+00'"


@dataclass(frozen=True)
class SyntheticCatalog:
    library_id: uuid.UUID
    user_id: uuid.UUID
    series: int
    books: int


def _uuid_sql(prefix: str, expr: str) -> str:
    # A deterministic uuid from a tag and a number (md5 gives 32 hex digits). The prefix is
    # ours (a tag and a generated uuid), never user input.
    return f"md5('{prefix}' || ({expr})::text)::uuid"


async def build_synthetic(
    conn: asyncpg.Connection, *, series: int, books: int, username: str = "bench"
) -> SyntheticCatalog:
    """One library with ``series`` series and ``books`` books, and a user with progress on a
    third of the books, ratings on a fifth of the series, genres, tags and authors."""
    library_id = uuid.uuid5(NAMESPACE, f"library:{series}:{books}")
    user_id = uuid.uuid5(NAMESPACE, f"user:{username}")
    per_series = max(1, books // series)
    series_id = _uuid_sql(f"series-{library_id}", "s")
    book_id = _uuid_sql(f"book-{library_id}", "b")
    book_series_id = _uuid_sql(f"series-{library_id}", "1 + (b - 1) / $2")
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO libraries (id, name, path, created_at, updated_at)"
            f" VALUES ($1, $2, '/synthetic', {_T0}, {_T0})",
            library_id,
            f"Synthetic {books}",
        )
        await conn.execute(
            "INSERT INTO users (id, username, email, password_hash, role, created_at, updated_at)"
            f" VALUES ($1, $2, $2 || '@codex.invalid', '', 'reader', {_T0}, {_T0})"
            " ON CONFLICT (username) DO NOTHING",
            user_id,
            username,
        )
        user_id = await conn.fetchval("SELECT id FROM users WHERE username = $1", username)
        await conn.execute(
            "INSERT INTO genres (id, name, normalized_name, created_at) SELECT "
            + _uuid_sql("genre", "g")
            + f", 'Genre ' || g, 'genre ' || g, {_T0}"
            " FROM generate_series(1, 12) g ON CONFLICT (name) DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO tags (id, name, normalized_name, created_at) SELECT "
            + _uuid_sql("tag", "t")
            + f", 'Tag ' || t, 'tag ' || t, {_T0}"
            " FROM generate_series(1, 20) t ON CONFLICT (name) DO NOTHING"
        )
        await conn.execute(
            f"INSERT INTO series (id, library_id, path, name, normalized_name, created_at,"
            " updated_at)"
            f" SELECT {series_id}, $1::uuid, '/synthetic/series-' || s,"
            " 'Series ' || lpad(s::text, 6, '0'), 'series' || lpad(s::text, 6, '0'),"
            " timestamptz '2024-01-01 00:00:00+00' + s * interval '1 minute',"
            " timestamptz '2024-06-01 00:00:00+00' + s * interval '1 minute'"
            " FROM generate_series(1, $2::int) s",
            library_id,
            series,
        )
        await conn.execute(
            "INSERT INTO series_metadata (series_id, title, title_sort, summary, publisher, status,"
            " language, year, total_volume_count, total_chapter_count, authors_json,"
            " search_title, created_at, updated_at)"
            f" SELECT {series_id}, 'Title ' || lpad(s::text, 6, '0'),"
            " NULL, 'Summary of series ' || s"
            " || E', with a comma, a \"quote\"\\nand a second line.',"
            " 'Publisher ' || (s % 17),"
            " (ARRAY['ongoing','ended','hiatus','abandoned','unknown'])[1 + s % 5],"
            " 'en', 1980 + s % 45, 1 + s % 30, (s % 200)::float8 / 2,"
            ' \'[{"name":"Author \' || (s % 500) || \'","role":"writer","sort_name":"\''
            " || (s % 500) || '\"}]',"
            f" 'title ' || lpad(s::text, 6, '0'), {_T0}, {_T0}"
            " FROM generate_series(1, $1::int) s",
            series,
        )
        await conn.execute(
            f"INSERT INTO series_genres (series_id, genre_id) SELECT {series_id},"
            " " + _uuid_sql("genre", "1 + s % 12") + " FROM generate_series(1, $1::int) s",
            series,
        )
        await conn.execute(
            "INSERT INTO books (id, series_id, library_id, path, file_name, file_size, format,"
            " page_count, file_hash, modified_at, created_at, updated_at)"
            f" SELECT {book_id}, {book_series_id}, $3::uuid,"
            " '/synthetic/series-' || (1 + (b - 1) / $2) || '/book-' || b || '.cbz',"
            # bigint: b * 7919 overflows int4 past 271,000 books.
            " 'book-' || b || '.cbz', 1000000 + (b::bigint * 7919) % 90000000, 'cbz',"
            " 20 + b % 200, '',"
            " timestamptz '2024-01-01 00:00:00+00' + b * interval '1 second',"
            " timestamptz '2024-01-01 00:00:00+00' + b * interval '1 second',"
            " timestamptz '2024-06-01 00:00:00+00' + b * interval '1 second'"
            " FROM generate_series(1, $1::int) b",
            books,
            per_series,
            library_id,
        )
        await conn.execute(
            "INSERT INTO book_metadata (id, book_id, title, number, summary, publisher,"
            " language_iso, year, authors_json, search_title, created_at, updated_at)"
            f" SELECT {_uuid_sql(f'book-metadata-{library_id}', 'b')}, {book_id},"
            " 'Volume ' || (1 + (b - 1) % $2),"
            " 1 + (b - 1) % $2, 'Book ' || b || ' summary, with a comma.',"
            " 'Publisher ' || (b % 17),"
            ' \'en\', 1980 + b % 45, \'[{"name":"Author \' || (b % 500) || \'","role":"writer"}]\','
            f" 'volume ' || (1 + (b - 1) % $2), {_T0}, {_T0}"
            " FROM generate_series(1, $1::int) b",
            books,
            per_series,
        )
        await conn.execute(
            f"INSERT INTO book_tags (book_id, tag_id) SELECT {book_id},"
            " " + _uuid_sql("tag", "1 + b % 20") + " FROM generate_series(1, $1::int) b"
            " WHERE b % 4 = 0",
            books,
        )
        await conn.execute(
            "INSERT INTO read_progress (id, user_id, book_id, current_page, progress_percentage,"
            " completed, completed_at, started_at, updated_at)"
            f" SELECT {_uuid_sql(f'progress-{library_id}', 'b')}, $2::uuid, {book_id}, 10,"
            " CASE WHEN b % 2 = 0 THEN 0.5 END,"
            " b % 6 = 0, CASE WHEN b % 6 = 0 THEN timestamptz '2025-01-01 00:00:00+00' END,"
            f" {_T0}, {_T0}"
            " FROM generate_series(1, $1::int) b WHERE b % 3 = 0",
            books,
            user_id,
        )
        await conn.execute(
            "INSERT INTO user_series_ratings (id, user_id, series_id, rating, notes, created_at,"
            " updated_at)"
            f" SELECT {_uuid_sql(f'rating-{library_id}', 's')}, $2::uuid, {series_id},"
            f" 1 + s % 100, 'Note ' || s, {_T0}, {_T0}"
            " FROM generate_series(1, $1::int) s WHERE s % 5 = 0",
            series,
            user_id,
        )
    await conn.execute("ANALYZE")
    return SyntheticCatalog(library_id=library_id, user_id=user_id, series=series, books=books)
