"""The api's streamed download against reading the same object straight from the store."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import urllib3

from bench.env import BUCKET, EXPORTS_URL, Services, Stack, token


def via_api(services: Services, user_id: uuid.UUID, export_id: str) -> tuple[float, int]:
    """GET .../download, streamed and discarded, with the HTTP client the direct read uses
    (urllib3, as inside minio), so the two differ only in what serves the bytes."""
    size = 0
    pool = urllib3.PoolManager()
    started = time.monotonic()
    response = pool.request(
        "GET",
        f"{services.api_url}{EXPORTS_URL}/{export_id}/download",
        headers={"Authorization": f"Bearer {token(user_id)}"},
        preload_content=False,
    )
    try:
        if response.status != 200:
            raise RuntimeError(f"download answered {response.status}")
        for chunk in response.stream(1024 * 1024):
            size += len(chunk)
    finally:
        response.release_conn()
    return time.monotonic() - started, size


def direct(stack: Stack, object_key: str) -> tuple[float, int]:
    """The same object read with the minio client (one GET, 1 MiB reads), no api."""
    store = stack.store()
    size = 0
    started = time.monotonic()
    response = store.get_object(BUCKET, object_key)
    try:
        for chunk in response.stream(1024 * 1024):
            size += len(chunk)
    finally:
        response.close()
        response.release_conn()
    return time.monotonic() - started, size


def measure(
    services: Services,
    stack: Stack,
    user_id: uuid.UUID,
    done: dict[str, Any],
    object_key: str,
    reps: int,
) -> dict[str, Any]:
    api_runs: list[float] = []
    direct_runs: list[float] = []
    size = done["fileSizeBytes"]
    for _ in range(reps):
        seconds, got = direct(stack, object_key)
        assert got == size, (got, size)
        direct_runs.append(seconds)
        seconds, got = via_api(services, user_id, done["id"])
        assert got == size, (got, size)
        api_runs.append(seconds)
    api_median = statistics.median(api_runs)
    direct_median = statistics.median(direct_runs)
    return {
        "bytes": size,
        "api_mb_per_second_median": round(size / api_median / 1e6, 1),
        "direct_mb_per_second_median": round(size / direct_median / 1e6, 1),
        "ratio": round(direct_median / api_median, 3),
        "api_seconds_all": [round(s, 2) for s in api_runs],
        "direct_seconds_all": [round(s, 2) for s in direct_runs],
    }
