"""A primary PostgreSQL and its streaming read replica on 127.0.0.1, and services that read the
catalog on the replica (``EXPORTS_CATALOG_DATABASE_URL``) and keep the job state on the primary.

The one place the replica is made: ``servers.start_replica`` (``pg_basebackup -R`` from the
primary, a hot standby streaming from it). Both servers load ``pg_stat_statements``, so a test
can see which server ran a statement; the replica's replay can be paused and resumed, and the
replica stopped and started again on its port and data.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from services.cli import servers
from services.cli.demo_seed import seed_demo
from shared.migrate import create_migrated_database
from tests.conftest import Servers, service_env
from tests.system import System, make_system


@dataclass
class Replication:
    """A primary, its replica, and the test database (same name on both)."""

    root: Path
    primary: servers.PostgresServer
    replica: servers.PostgresServer
    nats: servers.NatsServer
    database: str
    library: str
    """A library of the demo catalog (the first by name), for the tests' exports."""

    def primary_url(self) -> str:
        return self.primary.url.rsplit("/", 1)[0] + "/" + self.database

    def replica_url(self) -> str:
        return self.replica.url.rsplit("/", 1)[0] + "/" + self.database

    async def stop_replica(self) -> None:
        await asyncio.to_thread(self.replica.stop)

    async def start_replica(self) -> None:
        self.replica = await asyncio.to_thread(
            servers.start_replica, self.primary, self.root / "replica", port=self.replica.port
        )

    async def pause_replay(self) -> None:
        await _on(self.replica_url(), "SELECT pg_wal_replay_pause()")

    async def resume_replay(self) -> None:
        await _on(self.replica_url(), "SELECT pg_wal_replay_resume()")

    async def caught_up(self) -> bool:
        """Whether the replica has replayed everything the primary has written so far."""
        target = await _on(self.primary_url(), "SELECT pg_current_wal_lsn()::text")
        for _ in range(200):
            done = await _on(
                self.replica_url(), "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target
            )
            if done:
                return True
            await asyncio.sleep(0.05)
        return False


async def _on(url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def statements(url: str) -> list[str]:
    """The statements ``pg_stat_statements`` saw on the server of ``url``, in its database."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
            " WHERE d.datname = current_database()"
        )
    finally:
        await conn.close()
    return [r["query"] for r in rows]


async def reset_statements(url: str) -> None:
    await _on(url, "SELECT pg_stat_statements_reset()::text")


def _start_primary(root: Path) -> servers.PostgresServer:
    root.chmod(0o755)
    return servers.start_postgres(root / "primary")


def _restart(server: servers.PostgresServer) -> servers.PostgresServer:
    server.stop()
    return servers.start_postgres(server.data_dir, port=server.port)


def _stop_all(*running: servers.Server | None) -> None:
    for server in running:
        if server is not None:
            server.stop()


@pytest.fixture(scope="module")
async def replication() -> AsyncIterator[Replication]:
    root = Path(tempfile.mkdtemp(prefix="codex-exports-replica-"))
    primary = await asyncio.to_thread(_start_primary, root)
    replica: servers.PostgresServer | None = None
    nats: servers.NatsServer | None = None
    try:
        # pg_stat_statements needs a restart to load; the replica's copy of the settings has it.
        await _on(primary.url, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        primary = await asyncio.to_thread(_restart, primary)
        name = "replica_" + uuid.uuid4().hex[:8]
        url = await create_migrated_database(primary.url, name, catalog=True)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE EXTENSION pg_stat_statements")
            await seed_demo(conn)
        finally:
            await conn.close()
        replica = await asyncio.to_thread(servers.start_replica, primary, root / "replica")
        nats = await asyncio.to_thread(servers.start_nats, root / "nats")
        library = await _on(url, "SELECT id::text FROM libraries ORDER BY name, id LIMIT 1")
        stack = Replication(root, primary, replica, nats, name, str(library))
        assert await stack.caught_up()
        yield stack
        replica = stack.replica
    finally:
        await asyncio.to_thread(_stop_all, nats, replica, primary)
        await asyncio.to_thread(shutil.rmtree, root, ignore_errors=True)


# Fast retries: an attempt waits at most this long for the replica, and two attempts are made.
MAX_LAG_SECONDS = 3
REPLICA_ENV = {
    "EXPORTS_CATALOG_MAX_LAG_SECONDS": str(MAX_LAG_SECONDS),
    "EXPORTS_MAX_DELIVER": "2",
    "EXPORTS_HEARTBEAT_SECONDS": "0.5",
    "EXPORTS_SWEEP_INTERVAL_SECONDS": "3600",
}


@pytest.fixture(scope="module")
def replica_system(
    replication: Replication, real_servers: Servers, servers_dir: Path
) -> Iterator[System]:
    """api, worker and janitor: job state on the primary, catalog reads on the replica; NATS
    of their own (no other system's worker takes their messages), the session's S3."""
    env = service_env(
        real_servers,
        replication.primary_url(),
        EXPORTS_NATS_URL=replication.nats.url,
        EXPORTS_CATALOG_DATABASE_URL=replication.replica_url(),
        **REPLICA_ENV,
    )
    system = make_system(env, servers_dir / f"logs-replica-{uuid.uuid4().hex[:6]}")
    system.start()
    try:
        yield system
    finally:
        system.stop()
