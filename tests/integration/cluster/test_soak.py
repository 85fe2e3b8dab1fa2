"""Soak on the cluster: 300 exports by 20 users while one part after another is killed (a
worker, a NATS server, an api, a volume server, a janitor), every few seconds, in turn.

0 lost, 0 stuck, every file matches its SHA-256, objects == rows.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.cli.cluster import Cluster, start_cluster
from services.cli.synthetic import build_synthetic
from tests.conftest import new_user
from tests.integration.cluster.conftest import (
    CLUSTER_ENV,
    URL,
    Rig,
    verify_bucket_matches_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 20
PER_USER = 15
# Each user submits one export every PACE seconds, so the run outlasts a whole round of kills
# (every part in VICTIMS killed at least once while exports are in flight).
PACE = 8.0
VICTIMS = (
    "worker-1", "nats-1", "api-1", "volume-1", "janitor-1",
    "worker-2", "nats-2", "api-2", "volume-2", "janitor-2",
    "worker-3", "nats-3", "volume-3",
)  # fmt: skip


@pytest.fixture(scope="module")
def cluster(cluster_root: Path) -> Iterator[Cluster]:
    # Every user's 15 exports are kept (no eviction), so rows and objects can be compared.
    env = {
        **CLUSTER_ENV,
        "EXPORTS_MAX_COMPLETED_PER_USER": str(PER_USER),
        "EXPORTS_SWEEP_INTERVAL_SECONDS": "10",
    }
    running = start_cluster(cluster_root, env=env)
    try:
        yield running
    finally:
        running.stop()


async def test_soak_with_one_part_killed_every_few_seconds(rig: Rig) -> None:
    cluster = rig.cluster
    users = [await new_user(cluster.database_url) for _ in range(USERS)]
    conn = await asyncpg.connect(cluster.database_url)
    try:
        soak = await build_synthetic(conn, series=200, books=4000, username="soak")
    finally:
        await conn.close()
    rng = random.Random(11)
    requests = [
        {
            "format": rng.choice(["json", "csv", "md", "jsonl"]),
            "exportType": "books" if i % 5 == 0 else "series",
            "libraryIds": [str(soak.library_id)],
            "preset": rng.choice(["llm", "all"]),
        }
        for i in range(USERS * PER_USER)
    ]
    rng_pace = random.Random(12)
    created: dict[str, uuid.UUID] = {}
    lock = threading.Lock()
    stop = threading.Event()
    kills: list[str] = []
    errors: list[str] = []

    def chaos() -> None:
        turn = 0
        while not stop.wait(3.0):
            victim = VICTIMS[turn % len(VICTIMS)]
            try:
                cluster.kill(victim)
                kills.append(victim)
                cluster.start(victim)
            except Exception as err:  # reported by the test, never swallowed
                errors.append(f"{victim}: {err}")
                return
            turn += 1

    def submit(index: int) -> None:
        user = users[index]
        clients = [rig.client(user, api=0), rig.client(user, api=1)]
        try:
            for n, body in enumerate(requests[index * PER_USER : (index + 1) * PER_USER]):
                if n:
                    time.sleep(PACE * (0.5 + rng_pace.random()))
                # The same key on every retry: an api killed after its insert answers nothing,
                # the retry (on either api) gets the same export back.
                key = f"soak-{user}-{n}"
                attempt = 0
                while True:
                    client = clients[attempt % 2]
                    attempt += 1
                    try:
                        response = client.post(URL, json=body, headers={"Idempotency-Key": key})
                    except httpx.HTTPError:
                        time.sleep(0.3)
                        continue
                    if response.status_code == 202:
                        with lock:
                            created[response.json()["id"]] = user
                        break
                    assert response.status_code in (409, 503), response.text
                    time.sleep(0.3)
        finally:
            for client in clients:
                client.close()

    started = time.monotonic()
    monkey = threading.Thread(target=chaos)
    monkey.start()
    submitters = [threading.Thread(target=submit, args=(i,)) for i in range(USERS)]
    for thread in submitters:
        thread.start()
    try:
        for thread in submitters:
            await asyncio.to_thread(thread.join)
        conn = await asyncpg.connect(cluster.database_url)
        try:
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                active = await conn.fetchval(
                    "SELECT count(*) FROM exports.exports WHERE user_id = ANY($1::uuid[])"
                    " AND status IN ('pending', 'running')",
                    users,
                )
                if active == 0:
                    break
                await asyncio.sleep(1)
        finally:
            await conn.close()
    finally:
        stop.set()
        await asyncio.to_thread(monkey.join)
    elapsed = time.monotonic() - started
    assert not errors, errors
    assert set(kills) == set(VICTIMS), f"a whole round of kills: {kills}"
    assert len(created) == USERS * PER_USER
    rows = await verify_bucket_matches_rows(rig, users)
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    assert {str(r["id"]) for r in rows} == set(created), "0 lost, none extra"
    assert by_status == {"completed": USERS * PER_USER}, by_status
    retried = sum(1 for r in rows if r["attempt"] > 1)
    summary: dict[str, Any] = {
        "exports": len(created),
        "users": USERS,
        "seconds": round(elapsed, 1),
        "kills": len(kills),
        "killed": sorted(set(kills)),
        "retried": retried,
    }
    print(f"\ncluster soak: {summary}")
