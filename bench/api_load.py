"""The api under 50 concurrent clients, and the time from create to ``running``.

Mixed load: every client is its own user and loops over create, list, get (its latest
export), the field catalog and ``/healthz`` (the yardstick, measured in the same run). Creates
answered 409 (the per-user limit of 3 active exports) are counted as expected, not as errors:
each client creates about once a second, and the worker finishes those small exports quickly,
so most creates are accepted. The load generator (httpx, asyncio) runs in the benchmark
process on the same two cores as the api, the worker and the servers.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx

from bench.env import EXPORTS_URL, Services, stamp_seconds, wait_for

# Relative weights of the operations each client picks from.
MIX = {"create": 1, "list": 3, "get": 3, "fields": 2, "healthz": 2}


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _client(
    services: Services,
    user: uuid.UUID,
    library: uuid.UUID,
    deadline: float,
    seed: int,
    out: dict[str, list[float]],
    errors: dict[str, int],
    refused: list[int],
) -> None:
    rng = random.Random(seed)
    ops = [op for op, weight in MIX.items() for _ in range(weight)]
    body = {
        "format": "json",
        "exportType": "series",
        "libraryIds": [str(library)],
        "fields": ["title"],
    }
    async with services.async_client(user, limits=httpx.Limits(max_connections=1)) as client:
        first = await client.post(EXPORTS_URL, json=body)
        latest = first.json()["id"]
        while time.monotonic() < deadline:
            op = rng.choice(ops)
            started = time.monotonic()
            try:
                if op == "create":
                    response = await client.post(EXPORTS_URL, json=body)
                    if response.status_code == 202:
                        latest = response.json()["id"]
                    elif response.status_code == 409:
                        refused[0] += 1
                        response = None  # expected: counted, not timed as a success
                elif op == "list":
                    response = await client.get(EXPORTS_URL)
                elif op == "get":
                    response = await client.get(f"{EXPORTS_URL}/{latest}")
                elif op == "fields":
                    response = await client.get(f"{EXPORTS_URL}/fields")
                else:
                    response = await client.get("/healthz")
            except httpx.HTTPError:
                errors[op] += 1
                continue
            elapsed = time.monotonic() - started
            if response is None:
                continue
            if response.status_code >= 400:
                errors[op] += 1
                continue
            out[op].append(elapsed)


async def load(
    services: Services, users: list[uuid.UUID], library: uuid.UUID, seconds: float
) -> dict[str, Any]:
    out: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    refused = [0]
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(
        *(
            _client(services, user, library, deadline, i, out, errors, refused)
            for i, user in enumerate(users)
        )
    )
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {
        "clients": len(users),
        "seconds": round(elapsed, 1),
        "errors": dict(errors),
        "creates_refused_409": refused[0],
    }
    for op, values in sorted(out.items()):
        result[op] = {
            "count": len(values),
            "rps": round(len(values) / elapsed, 1),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p99_ms": round(_percentile(values, 99) * 1000, 1),
        }
    health = result.get("healthz", {}).get("p99_ms")
    if health:
        result["p99_over_healthz_p99"] = {
            op: round(result[op]["p99_ms"] / health, 2)
            for op in ("list", "get", "fields")
            if op in result
        }
    result["total_rps"] = round(sum(len(v) for v in out.values()) / elapsed, 1)
    return result


def create_to_running(
    services: Services, user: uuid.UUID, library: uuid.UUID, count: int
) -> dict[str, Any]:
    """Sequential creates on an idle system; started_at - created_at, both the database's clock."""
    latencies: list[float] = []
    body = {
        "format": "csv",
        "exportType": "series",
        "libraryIds": [str(library)],
        "fields": ["title"],
    }
    with services.client(user) as client:
        for _ in range(count):
            created = client.post(EXPORTS_URL, json=body)
            created.raise_for_status()
            export_id = created.json()["id"]
            done = wait_for(client, export_id, timeout=60, interval=0.05)
            latencies.append(stamp_seconds(done["startedAt"]) - stamp_seconds(done["createdAt"]))
            client.delete(f"{EXPORTS_URL}/{export_id}")
            time.sleep(0.3)  # idle between creates
    return {
        "count": count,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p90_ms": round(_percentile(latencies, 90) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }
