"""The benchmark's environment: servers, databases, catalogs and service processes."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from minio import Minio

from services.cli import servers
from services.cli.synthetic import SyntheticCatalog, build_synthetic
from shared.migrate import create_migrated_database
from shared.tokens import issue_token

JWT_SECRET = "bench-" + secrets.token_urlsafe(32)
BUCKET = "codex-exports"


@dataclass
class Stack:
    """PostgreSQL, NATS and SeaweedFS on 127.0.0.1, as the tests start them; with ``cluster``,
    the servers of ``services/cli/cluster.py`` (3 clustered NATS with the stream on all three,
    a replicated SeaweedFS with 3 volume servers)."""

    root: Path
    pg: servers.PostgresServer
    nats: servers.NatsServer | servers.NatsCluster
    s3: servers.S3Server | servers.S3Cluster
    access_key: str
    secret_key: str
    keep: bool = False
    replicas: int = 1

    @classmethod
    def start(cls, keep: bool = False, *, cluster: bool = False) -> Stack:
        root = Path(tempfile.mkdtemp(prefix="codex-exports-bench-"))
        root.chmod(0o755)
        access_key, secret_key = "bench-" + secrets.token_hex(4), secrets.token_urlsafe(24)
        pg = servers.start_postgres(root / "pg")
        if cluster:
            nats_cluster = servers.start_nats_cluster(root / "nats")
            s3_cluster = servers.start_s3_cluster(root / "s3", access_key, secret_key)
            return cls(root, pg, nats_cluster, s3_cluster, access_key, secret_key, keep, replicas=3)
        nats = servers.start_nats(root / "nats")
        s3 = servers.start_s3(root / "s3", access_key, secret_key)
        return cls(root, pg, nats, s3, access_key, secret_key, keep)

    def stop(self) -> None:
        for server in (self.s3, self.nats, self.pg):
            server.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def store(self) -> Minio:
        return Minio(
            self.s3.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
        )


async def create_database(stack: Stack, name: str) -> str:
    return await create_migrated_database(stack.pg.url, name, catalog=True)


class _WideFileSizes:
    """Passes ``build_synthetic``'s statements through, with ``b * 7919`` computed in bigint.

    ``services/cli/synthetic.py`` computes file sizes as ``(b * 7919) % 90000000`` in int4,
    which overflows past 271,000 books; until that file casts ``b`` to bigint (reported with
    the benchmark), this keeps the 1,000,000-book catalog buildable. A no-op once fixed.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, sql: str, *args: Any) -> str:
        return await self._conn.execute(sql.replace("(b * 7919)", "(b::bigint * 7919)"), *args)


async def build_catalog(
    url: str, series: int, books: int, username: str = "bench"
) -> SyntheticCatalog:
    conn = await asyncpg.connect(url)
    try:
        return await build_synthetic(
            _WideFileSizes(conn), series=series, books=books, username=username
        )  # type: ignore[arg-type]
    finally:
        await conn.close()


async def add_users(url: str, count: int, prefix: str) -> list[uuid.UUID]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "WITH named AS (SELECT $1 || '-' || n || '-' || md5(random()::text) AS username"
            " FROM generate_series(1, $2) n)"
            " INSERT INTO users (id, username, email, password_hash, role, created_at, updated_at)"
            " SELECT gen_random_uuid(), username, username || '@codex.invalid', '', 'reader',"
            " now(), now() FROM named RETURNING id",
            prefix,
            count,
        )
    finally:
        await conn.close()
    return [r["id"] for r in rows]


def token(user_id: uuid.UUID) -> str:
    return issue_token(user_id, "bench", "reader", JWT_SECRET, 24 * 3600)[0]


@dataclass
class Services:
    """api and worker processes (``python -m services.<name>``), as ``tests/system.py`` runs
    them, against the stack and one database."""

    stack: Stack
    database_url: str
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
        env.update(
            {
                "EXPORTS_DATABASE_URL": self.database_url,
                "EXPORTS_NATS_URL": self.stack.nats.url,
                "EXPORTS_STREAM_REPLICAS": str(self.stack.replicas),
                "EXPORTS_S3_ENDPOINT": self.stack.s3.endpoint,
                "EXPORTS_S3_ACCESS_KEY": self.stack.access_key,
                "EXPORTS_S3_SECRET_KEY": self.stack.secret_key,
                "EXPORTS_S3_BUCKET": BUCKET,
                "EXPORTS_JWT_SECRET": JWT_SECRET,
                "EXPORTS_LOG_LEVEL": "WARNING",
                "EXPORTS_SWEEP_INTERVAL_SECONDS": "3600",
                # The bench measures exports, not the request rate limits: none it reaches.
                "EXPORTS_RATE_LIMIT_USER_PER_SECOND": "100000",
                "EXPORTS_RATE_LIMIT_USER_BURST": "100000",
                "EXPORTS_RATE_LIMIT_ANON_PER_SECOND": "100000",
                "EXPORTS_RATE_LIMIT_ANON_BURST": "100000",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def start(self, name: str, key: str | None = None, **overrides: str) -> subprocess.Popen[bytes]:
        key = key or name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = self.env(**overrides)
        if name == "api":
            port = servers.free_port()
            env["EXPORTS_API_PORT"] = str(port)
            self.api_url = f"http://127.0.0.1:{port}"
        with (self.log_dir / f"{key}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=log
            )
        self.processes[key] = proc
        if name == "api":
            self._wait_ready(proc)
        return proc

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"api exited; see {self.log_dir}")
            try:
                if httpx.get(self.api_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"api not ready; see {self.log_dir}")

    def stop(self, key: str, timeout: float = 30) -> None:
        proc = self.processes.pop(key)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        for key in list(self.processes):
            self.stop(key)

    def client(self, user_id: uuid.UUID, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token(user_id)}"},
            timeout=kwargs.pop("timeout", 120),
            **kwargs,
        )

    def async_client(self, user_id: uuid.UUID, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token(user_id)}"},
            timeout=kwargs.pop("timeout", 60),
            **kwargs,
        )


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set since the last :func:`reset_peak_rss` (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


EXPORTS_URL = "/api/v1/user/exports/series"


def stamp_seconds(stamp: str) -> float:
    """An ExportDto timestamp (RFC 3339, ``Z``) as POSIX seconds."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_for(
    client: httpx.Client, export_id: str, timeout: float = 900, interval: float = 0.1
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"{EXPORTS_URL}/{export_id}").json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(interval)
    raise RuntimeError(f"export {export_id} did not end: {body}")
