"""A private set of servers for fault tests: they stop and restart NATS, S3 and PostgreSQL."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from minio import Minio

from services.cli import servers
from services.cli.synthetic import SyntheticCatalog, build_synthetic
from tests.conftest import Servers, seeded_database, service_env
from tests.system import System, make_system

URL = "/api/v1/user/exports/series"


@dataclass
class Restartable:
    """Servers that a test may stop and start again on the same ports and data."""

    root: Path
    access_key: str
    secret_key: str
    pg: servers.PostgresServer
    nats: servers.NatsServer
    s3: servers.S3Server

    @property
    def info(self) -> Servers:
        return Servers(
            self.pg.url, self.nats.url, self.s3.endpoint, self.access_key, self.secret_key
        )

    def restart_nats(self, down_seconds: float = 0.0) -> None:
        self.nats.stop()
        time.sleep(down_seconds)
        self.nats = servers.start_nats(
            self.root / "nats", port=self.nats.port, monitor_port=self.nats.monitor_port
        )

    def stop_s3(self) -> None:
        self.s3.stop()

    def start_s3(self) -> None:
        self.s3 = servers.start_s3(
            self.root / "s3", self.access_key, self.secret_key, port=self.s3.port
        )

    def stop_pg(self) -> None:
        self.pg.stop()

    def start_pg(self) -> None:
        self.pg = servers.start_postgres(self.root / "pg", port=self.pg.port)

    def store(self) -> Minio:
        return Minio(
            self.s3.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False
        )


@pytest.fixture(scope="module")
def restartable() -> Iterator[Restartable]:
    root = Path(tempfile.mkdtemp(prefix="codex-exports-faults-"))
    root.chmod(0o755)
    access_key, secret_key = "faults-" + secrets.token_hex(3), secrets.token_urlsafe(24)
    pg = servers.start_postgres(root / "pg")
    nats = servers.start_nats(root / "nats")
    s3 = servers.start_s3(root / "s3", access_key, secret_key)
    stack = Restartable(root, access_key, secret_key, pg, nats, s3)
    try:
        yield stack
    finally:
        for server in (stack.s3, stack.nats, stack.pg):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Catalog:
    database_url: str
    synthetic: SyntheticCatalog


@pytest.fixture(scope="module")
async def big_catalog(restartable: Restartable) -> Catalog:
    """A 60,000-book catalog: an export of it takes long enough to be interrupted."""
    url, synthetic = await seeded_database(
        restartable.info, lambda c: build_synthetic(c, series=1200, books=60_000)
    )
    return Catalog(url, synthetic)


FAST_FAILURE_ENV = {
    "EXPORTS_ACK_WAIT_SECONDS": "4",
    "EXPORTS_STALE_AFTER_SECONDS": "4",
    "EXPORTS_HEARTBEAT_SECONDS": "0.5",
    "EXPORTS_MAX_DELIVER": "3",
    "EXPORTS_BATCH_ROWS": "200",
    "EXPORTS_SWEEP_INTERVAL_SECONDS": "3600",
}


@pytest.fixture
def system_factory(restartable: Restartable, tmp_path: Path) -> Iterator[Any]:
    """Start systems on demand; every one is stopped at the end of the test."""
    started: list[System] = []

    def make(database_url: str, *names: str, **env: str) -> System:
        system = make_system(
            service_env(restartable.info, database_url, **{**FAST_FAILURE_ENV, **env}),
            tmp_path / f"logs-{len(started)}",
        )
        started.append(system)
        system.start(*names)
        return system

    yield make
    for system in started:
        system.stop()


def create(client: httpx.Client, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post(URL, json=body, headers=headers)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def wait_until(predicate: Any, timeout: float = 60, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def objects(stack: Restartable, prefix: str = "exports/") -> list[str]:
    return [
        o.object_name
        for o in stack.store().list_objects("codex-exports", prefix=prefix, recursive=True)
    ]


def incomplete_uploads(stack: Restartable) -> list[str]:
    result = stack.store()._list_multipart_uploads("codex-exports", prefix="exports/")
    return [u.object_name for u in result.uploads]


def big_books_request(catalog: Catalog, fmt: str = "json") -> dict[str, Any]:
    return {
        "format": fmt,
        "exportType": "books",
        "libraryIds": [str(catalog.synthetic.library_id)],
        "preset": "all",
    }


async def fresh_user(database_url: str) -> uuid.UUID:
    from tests.conftest import new_user

    return await new_user(database_url)


@pytest.fixture
async def db_conn(big_catalog: Catalog) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(big_catalog.database_url)
    try:
        yield conn
    finally:
        await conn.close()
