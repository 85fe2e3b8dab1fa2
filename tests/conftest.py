"""Session fixtures: real PostgreSQL, NATS JetStream and an S3 server on 127.0.0.1.

The servers come from their PyPI packages (RECIPES.md), started once per test session: the
same on every developer's machine and in CI, none of which has a Docker engine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest
from minio import Minio

from services.cli import servers
from shared.codex_tables import insert_rows
from shared.migrate import create_migrated_database

SeedT = TypeVar("SeedT")


@dataclass(frozen=True)
class Servers:
    postgres_url: str  # server-level URL (database "postgres")
    nats_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str

    def database_url(self, name: str) -> str:
        return self.postgres_url.rsplit("/", 1)[0] + "/" + name

    def s3_client(self) -> Minio:
        """A client of the session's S3 server, with its keys."""
        return Minio(
            self.s3_endpoint,
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            secure=False,
        )


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="codex-exports-tests-"))
    root.chmod(0o755)
    yield root
    # KEEP_TEST_DATA=1 keeps service logs and server data for a post-mortem.
    if os.environ.get("KEEP_TEST_DATA") != "1":
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"\ntest data kept in {root}")


@pytest.fixture(scope="session")
def real_servers(servers_dir: Path) -> Iterator[Servers]:
    access_key = "tests-" + secrets.token_hex(4)
    secret_key = secrets.token_urlsafe(24)
    pg = servers.start_postgres(servers_dir / "pg")
    nats = servers.start_nats(servers_dir / "nats")
    s3 = servers.start_s3(servers_dir / "s3", access_key, secret_key)
    try:
        yield Servers(pg.url, nats.url, s3.endpoint, access_key, secret_key)
    finally:
        for server in (s3, nats, pg):
            server.stop()


async def create_database(srv: Servers, *, catalog: bool = True) -> str:
    """A fresh database with the migrations applied; returns its URL."""
    name = "t_" + uuid.uuid4().hex[:12]
    return await create_migrated_database(srv.postgres_url, name, catalog=catalog)


async def seeded_database(
    srv: Servers, seed: Callable[[asyncpg.Connection], Awaitable[SeedT]]
) -> tuple[str, SeedT]:
    """A fresh migrated database that ``seed`` fills on one connection: its URL and what
    ``seed`` returned (e.g. the synthetic catalog's ids)."""
    url = await create_database(srv)
    conn = await asyncpg.connect(url)
    try:
        seeded = await seed(conn)
    finally:
        await conn.close()
    return url, seeded


@pytest.fixture
async def fresh_database(real_servers: Servers) -> str:
    """A new, migrated, empty database for one test."""
    return await create_database(real_servers)


