"""Security tests: private systems (own NATS, own bucket) on fresh databases, and helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from services.cli import servers
from tests.conftest import Servers, service_env
from tests.system import System, make_system

URL = "/api/v1/user/exports/series"
KEYS_URL = "/api/v1/user/api-keys"

SystemFactory = Callable[..., System]


@pytest.fixture(scope="module")
def private_systems(real_servers: Servers, servers_dir: Path) -> Iterator[SystemFactory]:
    """Start systems with their own NATS server and bucket, so no other test's worker or
    janitor ever takes their messages; every one is stopped when the module ends.

    ``start=False`` leaves the processes to the test (``System.start_one``)."""
    systems: list[System] = []
    buses: list[servers.NatsServer] = []

    def make(database_url: str, *names: str, start: bool = True, **env: str) -> System:
        tag = uuid.uuid4().hex[:8]
        nats = servers.start_nats(servers_dir / f"nats-sec-{tag}")
        buses.append(nats)  # stopped at the end even if what follows fails
        overrides = {"EXPORTS_NATS_URL": nats.url, "EXPORTS_S3_BUCKET": f"sec-{tag}", **env}
        system = make_system(
            service_env(real_servers, database_url, **overrides), servers_dir / f"logs-sec-{tag}"
        )
        systems.append(system)
        if start:
            system.start(*names)
        return system

    try:
        yield make
    finally:
        for system in systems:
            system.stop()
        for nats in buses:
            nats.stop()


def store(srv: Servers) -> Minio:
    return srv.s3_client()


def key_client(system: System, key: str) -> httpx.Client:
    return httpx.Client(base_url=system.api_url, headers={"X-API-Key": key}, timeout=30)


def create_key(system: System, user_id: uuid.UUID, name: str = "script") -> dict[str, Any]:
    """A new API key for the user, created from a signed-in session as the API requires."""
    with system.client(user_id) as client:
        response = client.post(KEYS_URL, json={"name": name})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
