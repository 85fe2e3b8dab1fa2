"""The database rendering (``services.worker.render.copy``) against the Python encoders, byte
for byte.

Every format x type x field set (all, LLM preset, anchor only, each field alone) for every
fixture user, on the fixture catalog and on a copy of it with hostile values added. Both
renderings go through ``service._render``, so the counts, the framing and the fallback for
declined values are the ones the worker runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.cli.synthetic import build_synthetic
from services.worker import catalog, render, service
from services.worker.render import copy
from shared.codex_tables import insert_rows, series_normalized_name
from shared.fields import (
    ALL_BOOKS,
    ALL_SERIES,
    BOOK_FIELDS,
    LLM_PRESET_BOOKS,
    LLM_PRESET_SERIES,
    SERIES_FIELDS,
)
from shared.formats import ExportFormat
from shared.repository import ExportRow
from shared.settings import Settings
from tests.conftest import Servers, create_database, seeded_database
from tests.fixture_catalog import FIXTURE, build
from tests.services.worker.render.samples import HOSTILE

pytestmark = pytest.mark.integration

F = FIXTURE

AUTHORS_JSON = [
    '[{"name": "  Ann  ", "role": "  writer  "}, {"name": "Bo", "role": ""}]',
    '[{"name": "x\\n<b>\\"q\\"", "role": "a\\\\b"}, {"name": 123}, {"name": "C", "role": 5}]',
    '{"name": "not a list"}',
    "[]",
    "null",
    '"a string"',
    "not json",
    "",
    '[{"name": "first", "name": "last"}]',
    '[{"name": "\\u00e9\\ud83d\\ude00\\u2028x\\u3000"}]',
    ' [ {"name" : "spaced" , "role" : "r" } ] ',
    '[{"name": "big", "n": 12345678901234567890123}]',
    '[{"name": "=formula", "role": "-x"}, {"name": "  "}, {"role": "orphan"}]',
    # orjson and jsonb disagree on these: the row is rendered in Python.
    '[{"name": "nul\\u0000"}]',
    '[{"name": "huge", "n": 1e400}]',
    "[" * 1100 + "]" * 1100,
]

# series_metadata.total_chapter_count is a real (float4): the extremes are float4's.
FLOATS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "-0",
    "1e-05",
    "0.0001",
    "1000000000000000.5",
    "-1234567890123456.8",
    "9007199254740993",
    "1e16",
    "1e22",
    "9.3e18",
    "3.4028234663852886e38",
    "1e-45",
    "0.1",
    "-123.456",
    "2.5",
    "123456789012345.67",
]
NUMBERS = ["1.5", "1e20", "-7", "0.000001", "12345678901234567.5", "NaN", "3.00"]
TIMES = [
    "0005-03-04 05:06:07.000008+00",
    "9999-12-31 23:59:59.999999+00",
    "2024-02-29 23:59:59.5+05:30",
    "1970-01-01 00:00:00+00",
]


def _uuid(tag: str, n: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"fast-path/{tag}/{n}")


async def _add_hostile(conn: asyncpg.Connection) -> None:
    """Hostile series and books in every library, visible to every fixture user in some."""
    libraries = [F.libraries["comics"], F.libraries["manga"], F.libraries["private"]]
    all_ages = F.sharing_tags["all-ages"]
    users = [u.id for u in F.users.values()]
    genres = [(_uuid("genre", i), f"{text}#g{i}") for i, text in enumerate(HOSTILE[:8])]
    tags = [(_uuid("tag", i), f"{text}#t{i}") for i, text in enumerate(HOSTILE[8:16])]
    lists = [(_uuid("list", i), text or "e") for i, text in enumerate(HOSTILE[16:24])]
    base = datetime(2024, 5, 1, tzinfo=UTC)

    async def insert(table: str, rows: list[dict[str, Any]]) -> None:
        await insert_rows(conn, table, rows, now=base)

    await insert("genres", [{"id": i, "name": n} for i, n in genres])
    await insert("tags", [{"id": i, "name": n} for i, n in tags])
    await insert("read_lists", [{"id": i, "name": n} for i, n in lists])
    await insert(
        "collections",
        [
            {"id": _uuid("coll", 0), "name": HOSTILE[0]},
            {"id": _uuid("coll", 1), "name": HOSTILE[15]},
        ],
    )
    count = max(len(HOSTILE), len(AUTHORS_JSON), len(FLOATS))
    series: list[tuple[Any, ...]] = []
    progress: list[tuple[Any, ...]] = []
    rows: dict[str, list[dict[str, Any]]] = {
        table: []
        for table in (
            "series_metadata",
            "series_sharing_tags",
            "series_genres",
            "series_tags",
            "collection_series",
            "series_alternate_titles",
            "series_external_ratings",
            "user_series_ratings",
            "books",
            "book_metadata",
            "book_genres",
            "book_tags",
            "read_list_books",
        )
    }
    for i in range(count):
        text = HOSTILE[i % len(HOSTILE)]
        other = HOSTILE[(i * 7 + 3) % len(HOSTILE)]
        sid = _uuid("series", i)
        library = libraries[i % 3]
        created: Any = TIMES[i % len(TIMES)] if i % 5 == 0 else base + timedelta(minutes=i)
        series.append(
            (
                sid,
                library,
                other,
                text,
                series_normalized_name(text),
                str(created),
                base + timedelta(seconds=i, microseconds=i * 37),
            )
        )
        rows["series_metadata"].append(
            {
                "series_id": sid,
                "title": other if i % 4 else "",
                "title_sort": text if i % 3 == 0 else None,
                "summary": "\n".join(HOSTILE[i % 5 :: 5]),
                "publisher": other,
                "status": ["ongoing", "ended", "hiatus", "abandoned", "unknown"][i % 5],
                # Codex's language is a varchar(10).
                "language": text[:10],
                "year": -44 if i % 6 == 0 else 2000 + i,
                "total_volume_count": i,
                "total_chapter_count": float(FLOATS[i % len(FLOATS)]),
                "authors_json": AUTHORS_JSON[i % len(AUTHORS_JSON)] if i % 2 == 0 else None,
            }
        )
        if i % 2 == 0:
            rows["series_sharing_tags"].append({"series_id": sid, "sharing_tag_id": all_ages})
        rows["series_genres"].append({"series_id": sid, "genre_id": genres[i % len(genres)][0]})
        rows["series_tags"] += [{"series_id": sid, "tag_id": t[0]} for t in tags[: i % 4]]
        rows["collection_series"].append({"collection_id": _uuid("coll", i % 2), "series_id": sid})
        for j in range(i % 3):
            rows["series_alternate_titles"].append(
                {
                    "series_id": sid,
                    "label": HOSTILE[(i + j) % len(HOSTILE)],
                    "title": HOSTILE[(i + 2 * j + 1) % len(HOSTILE)],
                }
            )
            rows["series_external_ratings"].append(
                {
                    "series_id": sid,
                    # Codex's source_name is a varchar(50).
                    "source_name": HOSTILE[(i + j + 5) % len(HOSTILE)][:50],
                    "rating": Decimal(["0", "100", "33.333", "99.99", "50.5"][(i + j) % 5]),
                    "vote_count": [None, 1, 2, 1200][(i + j) % 4],
                }
            )
        for u, user in enumerate(users):
            if (i + u) % 3:
                rows["user_series_ratings"].append(
                    {
                        "user_id": user,
                        "series_id": sid,
                        "rating": 1 + (i * 13 + u) % 100,
                        "notes": HOSTILE[(i + u) % len(HOSTILE)] if u != 1 else None,
                    }
                )
        for k in range(2):
            bid = _uuid(f"book{k}", i)
            rows["books"].append(
                {
                    "id": bid,
                    "series_id": sid,
                    "library_id": library,
                    # Codex's path is unique in a library: the series' two books differ.
                    "path": f"{other}#b{k}",
                    "file_name": text if k else other,
                    "file_size": (i + 1) * 1_000_003 * (k + 1),
                    # Codex's format is NOT NULL: an empty one stands for "none".
                    "format": text if i % 3 else "",
                    "page_count": (i * 17) % 300,
                    "deleted": False,
                    "created_at": base + timedelta(hours=i, microseconds=k),
                    "updated_at": base + timedelta(days=i),
                }
            )
            number = NUMBERS[(i + k) % len(NUMBERS)] if (i + k) % 4 else None
            rows["book_metadata"].append(
                {
                    "book_id": bid,
                    "title": other if (i + k) % 3 else text,
                    "number": None if number is None else Decimal(number),
                    "summary": "\n".join(HOSTILE[(i + k) % 4 :: 4]),
                    "publisher": text,
                    "language_iso": other,
                    "year": 1990 + i,
                    "authors_json": AUTHORS_JSON[(i + k) % len(AUTHORS_JSON)],
                }
            )
            rows["book_genres"].append(
                {"book_id": bid, "genre_id": genres[(i + k) % len(genres)][0]}
            )
            if (i + k) % 2:
                rows["book_tags"].append({"book_id": bid, "tag_id": tags[(i + k) % len(tags)][0]})
                rows["read_list_books"].append(
                    {"read_list_id": lists[(i + k) % len(lists)][0], "book_id": bid}
                )
            for u, user in enumerate(users):
                if (i + k + u) % 3 == 0:
                    continue
                completed_at: Any = None
                if (i + u) % 4 == 0:
                    completed_at = "infinity" if i == 11 and k == 0 else str(base)
                progress.append(
                    (
                        _uuid(f"progress{k}-{u}", i),
                        user,
                        bid,
                        (i * 5 + u) % 400 - 3,
                        [None, 0.5, 1.7, -0.2, 0.333333, 1 / 3][(i + u) % 6],
                        completed_at is not None,
                        completed_at,
                        base,
                    )
                )
    # Timestamps sent as text (year 5, year 9999, an offset, infinity), cast by PostgreSQL.
    await conn.executemany(
        "INSERT INTO series (id, library_id, path, name, normalized_name, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6::text::timestamptz, $7)",
        series,
    )
    for table, table_rows in rows.items():
        await insert(table, table_rows)
    await conn.executemany(
        "INSERT INTO read_progress (id, user_id, book_id, current_page, progress_percentage,"
        " completed, completed_at, started_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::text::timestamptz, $8, $8)",
        progress,
    )


@pytest.fixture(scope="module")
async def catalogs(real_servers: Servers) -> AsyncIterator[dict[str, asyncpg.Pool]]:
    """The fixture catalog, and a copy with the hostile rows added."""
    pools: dict[str, asyncpg.Pool] = {}
    for name in ("fixture", "hostile"):
        url = await create_database(real_servers)
        conn = await asyncpg.connect(url)
        try:
            await build(conn)
            if name == "hostile":
                async with conn.transaction():
                    await _add_hostile(conn)
                await conn.execute("ANALYZE")
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        assert pool is not None
        pools[name] = pool
    try:
        yield pools
    finally:
        for pool in pools.values():
            await pool.close()


def _export(
    user: str | uuid.UUID,
    fmt: str,
    export_type: str,
    fields: Any,
    book_fields: Any,
    libraries: list[uuid.UUID] | None = None,
) -> ExportRow:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    return ExportRow(
        id=uuid.uuid4(),
        user_id=F.users[user].id if isinstance(user, str) else user,
        format=fmt,
        export_type=export_type,
        library_ids=libraries or F.library_ids(),
        library_names=[],
        fields=list(fields),
        book_fields=list(book_fields),
        status="running",
        rows_total=None,
        rows_written=0,
        row_count=None,
        file_size_bytes=None,
        sha256=None,
        file_name="x",
        object_key="x",
        error=None,
        attempt=1,
        worker_id="test",
        heartbeat_at=None,
        request_id=None,
        created_at=now,
        started_at=now,
        completed_at=None,
        expires_at=now,
        published_at=None,
    )


async def _render(pool: asyncpg.Pool, export: ExportRow, renderer: str) -> bytes:
    ctx = service.WorkerContext(Settings(batch_rows=3), pool, None, None, "test")  # type: ignore[arg-type]
    out: list[bytes] = []

    async def write(data: bytes) -> None:
        out.append(data)

    progress = service.Progress()
    rows = await service._render(ctx, export, progress, write, renderer)  # type: ignore[arg-type]
    assert rows == progress.total
    return b"".join(out)


def _field_sets(export_type: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    series = [ALL_SERIES, LLM_PRESET_SERIES, (), *((key,) for key in ALL_SERIES)]
    books = [ALL_BOOKS, LLM_PRESET_BOOKS, (), *((key,) for key in ALL_BOOKS)]
    if export_type == "series":
        return [(s, ()) for s in series]
    if export_type == "books":
        return [((), b) for b in books]
    return list(zip(series, books, strict=False))


def _first_difference(a: bytes, b: bytes) -> str:
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    return f"at byte {at}: reference {a[max(0, at - 80) : at + 80]!r}\n database {b[max(0, at - 80) : at + 80]!r}"


@pytest.mark.parametrize("catalog", ["fixture", "hostile"])
@pytest.mark.parametrize(
    ("fmt", "export_type"),
    [
        ("json", "series"),
        ("json", "books"),
        ("json", "both"),
        ("csv", "series"),
        ("csv", "books"),
        ("md", "series"),
        ("md", "books"),
        ("md", "both"),
        ("jsonl", "series"),
        ("jsonl", "books"),
        ("jsonl", "both"),
    ],
)
async def test_database_rendering_is_byte_identical(
    catalogs: dict[str, asyncpg.Pool], catalog: str, fmt: str, export_type: str
) -> None:
    pool = catalogs[catalog]
    checked = 0
    for user in F.users:
        for fields, book_fields in _field_sets(export_type):
            export = _export(user, fmt, export_type, fields, book_fields)
            reference = await _render(pool, export, "python")
            database = await _render(pool, export, "database")
            assert database == reference, f"{user} {fields or book_fields}: " + _first_difference(
                reference, database
            )
            checked += 1
    assert checked >= 3 * 29


@pytest.mark.parametrize("fmt", [f for f in ExportFormat if render.in_database(f)])
@pytest.mark.parametrize(("section", "fields"), [("series", ALL_SERIES), ("books", ALL_BOOKS)])
async def test_every_render_function_is_inlined(
    catalogs: dict[str, asyncpg.Pool], section: str, fields: tuple[str, ...], fmt: ExportFormat
) -> None:
    """A render function the planner did not inline would be called once per value: the plan of
    the widest export holds no call of one (EXPLAIN VERBOSE names every call it makes)."""
    labels = {f.key: f.label for f in (*SERIES_FIELDS, *BOOK_FIELDS)}
    plan = render.plan(section, list(fields), fmt, labels)  # type: ignore[arg-type]
    alice = F.users["alice"].id
    async with catalogs["fixture"].acquire() as conn:
        explain = await conn.fetch("EXPLAIN VERBOSE " + plan.sql, alice, F.library_ids())
        # The control: an argument used more than once that costs more than ten operators
        # (another rendered value) keeps py_strip a call.
        control = await conn.fetch(
            "EXPLAIN VERBOSE SELECT exports.py_strip(exports.md_heading(name)) FROM series"
        )
    assert _calls(control) == ["exports.py_strip("]
    assert _calls(explain) == []


def _calls(explain: list[asyncpg.Record]) -> list[str]:
    return sorted(set(re.findall(r"\bexports\.\w+\(", "\n".join(r[0] for r in explain))))


def _count_declines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on ``copy.copy_section``: the list gets the row count of every ``Declined``."""
    declined: list[int] = []
    original = copy.copy_section

    async def spy(*args: Any, **kwargs: Any) -> int:
        try:
            rows: int = await original(*args, **kwargs)
        except copy.Declined as err:
            declined.append(err.rows)
            raise
        return rows

    monkeypatch.setattr(copy, "copy_section", spy)
    return declined