@pytest.fixture
async def pool(fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(fresh_database, min_size=1, max_size=4)
    assert p is not None
    try:
        yield p
    finally:
        await p.close()


# Tests send many requests quickly from one address: limits no test reaches, still applied (the
# headers and the shared bucket are exercised everywhere); tests of the limits set their own.
TEST_RATE_LIMITS = {
    "EXPORTS_RATE_LIMIT_USER_PER_SECOND": "100000",
    "EXPORTS_RATE_LIMIT_USER_BURST": "100000",
    "EXPORTS_RATE_LIMIT_ANON_PER_SECOND": "100000",
    "EXPORTS_RATE_LIMIT_ANON_BURST": "100000",
}


def service_env(srv: Servers, database_url: str, **overrides: str) -> dict[str, str]:
    """Environment for a service process pointed at the test servers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
    env.update(
        {
            "EXPORTS_DATABASE_URL": database_url,
            "EXPORTS_NATS_URL": srv.nats_url,
            "EXPORTS_S3_ENDPOINT": srv.s3_endpoint,
            "EXPORTS_S3_ACCESS_KEY": srv.s3_access_key,
            "EXPORTS_S3_SECRET_KEY": srv.s3_secret_key,
            "EXPORTS_JWT_SECRET": "tests-" + "x" * 40,
            **TEST_RATE_LIMITS,
        }
    )
    env.update(overrides)
    return env


# --- A running system on the demo catalog -------------------------------------------------

from tests.system import System, make_system  # noqa: E402


# A user of their own for a module's exports on the demo catalog, and the demo's libraries by name.
@pytest.fixture(scope="module")
async def owner(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
async def libraries(demo_database: str) -> list[dict[str, str]]:
    return await libraries_by_name(demo_database)


@pytest.fixture(scope="session")
async def demo_database(real_servers: Servers) -> str:
    from services.cli.demo_seed import seed_demo

    url, _ = await seeded_database(real_servers, seed_demo)
    return url


@pytest.fixture(scope="session")
def demo_system(real_servers: Servers, demo_database: str, servers_dir: Path) -> Iterator[System]:
    system = make_system(service_env(real_servers, demo_database), servers_dir / "logs-demo")
    system.start()
    try:
        yield system
    finally:
        system.stop()


async def new_user(
    database_url: str, *, username: str | None = None, role: str = "reader"
) -> uuid.UUID:
    """A fresh user with no grants (sees every library), so tests never share limits or lists."""
    conn = await asyncpg.connect(database_url)
    try:
        user_id = uuid.uuid4()
        await insert_rows(
            conn,
            "users",
            [
                {
                    "id": user_id,
                    "username": username or "user-" + uuid.uuid4().hex[:10],
                    "password_hash": "",
                    "role": role,
                }
            ],
        )
    finally:
        await conn.close()
    return user_id


# --- The folder says what a test needs ----------------------------------------------------------

_NOT_YET_SORTED: tuple[str, ...] = ()


@pytest.hookimpl(tryfirst=True)  # before -m deselects: every collected test is checked
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse to run when a test's folder and its markers disagree: every test under
    ``tests/integration/`` is marked ``integration`` and no other test is, a test elsewhere
    that asks for the real servers belongs under ``tests/integration/``, and every test under
    ``tests/e2e/`` is marked ``e2e``."""
    tests = config.rootpath / "tests"
    wrong: list[str] = []
    for item in items:
        if not item.path.is_relative_to(tests):
            continue
        area = item.path.relative_to(tests).parts[0]
        marks = {mark.name for mark in item.iter_markers()}
        servers = {"real_servers", "servers_dir"} & set(getattr(item, "fixturenames", ()))
        if area == "integration" and "integration" not in marks:
            wrong.append(f"{item.nodeid}: add  pytestmark = pytest.mark.integration")
        elif area == "e2e" and "e2e" not in marks:
            wrong.append(f"{item.nodeid}: add  pytestmark = pytest.mark.e2e")
        elif area not in ("integration", "e2e", *_NOT_YET_SORTED) and (
            "integration" in marks or servers
        ):
            wrong.append(f"{item.nodeid}: on real servers, so it belongs under tests/integration/")
    if wrong:
        raise pytest.UsageError(
            "tests/<package path>/ holds unit tests, tests/integration/ the tests on real "
            "servers (marked integration), tests/e2e/ the browser tests (marked e2e):\n  "
            + "\n  ".join(wrong)
        )


async def libraries_by_name(database_url: str) -> list[dict[str, str]]:
    """Every library as ``{"id", "name"}``, by name."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, name FROM libraries ORDER BY name")
    finally:
        await conn.close()
    return [{"id": str(r["id"]), "name": r["name"]} for r in rows]


async def library_ids_by_name(database_url: str) -> list[str]:
    """Every library's id, by name (the demo catalog's order in the New Export dialog)."""
    conn = await asyncpg.connect(database_url)
    try:
        return [
            str(r["id"]) for r in await conn.fetch("SELECT id FROM libraries ORDER BY name, id")
        ]
    finally:
        await conn.close()


async def first_library(database_url: str) -> str:
    """The first library's id, by name."""
    return (await library_ids_by_name(database_url))[0]
