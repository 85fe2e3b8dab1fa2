"""Fairness lanes (SPEC §14, shared/lanes.py) on real NATS, PostgreSQL and S3: a worker whose
two large slots are busy with large exports still runs another user's small export at once,
in its small lane, and without lanes the same small export waits for a large one to end."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from faststream.nats import NatsBroker

from services.cli.synthetic import SyntheticCatalog, build_synthetic
from shared import outbox
from shared import repository as exports_repo
from shared.catalog_query import COUNT_BOTH, Scope, args, count_rows_at_most
from shared.formats import ExportFormat, ExportType
from shared.streams import ensure_stream
from shared.subjects import REQUESTED, REQUESTED_SMALL, STREAM
from tests.conftest import new_user
from tests.integration.lifecycle.conftest import (
    URL,
    Catalog,
    Restartable,
    big_books_request,
    create,
    wait_until,
)
from tests.system import wait_for_export

pytestmark = pytest.mark.integration

# Two large slots, one small slot; the large exports are Excel files of every field of 60,000
# books (tens of seconds here), so both are still running when a small export could finish.
LANES_ENV = {"EXPORTS_WORKER_CONCURRENCY": "2", "EXPORTS_WORKER_SMALL_SLOTS": "1"}


@pytest.fixture(scope="module")
async def small_library(big_catalog: Catalog) -> SyntheticCatalog:
    """A 20-series library beside the big one (its own user; any user may read it)."""
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        return await build_synthetic(conn, series=20, books=100, username="fair-small")
    finally:
        await conn.close()


def _small_request(library: SyntheticCatalog) -> dict[str, Any]:
    return {
        "format": "json",
        "exportType": "series",
        "libraryIds": [str(library.library_id)],
        "fields": ["title"],
    }


def _status(client: httpx.Client, export_id: str) -> str:
    status: str = client.get(f"{URL}/{export_id}").json()["status"]
    return status


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _lanes(database_url: str, ids: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id::text, lane FROM exports.exports WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await conn.close()
    return {row["id"]: row["lane"] for row in rows}


async def _last_on(restartable: Restartable, subject: str) -> dict[str, Any]:
    nc = await nats.connect(restartable.nats.url)
    try:
        msg = await nc.jetstream().get_last_msg(STREAM, subject)
    finally:
        await nc.close()
    body: dict[str, Any] = json.loads(msg.data)
    return body


def _start_two_large(client: httpx.Client, catalog: Catalog) -> list[str]:
    large = [create(client, big_books_request(catalog, "xlsx"))["id"] for _ in range(2)]
    wait_until(lambda: all(_status(client, i) == "running" for i in large), timeout=60)
    return large


def test_a_small_export_completes_while_two_large_ones_hold_every_large_slot(
    restartable: Restartable,
    big_catalog: Catalog,
    small_library: SyntheticCatalog,
    system_factory: Any,
) -> None:
    system = system_factory(big_catalog.database_url, **LANES_ENV)
    other = asyncio.run(new_user(big_catalog.database_url))
    with (
        system.client(big_catalog.synthetic.user_id) as big_client,
        system.client(other) as small_client,
    ):
        large = _start_two_large(big_client, big_catalog)
        small = create(small_client, _small_request(small_library))["id"]
        done = wait_for_export(small_client, small, timeout=60)
        assert done["status"] == "completed"
        assert done["rowCount"] == 20
        # It ran while both large exports still held the two large slots.
        assert [_status(big_client, i) for i in large] == ["running", "running"]
        lanes = asyncio.run(_lanes(big_catalog.database_url, [*large, small]))
        assert lanes == {large[0]: "large", large[1]: "large", small: "small"}
        # Each went out on its lane's subject, with its lane in the event.
        last_small = asyncio.run(_last_on(restartable, REQUESTED_SMALL))
        assert (last_small["export_id"], last_small["lane"]) == (small, "small")
        last_large = asyncio.run(_last_on(restartable, REQUESTED))
        assert (last_large["export_id"], last_large["lane"]) == (large[1], "large")
        for export_id in large:
            assert big_client.post(f"{URL}/{export_id}/cancel").status_code == 200
        for export_id in large:
            assert wait_for_export(big_client, export_id)["status"] == "cancelled"
    log = system.log("worker")
    assert '"lane": "small"' in log and '"lane": "large"' in log


def test_without_lanes_the_small_export_waits_for_a_large_one(
    big_catalog: Catalog, small_library: SyntheticCatalog, system_factory: Any
) -> None:
    # The control: the same scene with the small lane turned off (every export is large).
    system = system_factory(big_catalog.database_url, EXPORTS_SMALL_EXPORT_ROWS="0", **LANES_ENV)
    other = asyncio.run(new_user(big_catalog.database_url))
    with (
        system.client(big_catalog.synthetic.user_id) as big_client,
        system.client(other) as small_client,
    ):
        large = _start_two_large(big_client, big_catalog)
        small = create(small_client, _small_request(small_library))["id"]
        done = wait_for_export(small_client, small, timeout=180)
        assert done["status"] == "completed"
        ended = [wait_for_export(big_client, i, timeout=180) for i in large]
        assert all(e["status"] == "completed" for e in ended)
        first_large_end = min(_stamp(e["completedAt"]) for e in ended)
        assert _stamp(done["startedAt"]) >= first_large_end
        assert asyncio.run(_lanes(big_catalog.database_url, [small])) == {small: "large"}


async def test_the_bounded_count_agrees_with_the_export_count(
    big_catalog: Catalog, small_library: SyntheticCatalog
) -> None:
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        user = big_catalog.synthetic.user_id
        big = Scope(user_id=user, library_ids=[big_catalog.synthetic.library_id])
        small = Scope(user_id=user, library_ids=[small_library.library_id])
        both = Scope(
            user_id=user,
            library_ids=[big_catalog.synthetic.library_id, small_library.library_id],
        )
        exact = await conn.fetchrow(COUNT_BOTH, *args(both))
        assert (exact["series"], exact["books"]) == (1220, 60_100)
        # Under the bound: exact, per type.
        assert await count_rows_at_most(conn, small, "series", 1000) == 20
        assert await count_rows_at_most(conn, small, "books", 1000) == 100
        assert await count_rows_at_most(conn, small, "both", 1000) == 120
        assert await count_rows_at_most(conn, small, "both", 120) == 120
        assert await count_rows_at_most(conn, small, "both", 121) == 120
        assert await count_rows_at_most(conn, both, "both", 100_000) == 61_320
        # At or over the bound: the bound, whatever the catalog's size.
        assert await count_rows_at_most(conn, big, "series", 1000) == 1000
        assert await count_rows_at_most(conn, big, "books", 1000) == 1000
        assert await count_rows_at_most(conn, small, "books", 100) == 100
        assert await count_rows_at_most(conn, small, "books", 50) == 50
    finally:
        await conn.close()


async def test_the_outbox_relay_publishes_each_row_to_its_lane(
    restartable: Restartable, big_catalog: Catalog, small_library: SyntheticCatalog
) -> None:
    # Rows whose publish at create was lost (left for the janitor's relay), one per lane.
    user = await new_user(big_catalog.database_url)
    nc = await nats.connect(restartable.nats.url)
    try:
        await ensure_stream(nc)
    finally:
        await nc.close()
    pool = await asyncpg.create_pool(big_catalog.database_url, min_size=1, max_size=2)
    broker = NatsBroker(restartable.nats.url)
    await broker.connect()
    try:
        ids: dict[str, uuid.UUID] = {}
        for lane in ("small", "large"):
            export_id = uuid.uuid4()
            now = datetime.now().astimezone()
            new = exports_repo.NewExport(
                id=export_id,
                user_id=user,
                format=ExportFormat.JSON,
                export_type=ExportType.SERIES,
                library_ids=[small_library.library_id],
                library_names=["Synthetic 100"],
                fields=["title"],
                book_fields=[],
                file_name=f"{lane}.json",
                object_key=f"exports/{user}/{export_id}/{lane}.json",
                created_at=now,
                expires_at=now.replace(year=now.year + 1),
                lane=lane,
            )
            async with pool.acquire() as conn:
                row, created = await exports_repo.insert_export(conn, new, max_active=10)
            assert created and row.lane == lane and row.published_at is None
            ids[lane] = export_id
        assert await outbox.relay(pool, broker, older_than_seconds=0) >= 2
        last_small = await _last_on(restartable, REQUESTED_SMALL)
        last_large = await _last_on(restartable, REQUESTED)
        assert (last_small["export_id"], last_small["lane"]) == (str(ids["small"]), "small")
        assert (last_large["export_id"], last_large["lane"]) == (str(ids["large"]), "large")
        published = await pool.fetchval(
            "SELECT count(*) FROM exports.exports WHERE id = ANY($1::uuid[])"
            " AND published_at IS NOT NULL",
            list(ids.values()),
        )
        assert published == 2
    finally:
        await broker.stop()
        await pool.close()
