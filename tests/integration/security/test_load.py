"""Many clients at once, as several users: creating, listing, downloading and deleting.

No 5xx, no export lost or stuck, and nobody ever sees another user's export. Half the clients
sign in with a Bearer token, half with an API key. Figures are printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from services.cli.synthetic import build_synthetic
from tests.conftest import Servers, new_user, seeded_database
from tests.integration.security.conftest import URL, SystemFactory, create_key
from tests.system import System

pytestmark = pytest.mark.integration
ENDED = ("completed", "failed", "cancelled")


@dataclass
class Tally:
    """Shared by every client thread (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    created: dict[str, str] = field(default_factory=dict)  # export id → user
    deleted: set[str] = field(default_factory=set)
    seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # user → ids listed
    problems: list[str] = field(default_factory=list)

    def record(self, call: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies[call].append(seconds)
            self.statuses[call][status] += 1
            if status >= 500:
                self.problems.append(f"{call} answered {status}")


def _call(tally: Tally, name: str, method: Any, url: str, **kwargs: Any) -> httpx.Response:
    started = time.perf_counter()
    response: httpx.Response = method(url, **kwargs)
    if name == "download":
        response.read()
    tally.record(name, time.perf_counter() - started, response.status_code)
    return response


def _client_loop(
    system: System,
    headers: dict[str, str],
    user: str,
    library: str,
    tally: Tally,
    stop_at: float,
    seed: int,
) -> None:
    rng = random.Random(seed)
    # Each client downloads and deletes only the exports it created: several clients of one user
    # deleting what a sibling is downloading would cut that download short (a race of the test's
    # own making, not of the system's).
    mine: set[str] = set()
    with httpx.Client(base_url=system.api_url, headers=headers, timeout=60) as client:
        try:
            while time.monotonic() < stop_at:
                fmt, kind = rng.choice(
                    [("json", "series"), ("csv", "books"), ("md", "series"), ("json", "both")]
                )
                body = {"format": fmt, "exportType": kind, "libraryIds": [library], "preset": "all"}
                created = _call(tally, "create", client.post, URL, json=body)
                if created.status_code == 202:
                    with tally.lock:
                        tally.created[created.json()["id"]] = user
                    mine.add(created.json()["id"])
                elif created.status_code != 409:
                    tally.problems.append(f"create: {created.status_code} {created.text[:200]}")

                listed = _call(tally, "list", client.get, URL)
                exports = listed.json()["exports"] if listed.status_code == 200 else []
                with tally.lock:
                    tally.seen[user].update(e["id"] for e in exports)
                    others = [i for i, u in tally.created.items() if u != user]
                done = [e for e in exports if e["status"] == "completed" and e["id"] in mine]
                if done:
                    export = rng.choice(done)
                    got = _call(tally, "download", client.get, f"{URL}/{export['id']}/download")
                    if (
                        got.status_code == 200
                        and hashlib.sha256(got.content).hexdigest() != export["sha256"]
                    ):
                        tally.problems.append(
                            f"download of {export['id']} does not match its sha256"
                        )
                    elif got.status_code != 200:
                        tally.problems.append(f"download: {got.status_code} {got.text[:200]}")
                if others:
                    # Someone else's export, by id: exactly "not found".
                    theirs = rng.choice(others)
                    probe = _call(tally, "probe", client.get, f"{URL}/{theirs}")
                    if probe.status_code != 404:
                        tally.problems.append(
                            f"user {user} got {probe.status_code} for another's export"
                        )
                if len(done) > 2:
                    victim = rng.choice(done)["id"]
                    gone = _call(tally, "delete", client.delete, f"{URL}/{victim}")
                    if gone.status_code == 204:
                        with tally.lock:
                            tally.deleted.add(victim)
                    else:
                        tally.problems.append(f"delete: {gone.status_code} {gone.text[:200]}")
        except httpx.HTTPError as err:
            with tally.lock:
                tally.problems.append(f"transport error: {err!r}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _report(tally: Tally, seconds: float, clients: int) -> str:
    total = sum(len(v) for v in tally.latencies.values())
    lines = [
        f"load: {clients} clients, {seconds:.1f} s, {total} requests, {total / seconds:.0f} req/s"
    ]
    for call, values in sorted(tally.latencies.items()):
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(tally.statuses[call].items()))
        lines.append(
            f"  {call:<8} n={len(values):>6}  p50={statistics.median(values) * 1000:7.1f} ms"
            f"  p99={_percentile(values, 0.99):7.1f} ms  [{codes}]"
        )
    return "\n".join(lines)


@dataclass
class LoadRig:
    system: System
    database_url: str
    library: str
    users: list[uuid.UUID]


@pytest.fixture(scope="module")
async def load_rig(real_servers: Servers, private_systems: SystemFactory) -> LoadRig:
    url, catalog = await seeded_database(
        real_servers, lambda c: build_synthetic(c, series=40, books=400)
    )
    users = [await new_user(url) for _ in range(5)]
    system = private_systems(
        url,
        # Nothing is evicted, so every export that is not deleted on purpose must be found.
        EXPORTS_MAX_COMPLETED_PER_USER="100000",
        EXPORTS_MAX_CONCURRENT_PER_USER="4",
        EXPORTS_WORKER_CONCURRENCY="4",
    )
    return LoadRig(system, url, str(catalog.library_id), users)


async def run_load(rig: LoadRig, clients: int, seconds: float) -> None:
    tally = Tally()
    keys = {user: create_key(rig.system, user, "load")["key"] for user in rig.users}
    threads = []
    started = time.monotonic()
    for n in range(clients):
        user = rig.users[n % len(rig.users)]
        headers = (
            {"Authorization": f"Bearer {rig.system.token(user)}"}
            if n % 2
            else {"X-API-Key": keys[user]}
        )
        threads.append(
            threading.Thread(
                target=_client_loop,
                args=(rig.system, headers, str(user), rig.library, tally, started + seconds, n),
                daemon=True,
            )
        )
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    elapsed = time.monotonic() - started
    print("\n" + _report(tally, elapsed, clients))
    assert not any(t.is_alive() for t in threads), "a client never finished"
    assert tally.problems == [], tally.problems[:20]
    assert tally.statuses["create"][202] > 0 and tally.statuses["download"][200] > 0

    # Drain: every export not deleted on purpose ends completed, owned by its creator.
    deadline = time.monotonic() + 120
    conn = await asyncpg.connect(rig.database_url)
    try:
        while True:
            rows = {
                str(r["id"]): r
                for r in await conn.fetch("SELECT id, user_id, status FROM exports.exports")
            }
            if all(r["status"] in ENDED for r in rows.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    kept = {i: u for i, u in tally.created.items() if i not in tally.deleted}
    assert set(rows) == set(kept), "exports lost or appeared from nowhere"
    stuck = {i: r["status"] for i, r in rows.items() if r["status"] != "completed"}
    assert stuck == {}
    assert all(str(rows[i]["user_id"]) == u for i, u in kept.items())
    for user, ids in tally.seen.items():
        foreign = {i for i in ids if tally.created.get(i) != user}
        assert foreign == set(), f"user {user} listed exports that are not theirs"


async def test_concurrent_clients_short(load_rig: LoadRig) -> None:
    await run_load(load_rig, clients=20, seconds=10)


@pytest.mark.slow
async def test_concurrent_clients_long(load_rig: LoadRig) -> None:
    await run_load(load_rig, clients=100, seconds=60)
