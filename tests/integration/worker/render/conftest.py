"""The fixture catalog's full exports, read once for the encoder tests of every format."""

from __future__ import annotations

import asyncpg
import pytest

from services.worker import catalog
from shared.fields import ALL_BOOKS, ALL_SERIES, BOOK_FIELDS, SERIES_FIELDS, columns
from tests.conftest import Servers, create_database
from tests.fixture_catalog import FIXTURE, build
from tests.services.worker.render.samples import Sections


@pytest.fixture(scope="session")
async def fixture_sections(real_servers: Servers) -> dict[str, Sections]:
    """The fixture's full series and book exports (alice, every field), read once."""
    url = await create_database(real_servers)
    conn = await asyncpg.connect(url)
    try:
        await build(conn)
        sc = catalog.Scope(FIXTURE.users["alice"].id, FIXTURE.library_ids())
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            series = [
                r async for b in catalog.series_batches(conn, sc, list(ALL_SERIES), 4) for r in b
            ]
            books = [r async for b in catalog.book_batches(conn, sc, list(ALL_BOOKS), 4) for r in b]
    finally:
        await conn.close()
    return {
        "series": [("series", columns(ALL_SERIES, SERIES_FIELDS), series)],
        "books": [("books", columns(ALL_BOOKS, BOOK_FIELDS), books)],
    }