async def test_fixture_needs_no_fallback(
    catalogs: dict[str, asyncpg.Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plain fixture is rendered by the database alone (the comparison above is real)."""
    declined = _count_declines(monkeypatch)
    for fmt, export_type in [
        ("json", "both"),
        ("csv", "series"),
        ("csv", "books"),
        ("md", "both"),
        ("jsonl", "both"),
    ]:
        export = _export("alice", fmt, export_type, ALL_SERIES, ALL_BOOKS)
        assert await _render(catalogs["fixture"], export, "database")
    assert declined == []
    # The hostile copy has values the database declines: the comparison covers the fallback.
    export = _export("alice", "csv", "books", (), ("authors",))
    await _render(catalogs["hostile"], export, "database")
    assert declined


@pytest.fixture(scope="module")
async def synthetic_pool(real_servers: Servers) -> AsyncIterator[tuple[asyncpg.Pool, Any]]:
    url, synthetic = await seeded_database(
        real_servers, lambda c: build_synthetic(c, series=200, books=20_000)
    )
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    try:
        yield pool, synthetic
    finally:
        await pool.close()


@pytest.mark.parametrize("fmt", ["json", "csv", "md", "jsonl"])
async def test_synthetic_catalog_is_byte_identical(
    synthetic_pool: tuple[asyncpg.Pool, Any], fmt: str
) -> None:
    pool, synthetic = synthetic_pool
    export = _export(synthetic.user_id, fmt, "books", (), ALL_BOOKS, [synthetic.library_id])
    assert await _render(pool, export, "database") == await _render(pool, export, "python")


@pytest.mark.parametrize("fmt", ["json", "csv", "md", "jsonl"])
@pytest.mark.parametrize(
    ("table", "column", "cast", "value"),
    [
        ("book_metadata", "authors_json", "text", '[{"name": "nul\\u0000"}]'),
        ("read_progress", "completed_at", "timestamptz", "infinity"),
    ],
)
async def test_fallback_from_the_middle_of_a_section(
    synthetic_pool: tuple[asyncpg.Pool, Any],
    fmt: str,
    table: str,
    column: str,
    cast: str,
    value: str,
) -> None:
    """A declined value deep in a large export: rows before it come from the database, the
    rest from Python, and the file is the reference's (for an infinite timestamp, whatever the
    reference makes of asyncpg's naive ``datetime.max``)."""
    pool, synthetic = synthetic_pool
    export = _export(synthetic.user_id, fmt, "books", (), ALL_BOOKS, [synthetic.library_id])
    async with pool.acquire() as conn:
        # Synthetic book n is the n-th in export order; 15,000 has a read_progress row.
        target = await conn.fetchval("SELECT id FROM books WHERE file_name = 'book-15000.cbz'")
        update = f"UPDATE {table} SET {column} = $2::text::{cast} WHERE book_id = $1"
        old = await conn.fetchval(f"SELECT {column}::text FROM {table} WHERE book_id = $1", target)
        await conn.execute(update, target, value)
    try:
        with pytest.MonkeyPatch.context() as mp:
            declined = _count_declines(mp)
            database = await _render(pool, export, "database")
        assert database == await _render(pool, export, "python")
        assert declined and 0 < declined[0] < 15_000
    finally:
        async with pool.acquire() as conn:
            await conn.execute(update, target, old)


async def test_progress_advances_during_the_copy(synthetic_pool: tuple[asyncpg.Pool, Any]) -> None:
    """rows_written grows chunk by chunk while COPY streams, and the first rows wake the
    heartbeat (so progress shows as soon as rows flow, not a heartbeat later)."""
    pool, synthetic = synthetic_pool
    export = _export(synthetic.user_id, "csv", "books", (), ALL_BOOKS, [synthetic.library_id])
    ctx = service.WorkerContext(Settings(), pool, None, None, "test")  # type: ignore[arg-type]
    progress = service.Progress()
    seen: list[int] = []
    woken: list[bool] = []

    async def write(data: bytes) -> None:
        seen.append(progress.rows)
        woken.append(progress.wake.is_set())

    assert await service._render(ctx, export, progress, write, "database") == 20_000
    during = [rows for rows in seen if 0 < rows < 20_000]
    assert len(set(during)) > 3 and during == sorted(during)
    assert any(woken)
    assert progress.total == 20_000


async def test_cancel_aborts_the_copy_and_the_pool_serves_on(
    synthetic_pool: tuple[asyncpg.Pool, Any],
) -> None:
    pool, synthetic = synthetic_pool
    export = _export(synthetic.user_id, "json", "books", (), ALL_BOOKS, [synthetic.library_id])

    class Stop(Exception):
        pass

    ctx = service.WorkerContext(Settings(), pool, None, None, "test")  # type: ignore[arg-type]
    progress = service.Progress()
    written: list[bytes] = []

    async def write(data: bytes) -> None:
        written.append(data)
        if sum(len(w) for w in written) > 200:
            progress.halt(Stop)  # type: ignore[arg-type]

    with pytest.raises(Stop):
        await service._render(ctx, export, progress, write, "database")
    # Stopped after the first chunk, long before the 20,000 rows.
    assert 0 < progress.rows < 5000
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1


def test_the_setting_chooses_the_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.renderer_for(Settings()) == "database"
    monkeypatch.setenv("EXPORTS_RENDER_IN_DATABASE", "false")
    assert service.renderer_for(Settings()) == "python"


SMALL_BOOKS = 80


@pytest.fixture(scope="module")
async def small_catalog(real_servers: Servers) -> tuple[str, Any]:
    """80 books: with one narrow field a section's whole ``COPY`` (its rows, CopyDone,
    CommandComplete and ReadyForQuery) is about 2 KB, one flush of the server's 8 KB send
    buffer, so asyncpg has all of it before the sink sees the first chunk."""
    url, synthetic = await seeded_database(
        real_servers, lambda c: build_synthetic(c, series=4, books=SMALL_BOOKS)
    )
    return url, synthetic


@pytest.fixture
async def small_pool(small_catalog: tuple[str, Any]) -> AsyncIterator[asyncpg.Pool]:
    """A pool per test: a test that finds a hang terminates it to get control back."""
    pool = await asyncpg.create_pool(small_catalog[0], min_size=1, max_size=2)
    assert pool is not None
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), 10)
        except TimeoutError:
            pool.terminate()


