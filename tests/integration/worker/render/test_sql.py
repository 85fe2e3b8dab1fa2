"""The SQL value helpers (``services.worker.render.sql``) and the functions they call
(``shared/migrations/exports/0004_render_functions.sql``) against Python, value by value."""

from __future__ import annotations

import math
import random
import struct
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from services.worker.render import sql
from services.worker.render.encoder import rfc3339
from shared.catalog_query import exported_number
from tests.conftest import Servers, create_database
from tests.services.worker.render.samples import HOSTILE

pytestmark = pytest.mark.integration

WHITESPACE = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


@pytest.fixture(scope="module")
async def pool(real_servers: Servers) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database: the render functions are there."""
    p = await asyncpg.create_pool(await create_database(real_servers), min_size=1, max_size=2)
    assert p is not None
    try:
        yield p
    finally:
        await p.close()


async def _sql_values(pool: asyncpg.Pool, expr: str, values: list[Any], cast: str) -> list[Any]:
    """``expr`` (on ``{x}``) for each value, sent as text (asyncpg maps the extreme datetimes
    to infinity) and cast in SQL."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    param = "float8" if cast == "float8" else "text"
    query = (
        f"SELECT {expr.replace('{x}', f'u.x::{cast}')}"
        f" FROM unnest($1::{param}[]) WITH ORDINALITY u(x, i) ORDER BY u.i"
    )
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO'")
        return [r[0] for r in await conn.fetch(query, values)]


async def test_floats_print_as_python_does(pool: asyncpg.Pool) -> None:
    rng = random.Random(5)
    values = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(20000)]
    values += [rng.uniform(-1e17, 1e17) for _ in range(5000)]
    values += [round(rng.uniform(0, 100), 2) for _ in range(5000)]
    values += [float(n) for n in range(-1000, 1000)] + [2.0**e for e in range(-1074, 1024)]
    values += [x + 0.5 for x in (1e15, 2e15, 4.5e15, 9.9e15)] + [sys.float_info.max, -0.0]
    values += [math.nan, math.inf, -math.inf, 1e-4, 1e-5, 9.999999999999999e-5, -1.5e-5]
    values += [rng.uniform(0, 1) * 10 ** rng.randint(-8, -3) for _ in range(5000)]
    rendered = await _sql_values(pool, sql.float_text("{x}"), values, "float8")
    as_json = await _sql_values(pool, sql.json_number("{x}"), values, "float8")
    for value, text, json_text in zip(values, rendered, as_json, strict=True):
        number = exported_number(value)
        assert text == (None if number is None else repr(number)), value
        assert json_text == (None if number is None else orjson.dumps(number).decode()), value


async def test_timestamps_print_as_python_does(pool: asyncpg.Pool) -> None:
    rng = random.Random(7)
    low, high = (
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    )
    span = int((high - low).total_seconds())
    values = [
        low
        + timedelta(
            seconds=rng.randrange(span),
            microseconds=rng.choice([0, 1, 500000, 999999, rng.randrange(10**6)]),
        )
        for _ in range(5000)
    ]
    values += [low, high]
    rendered = await _sql_values(pool, sql.rfc3339("{x}"), values, "timestamptz")
    assert rendered == [rfc3339(v) for v in values]


async def test_json_strings_escape_as_orjson_does(pool: asyncpg.Pool) -> None:
    values = [chr(c) for c in range(1, 0x800)] + HOSTILE + ["\ud7ff\ue000\uffff\U0010ffff"]
    rendered = await _sql_values(pool, sql.json_string("{x}"), values, "text")
    assert rendered == [orjson.dumps(v).decode() for v in values]


async def test_py_strip_removes_what_str_strip_removes(pool: asyncpg.Pool) -> None:
    # Every code point (but the surrogates, which text cannot hold), on both ends of a value.
    stripped = await pool.fetch(
        "SELECT c FROM generate_series(1, $1::int) c WHERE (c < 55296 OR c > 57343)"
        " AND exports.py_strip(chr(c) || 'x' || chr(c)) = 'x' ORDER BY c",
        sys.maxunicode,
    )
    assert [r["c"] for r in stripped] == [
        c for c in range(1, sys.maxunicode + 1) if chr(c).isspace()
    ]
    rendered = await _sql_values(pool, "exports.py_strip({x})", HOSTILE, "text")
    assert rendered == [text.strip() for text in HOSTILE]


def test_sql_literals_mean_the_same_text() -> None:
    assert sql.lit("it's \\ \n") == "E'it\\'s \\\\ \n'"
    with pytest.raises(ValueError, match="NUL"):
        sql.lit("\x00")


async def test_literals_round_trip(pool: asyncpg.Pool) -> None:
    texts = ["it's", "back\\slash", "\\'", "tab\tnl\ncr\r", "😀", WHITESPACE]
    async with pool.acquire() as conn:
        for text in texts:
            assert await conn.fetchval(f"SELECT {sql.lit(text)}::text") == text
