"""A cluster per test module (``services/cli/cluster.py``): 3 NATS, replicated SeaweedFS,
PostgreSQL, 2 api, 3 workers, 2 janitors, on 127.0.0.1; and the checks every fault test makes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
from minio import Minio

from services.cli.cluster import Cluster, start_cluster
from services.cli.synthetic import SyntheticCatalog, build_synthetic
from shared.tokens import issue_token

URL = "/api/v1/user/exports/series"
BUCKET = "codex-exports"

# Fast failure detection, so a takeover happens within a test's time.
CLUSTER_ENV = {
    "EXPORTS_ACK_WAIT_SECONDS": "6",
    "EXPORTS_STALE_AFTER_SECONDS": "8",
    "EXPORTS_HEARTBEAT_SECONDS": "0.5",
    "EXPORTS_MAX_DELIVER": "6",
    "EXPORTS_BATCH_ROWS": "500",
    "EXPORTS_SWEEP_INTERVAL_SECONDS": "3600",
    "EXPORTS_LOG_LEVEL": "INFO",
    "EXPORTS_WORKER_CONCURRENCY": "2",
}

T = TypeVar("T")


@dataclass
class Rig:
    cluster: Cluster
    catalog: SyntheticCatalog

    def store(self) -> Minio:
        env = self.cluster.env
        return Minio(
            env["EXPORTS_S3_ENDPOINT"],
            access_key=env["EXPORTS_S3_ACCESS_KEY"],
            secret_key=env["EXPORTS_S3_SECRET_KEY"],
            secure=False,
        )

    def client(self, user_id: uuid.UUID, api: int = 0) -> httpx.Client:
        token = issue_token(
            user_id, "user", "reader", self.cluster.env["EXPORTS_JWT_SECRET"], 3600
        )[0]
        return httpx.Client(
            base_url=self.cluster.api_urls[api],
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def objects(self, prefix: str = "exports/") -> list[str]:
        return sorted(
            o.object_name or ""
            for o in self.store().list_objects(BUCKET, prefix=prefix, recursive=True)
        )


@pytest.fixture(scope="module")
def cluster_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="codex-exports-cluster-"))
    root.chmod(0o755)
    yield root
    if os.environ.get("KEEP_TEST_DATA") != "1":
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\ncluster data kept in {root}")


@pytest.fixture(scope="module")
def cluster(cluster_root: Path) -> Iterator[Cluster]:
    running = start_cluster(cluster_root, env=CLUSTER_ENV)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def rig(cluster: Cluster) -> Rig:
    conn = await asyncpg.connect(cluster.database_url)
    try:
        catalog = await build_synthetic(conn, series=400, books=20_000)
    finally:
        await conn.close()
    return Rig(cluster, catalog)


def wait_until(predicate: Callable[[], T], timeout: float = 120, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json=body)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def status(client: httpx.Client, export_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"{URL}/{export_id}").json()
    return body


def wait_done(client: httpx.Client, export_id: str, timeout: float = 240) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (s := status(client, export_id))["status"] in ("completed", "failed", "cancelled") and s
        ),
        timeout,
    )


def books_request(rig: Rig, fmt: str = "json") -> dict[str, Any]:
    return {
        "format": fmt,
        "exportType": "books",
        "libraryIds": [str(rig.catalog.library_id)],
        "preset": "all",
    }


async def verify_bucket_matches_rows(rig: Rig, users: list[uuid.UUID]) -> list[asyncpg.Record]:
    """Every completed row's file is in the bucket with its SHA-256, and the bucket holds
    nothing else under these users; returns the rows."""
    conn = await asyncpg.connect(rig.cluster.database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, user_id, status, sha256, object_key, row_count, attempt, error"
            " FROM exports.exports WHERE user_id = ANY($1::uuid[])",
            users,
        )
    finally:
        await conn.close()
    completed = {r["object_key"]: r for r in rows if r["status"] == "completed"}
    stored = {key for user in users for key in rig.objects(f"exports/{user}/")}
    assert stored == set(completed), "objects == completed rows"
    store = rig.store()
    for key, row in completed.items():
        response = store.get_object(BUCKET, key)
        try:
            digest = hashlib.sha256()
            for chunk in response.stream(1024 * 1024):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        assert digest.hexdigest() == row["sha256"], key
    return rows


def verify_json_download(client: httpx.Client, done: dict[str, Any], rows: int) -> None:
    assert done["status"] == "completed", done
    content = client.get(f"{URL}/{done['id']}/download").content
    assert hashlib.sha256(content).hexdigest() == done["sha256"]
    assert len(json.loads(content)) == done["rowCount"] == rows


def starts_of(cluster: Cluster, export_id: str) -> int:
    """How many times any worker logged starting this export."""
    return sum(
        1
        for key in cluster.services
        if key.startswith("worker")
        for line in cluster.log(key).splitlines()
        if "export started" in line and export_id in line
    )