async def _ends(pool: asyncpg.Pool, run: Awaitable[Any]) -> asyncio.Task[Any]:
    """Run ``run`` and return its ended task; fail if it is still running after 20 s.

    A cancel (``asyncio.timeout``) would not get control back from a wait for a cancel
    acknowledgement that never comes: every ``finally`` on the way out (the outer ROLLBACK,
    the pool's reset) waits again. Terminating the pool's connections ends those waits, so
    the suite never hangs.
    """
    task = asyncio.ensure_future(run)
    done, _ = await asyncio.wait({task}, timeout=20)
    if not done:
        pool.terminate()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        pytest.fail("the export was still running 20 s after its sink failed (hung)")
    return task


async def _discard(data: bytes) -> None:
    return None


@pytest.mark.parametrize("fmt", ["json", "csv", "md"])
@pytest.mark.parametrize("failure", ["cancel", "upload"])
async def test_a_sink_failure_once_the_copy_arrived_whole_ends_the_export(
    small_pool: asyncpg.Pool, small_catalog: tuple[str, Any], fmt: str, failure: str
) -> None:
    """The owner cancels (``on_rows`` raises after the chunk) or the upload fails (``write``
    raises) on the first and only chunk of a ``COPY`` asyncpg already holds whole: the export
    ends with that very error (not a database error, so it is reported as what it is), and the
    pool serves the next export. asyncpg 0.32 used to wait forever here for the acknowledgement
    of a cancel request sent after the server had finished (see ``copy``'s docstring)."""
    _, synthetic = small_catalog
    export = _export(synthetic.user_id, fmt, "books", (), ("title",), [synthetic.library_id])
    ctx = service.WorkerContext(Settings(), small_pool, None, None, "test")  # type: ignore[arg-type]
    progress = service.Progress()
    writes = 0

    class UploadFailed(Exception):
        pass

    async def write(data: bytes) -> None:
        nonlocal writes
        writes += 1
        # The file's start and the section's start come first: the third write is COPY's.
        if writes == 3:
            if failure == "upload":
                raise UploadFailed("the object store refused the part")
            progress.halt(service.ExportCancelled)

    task = await _ends(small_pool, service._render(ctx, export, progress, write, "database"))
    with pytest.raises(UploadFailed if failure == "upload" else service.ExportCancelled):
        task.result()
    if failure == "cancel":
        # The one chunk held every row: the COPY had arrived whole, the case that hung.
        assert progress.rows == SMALL_BOOKS
    # The worker goes on: the next export on the same pool completes.
    again = await _ends(
        small_pool, service._render(ctx, export, service.Progress(), _discard, "database")
    )
    assert again.result() == SMALL_BOOKS
    async with small_pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1


async def test_a_copy_its_sink_abandoned_ends_its_connection_and_session(
    small_catalog: tuple[str, Any],
) -> None:
    """``copy_section`` on a connection of its own: the sink's error comes out, the connection
    is closed (asyncpg would otherwise wait for a cancel acknowledgement that never comes) and
    the server's session ends with it, so no idle transaction is left holding a snapshot."""
    url, synthetic = small_catalog
    section_plan = render.plan("books", ["title"], "csv", {"title": "Title"})
    scope = catalog.Scope(synthetic.user_id, [synthetic.library_id])
    encoder = render.make_encoder("csv", "books")

    class Refused(Exception):
        pass

    async def write(data: bytes) -> None:
        raise Refused

    conn = await asyncpg.connect(url)
    observer = await asyncpg.connect(url)
    try:
        pid = conn.get_server_pid()
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with pytest.raises(Refused):
            await copy.copy_section(conn, section_plan, scope, encoder, write, lambda n: None)
        assert conn.is_closed()
        for _ in range(200):
            if not await observer.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the server session of the abandoned COPY is still there")
    finally:
        conn.terminate()
        await observer.close()
