"""Soak: 200 exports from 10 users on 3 workers while one worker is killed every few seconds."""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from typing import Any

import asyncpg
import pytest

from services.cli.synthetic import build_synthetic
from tests.integration.lifecycle.conftest import URL, Catalog, Restartable, fresh_user, objects
from tests.system import System

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 10
PER_USER = 20
KEPT = 10  # EXPORTS_MAX_COMPLETED_PER_USER's default


async def test_soak_with_a_worker_killed_every_few_seconds(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system: System = system_factory(
        big_catalog.database_url,
        "api",
        "janitor",
        EXPORTS_SWEEP_INTERVAL_SECONDS="5",
        EXPORTS_MAX_DELIVER="5",
    )
    for n in range(3):
        system.start_one("worker", f"worker-{n}")
    users = [await fresh_user(big_catalog.database_url) for _ in range(USERS)]
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        soak = await build_synthetic(conn, series=500, books=10_000, username="soak")
    finally:
        await conn.close()
    library = str(soak.library_id)
    rng = random.Random(7)
    requests = [
        {
            "format": rng.choice(["json", "csv", "md"]),
            "exportType": rng.choice(["series", "books"]),
            "libraryIds": [library],
            "preset": rng.choice(["llm", "all"]),
        }
        for _ in range(USERS * PER_USER)
    ]
    # Each worker lives ~9 s between kills and an export gets 5 attempts, so exports must be
    # well within that: series exports (500 rows) and, one in four, books exports (10,000 rows).
    for i, body in enumerate(requests):
        body["exportType"] = "books" if i % 4 == 0 else "series"
    created: dict[str, Any] = {}
    stop = threading.Event()
    kills = 0

    def chaos() -> None:
        nonlocal kills
        victim = 0
        while not stop.wait(3.0):
            key = f"worker-{victim % 3}"
            system.stop_one(key, kill=True)
            kills += 1
            system.start_one("worker", key)
            victim += 1

    def submit(user_index: int) -> None:
        user = users[user_index]
        with system.client(user) as client:
            for body in requests[user_index * PER_USER : (user_index + 1) * PER_USER]:
                while True:
                    response = client.post(URL, json=body)
                    if response.status_code == 202:
                        created[response.json()["id"]] = (user, body)
                        break
                    assert response.status_code == 409, response.text
                    time.sleep(0.3)

    started = time.monotonic()
    monkey = threading.Thread(target=chaos)
    monkey.start()
    submitters = [threading.Thread(target=submit, args=(i,)) for i in range(USERS)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    deadline = time.monotonic() + 900
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        while time.monotonic() < deadline:
            active = await conn.fetchval(
                "SELECT count(*) FROM exports.exports WHERE user_id = ANY($1::uuid[]) AND status IN ('pending', 'running')",
                users,
            )
            if active == 0:
                break
            await asyncio.sleep(1)
        stop.set()
        monkey.join()
        elapsed = time.monotonic() - started
        # Settled: every deletion finished (no tombstone: a worker killed mid-eviction leaves
        # one, which the next sweep finishes at once) and the cap applied to every user (the
        # last completions' evictions ran, by their worker or by the sweep). Only then can rows
        # and objects be compared without racing a deletion in flight.
        settle_by = time.monotonic() + 60
        while True:
            tombstones = await conn.fetchval(
                "SELECT count(*) FROM exports.deletions WHERE user_id = ANY($1::uuid[])", users
            )
            over_cap = await conn.fetchval(
                "SELECT count(*) FROM (SELECT user_id FROM exports.exports"
                " WHERE user_id = ANY($1::uuid[]) AND status = 'completed'"
                " GROUP BY user_id HAVING count(*) > $2) o",
                users,
                KEPT,
            )
            if (tombstones, over_cap) == (0, 0):
                break
            assert time.monotonic() < settle_by, (
                f"not settled: {tombstones} deletions unfinished, {over_cap} users over the cap"
            )
            await asyncio.sleep(0.5)
        settled = time.monotonic() - started - elapsed
        rows = await conn.fetch(
            "SELECT id, user_id, status, sha256, object_key, attempt, error FROM exports.exports"
            " WHERE user_id = ANY($1::uuid[])",
            users,
        )
    finally:
        await conn.close()
    assert len(created) == USERS * PER_USER
    statuses = {r["status"] for r in rows}
    failed = [dict(r) for r in rows if r["status"] != "completed"]
    # max_completed_per_user (10) evicts older completed exports as new ones finish.
    assert not failed, [(r["status"], r["attempt"], r["error"]) for r in failed][:5]
    assert statuses == {"completed"}
    assert len(rows) == USERS * KEPT
    keys = {r["object_key"]: r for r in rows}
    stored = {k for u in users for k in objects(restartable, f"exports/{u}/")}
    assert stored == set(keys), "every object has a row and every completed row an object"
    store = restartable.store()
    for key, row in keys.items():
        response = store.get_object("codex-exports", key)
        try:
            digest = hashlib.sha256(response.read()).hexdigest()
        finally:
            response.close()
            response.release_conn()
        assert digest == row["sha256"]
    retried = sum(1 for r in rows if r["attempt"] > 1)
    finished = system.log("janitor").count("finished a deletion left unfinished")
    print(
        f"\nsoak: {len(created)} exports by {USERS} users on 3 workers in {elapsed:.1f} s;"
        f" {kills} worker kills; {len(rows)} kept (cap 10/user), all completed and verified;"
        f" {retried} of the kept ones needed a takeover; {finished} deletions finished by the"
        f" janitor; settled {settled:.1f} s after the last export"
    )
