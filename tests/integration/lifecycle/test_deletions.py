"""Deletions cut short by a killed process, finished by the janitor at once (shared.retention).

The api is SIGKILLed in the middle of an owner's delete (the object store stopped, so the kill
lands after the row's DELETE, while the api retries the object's removal); a janitor started
afterwards finishes the deletion at its start-up, and a running one at its next sweep — without
waiting ``orphan_age_seconds`` (an hour here).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from shared import repository as exports_repo
from tests.integration.lifecycle.conftest import (
    URL,
    Catalog,
    Restartable,
    create,
    fresh_user,
    objects,
    wait_until,
)
from tests.system import wait_for_export

pytestmark = pytest.mark.integration


def _small(catalog: Catalog) -> dict[str, Any]:
    return {
        "format": "json",
        "libraryIds": [str(catalog.synthetic.library_id)],
        "fields": ["title"],
    }


@contextmanager
def _store_down(stack: Restartable) -> Iterator[None]:
    """The object store is stopped (connections refused) until the block ends."""
    stack.stop_s3()
    try:
        yield
    finally:
        stack.start_s3()


async def _state(database_url: str, export_id: str) -> tuple[bool, dict[str, str]]:
    """(the export's row exists, every tombstone by object key)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchval(
            "SELECT 1 FROM exports.exports WHERE id = $1", uuid.UUID(export_id)
        )
        tombs = await conn.fetch("SELECT object_key, reason FROM exports.deletions")
    finally:
        await conn.close()
    return row is not None, {t["object_key"]: t["reason"] for t in tombs}


async def _api_killed_mid_delete(
    stack: Restartable, catalog: Catalog, system_factory: Any
) -> tuple[Any, str, str]:
    """A completed export whose owner's delete was cut by a SIGKILL of the api; returns
    (system, export id, object key) with the row gone and the tombstone and object left."""
    system = system_factory(catalog.database_url, "api", "worker")
    user = await fresh_user(catalog.database_url)
    with system.client(user) as client:
        export = create(client, _small(catalog))
        assert wait_for_export(client, export["id"])["status"] == "completed"
    [key] = objects(stack, f"exports/{user}/{export['id']}/")
    answered: list[int] = []

    def delete() -> None:
        with system.client(user) as client:
            try:
                answered.append(client.delete(f"{URL}/{export['id']}", timeout=60).status_code)
            except httpx.HTTPError:
                pass  # the connection died with the api

    with _store_down(stack):
        caller = threading.Thread(target=delete)
        caller.start()
        deadline = time.monotonic() + 30
        while (await _state(catalog.database_url, export["id"]))[0]:
            assert time.monotonic() < deadline, "the api never deleted the row"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the api is now retrying the store's refusals
        system.stop_one("api", kill=True)
        await asyncio.to_thread(caller.join, 30)
    assert answered == []  # the api died before it answered
    return system, export["id"], key


async def test_an_api_killed_mid_delete_is_finished_by_the_janitor_at_its_start(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system, export_id, key = await _api_killed_mid_delete(restartable, big_catalog, system_factory)
    exists, tombs = await _state(big_catalog.database_url, export_id)
    assert not exists
    assert tombs == {key: "deleted"}
    assert key in objects(restartable, key)  # the file, which no row names any more

    system.start_one("janitor")  # hourly sweeps, hour-old orphans: only its start-up can do it
    await asyncio.to_thread(wait_until, lambda: objects(restartable, key) == [], 30)
    assert (await _state(big_catalog.database_url, export_id))[1] == {}
    assert "finished a deletion left unfinished (deleted)" in system.log("janitor")
    assert "sweep done" not in system.log("janitor")  # it was the start-up, not a sweep


async def test_a_deletion_cut_short_is_finished_by_the_next_sweep(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(
        big_catalog.database_url, "api", "worker", "janitor", EXPORTS_SWEEP_INTERVAL_SECONDS="2"
    )
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(client, _small(big_catalog))
        assert wait_for_export(client, export["id"])["status"] == "completed"
    [key] = objects(restartable, f"exports/{user}/{export['id']}/")
    pool = await asyncpg.create_pool(big_catalog.database_url, min_size=1, max_size=1)
    try:
        # An eviction whose process died right after its DELETE (step 1 of 3).
        assert await exports_repo.delete_any(pool, uuid.UUID(export["id"]), "completed_cap")
    finally:
        await pool.close()
    assert (await _state(big_catalog.database_url, export["id"]))[1] == {key: "completed_cap"}
    await asyncio.to_thread(wait_until, lambda: objects(restartable, key) == [], 20)
    assert (await _state(big_catalog.database_url, export["id"]))[1] == {}
    await asyncio.to_thread(
        wait_until,
        lambda: "finished a deletion left unfinished (completed_cap)" in system.log("janitor"),
        10,
    )
