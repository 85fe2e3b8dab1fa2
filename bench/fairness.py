"""Fairness (SPEC §14, issue #16): small exports of other users while large exports take every
large slot.

Two worker processes of ``EXPORTS_WORKER_CONCURRENCY`` 2 (four large slots, and their
``EXPORTS_WORKER_SMALL_SLOTS`` small ones) run ``large_count`` exports of every field of the
main catalog's books by one user; once all of them are ``running``, a small export (a series
export of a library of fewer than 1,000 rows) is created every ``interval`` seconds, each by
another user, for as long as every large export is still running (at most ``max_small``).
Then the remaining large exports are cancelled: their figures are not this scenario's.

Figures from the database's clock: a small export's *wait* is ``started_at - created_at`` (its
claim), its *finish* ``completed_at - created_at``; the target is wait p95 < 2 s and finish p95
< 5 s. With ``baseline``, the same scenario runs again with the small lane turned off
(``EXPORTS_SMALL_EXPORT_ROWS=0``: every export in the one large lane, as before lanes), for
the figure lanes are compared with; its small exports wait for a large one to end, so it only
submits ``baseline_small`` of them and waits for them to finish.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg

from bench.env import EXPORTS_URL, Services

WORKERS = 2


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _figures(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(_percentile(values, 50), 3),
        "p95": round(_percentile(values, 95), 3),
        "max": round(max(values), 3),
    }


async def _statuses(conn: asyncpg.Connection, ids: list[str]) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT id::text, status FROM exports.exports WHERE id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids],
    )
    return {r["id"]: r["status"] for r in rows}


async def _scenario(
    services: Services,
    big_user: uuid.UUID,
    big_library: uuid.UUID,
    small_users: list[uuid.UUID],
    small_library: uuid.UUID,
    *,
    large_count: int,
    interval: float,
    max_small: int,
    wait_for_small: float,
) -> dict[str, Any]:
    large_body = {
        "format": "json",
        "exportType": "books",
        "libraryIds": [str(big_library)],
        "preset": "all",
    }
    small_body = {
        "format": "json",
        "exportType": "series",
        "libraryIds": [str(small_library)],
        "preset": "llm",
    }
    conn = await asyncpg.connect(services.database_url)
    clients = {u: services.async_client(u) for u in {big_user, *small_users}}
    try:
        large: list[str] = []
        for _ in range(large_count):
            response = await clients[big_user].post(EXPORTS_URL, json=large_body)
            response.raise_for_status()
            large.append(response.json()["id"])
        deadline = time.monotonic() + 120
        while set((await _statuses(conn, large)).values()) != {"running"}:
            if time.monotonic() > deadline:
                raise RuntimeError("the large exports did not all start")
            await asyncio.sleep(0.2)
        small: list[str] = []
        submitted_while_all_large_ran = 0
        next_at = time.monotonic()
        while len(small) < max_small:
            if set((await _statuses(conn, large)).values()) != {"running"}:
                break
            user = small_users[len(small) % len(small_users)]
            response = await clients[user].post(EXPORTS_URL, json=small_body)
            response.raise_for_status()
            small.append(response.json()["id"])
            submitted_while_all_large_ran += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        deadline = time.monotonic() + wait_for_small
        while time.monotonic() < deadline:
            states = await _statuses(conn, small)
            if all(s in ("completed", "failed", "cancelled") for s in states.values()):
                break
            await asyncio.sleep(0.25)
        large_states = await _statuses(conn, large)
        for export_id, status in large_states.items():
            if status in ("pending", "running"):
                await clients[big_user].post(f"{EXPORTS_URL}/{export_id}/cancel")
        rows = await conn.fetch(
            "SELECT status, lane, extract(epoch FROM started_at - created_at) AS wait,"
            " extract(epoch FROM completed_at - created_at) AS finish,"
            " completed_at <= (SELECT min(coalesce(completed_at, now())) FROM exports.exports"
            "   WHERE id = ANY($2::uuid[])) AS before_any_large_ended"
            " FROM exports.exports WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in small],
            [uuid.UUID(i) for i in large],
        )
        large_rows = await conn.fetch(
            "SELECT rows_written, rows_total, lane FROM exports.exports WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in large],
        )
    finally:
        for client in clients.values():
            await client.aclose()
        await conn.close()
    completed = [r for r in rows if r["status"] == "completed"]
    return {
        "large_exports": large_count,
        "large_lanes": sorted({r["lane"] for r in large_rows}),
        "large_rows_written_when_cancelled": sorted(int(r["rows_written"]) for r in large_rows),
        "small_submitted": len(small),
        "small_submitted_while_every_large_ran": submitted_while_all_large_ran,
        "small_completed": len(completed),
        "small_not_completed": len(rows) - len(completed),
        "small_lanes": sorted({r["lane"] for r in rows}),
        "small_completed_before_any_large_ended": sum(
            1 for r in completed if r["before_any_large_ended"]
        ),
        "wait_seconds": _figures([float(r["wait"]) for r in completed if r["wait"] is not None]),
        "finish_seconds": _figures([float(r["finish"]) for r in completed]),
    }


def _run(services: Services, *args: Any, lanes: bool, **kwargs: Any) -> dict[str, Any]:
    services.stop_all()
    env = {"EXPORTS_MAX_CONCURRENT_PER_USER": "20", "EXPORTS_STORAGE_CAP_BYTES": str(1 << 40)}
    if not lanes:
        env["EXPORTS_SMALL_EXPORT_ROWS"] = "0"
    services.extra_env.update(env)
    try:
        services.start("api")
        for n in range(WORKERS):
            services.start("worker", f"fair-worker-{n}", EXPORTS_WORKER_CONCURRENCY="2")
        time.sleep(3)  # the workers' start-up (pools, bucket, consumers)
        return asyncio.run(_scenario(services, *args, **kwargs))
    finally:
        services.stop_all()
        for key in env:
            services.extra_env.pop(key, None)


def measure(
    services: Services,
    big_user: uuid.UUID,
    big_library: uuid.UUID,
    small_users: list[uuid.UUID],
    small_library: uuid.UUID,
    *,
    large_count: int = 4,
    interval: float = 1.0,
    max_small: int = 120,
    baseline: bool = True,
    baseline_small: int = 5,
) -> dict[str, Any]:
    args = (big_user, big_library, small_users, small_library)
    results: dict[str, Any] = {
        "workers": WORKERS,
        "worker_concurrency": 2,
        "interval_seconds": interval,
        "lanes": _run(
            services,
            *args,
            lanes=True,
            large_count=large_count,
            interval=interval,
            max_small=max_small,
            wait_for_small=60,
        ),
    }
    if baseline:
        results["no_lanes"] = _run(
            services,
            *args,
            lanes=False,
            large_count=large_count,
            interval=interval,
            max_small=baseline_small,
            wait_for_small=600,
        )
    return results


def verdict(figures: dict[str, Any]) -> bool:
    """wait p95 < 2 s and finish p95 < 5 s, every small export completed."""
    wait, finish = figures.get("wait_seconds", {}), figures.get("finish_seconds", {})
    return bool(
        wait
        and finish
        and wait["p95"] < 2
        and finish["p95"] < 5
        and figures["small_not_completed"] == 0
    )
