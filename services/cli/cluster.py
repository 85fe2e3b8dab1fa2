"""The whole system as a cluster on one machine (SPEC §14): for tests, ``bench/`` and
``codex-exports dev --cluster``.

* 3 NATS JetStream servers clustered, the ``EXPORTS`` stream and its consumers on all three
  (``EXPORTS_STREAM_REPLICAS=3``, ``EXPORTS_NATS_URL`` lists the three),
* SeaweedFS: a master, 3 volume servers with replication ``001``, a filer and its S3 gateway,
* PostgreSQL (one server: its high availability is PostgreSQL's own business),
* 2 api, 3 worker and 2 janitor processes (``python -m services.<name>``),

everything on 127.0.0.1 with free ports. Every process is a :class:`servers.ManagedProcess`
(the one place processes are started, killed and restarted), so a test kills any part by its
key (``api-1``, ``worker-2``, ``nats-3``, ``volume-1``…) and starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from services.cli import servers
from shared.migrate import apply_migrations
from shared.object_store import ensure_bucket, make_client
from shared.settings import Settings
from shared.subjects import STREAM

__all__ = ["Cluster", "ClusterShape", "service_process", "start_cluster"]

_SERVICE_START_TIMEOUT = 180.0  # 7 Python processes starting together on 2 shared cores


@dataclass(frozen=True)
class ClusterShape:
    """How many of each part: the defaults are SPEC §14's cluster."""

    nats: int = 3
    volumes: int = 3
    apis: int = 2
    workers: int = 3
    janitors: int = 2


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our loopback URL
            return bool(response.status == 200)
    except OSError:
        return False


def service_process(
    name: str, key: str, env: dict[str, str], log_dir: Path, *, api_port: int | None = None
) -> servers.ManagedProcess:
    """A service process (``python -m services.<name>``) as the cluster runs it.

    Ready when the api answers ``/readyz`` with 200, a worker or janitor ``/healthz`` on its own
    metrics port (served once its start-up, stream and bucket included, is done).
    """
    metrics_port = servers.free_port()
    env = {**env, "EXPORTS_METRICS_PORT": str(metrics_port)}
    if api_port is not None:
        env["EXPORTS_API_PORT"] = str(api_port)
        probe = f"http://{servers.LOOPBACK}:{api_port}/readyz"
    else:
        probe = f"http://{servers.LOOPBACK}:{metrics_port}/healthz"
    return servers.ManagedProcess(
        name=key,
        argv=[sys.executable, "-m", f"services.{name}"],
        log_path=log_dir / f"{key}.log",
        cwd=Path.cwd(),
        env=env,
        ready=lambda: _http_ok(probe),
    )


@dataclass
class Cluster(servers.Server):
    """A running cluster; ``parts`` holds every killable process by key."""

    root: Path
    pg: servers.PostgresServer
    nats: servers.NatsCluster
    s3: servers.S3Cluster
    env: dict[str, str]
    """The services' environment (``EXPORTS_*`` and the rest of ours)."""
    api_ports: dict[str, int]
    services: dict[str, servers.ManagedProcess] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.env["EXPORTS_DATABASE_URL"]

    @property
    def api_urls(self) -> list[str]:
        return [f"http://{servers.LOOPBACK}:{port}" for port in self.api_ports.values()]

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def parts(self) -> dict[str, servers.ManagedProcess | servers.NatsServer]:
        """Every process that can be killed: services, NATS nodes, volume servers."""
        found: dict[str, servers.ManagedProcess | servers.NatsServer] = dict(self.services)
        for i, node in enumerate(self.nats.nodes, 1):
            found[f"nats-{i}"] = node
        for i, volume in enumerate(self.s3.volumes, 1):
            found[f"volume-{i}"] = volume
        return found

    def kill(self, key: str) -> None:
        """SIGKILL one part (a crash: nothing flushed, acked or handed back)."""
        self.parts[key].kill()

    def start(self, key: str, timeout: float = _SERVICE_START_TIMEOUT) -> None:
        """Start a killed or stopped part again, same ports and data; wait until it is ready."""
        part = self.parts[key]
        if isinstance(part, servers.NatsServer):
            part.restart(timeout)
        elif key.startswith("volume-"):
            part.start(timeout)
            if not _until(lambda: self.s3.volume_nodes() >= len(self.s3.volumes), timeout):
                raise servers.ServerError(f"{key} did not rejoin the SeaweedFS master")
        else:
            part.start(timeout)

    def freeze(self, key: str) -> None:
        """SIGSTOP one part: it holds its connections but answers nothing (a hung server)."""
        os.kill(self.parts[key].pid, signal.SIGSTOP)

    def thaw(self, key: str) -> None:
        """SIGCONT a frozen part (nothing to do if it was killed meanwhile)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.parts[key].pid, signal.SIGCONT)

    def add_service(self, name: str, key: str, **env: str) -> servers.ManagedProcess:
        """Start one more service process (its own settings in ``env``); ready on return."""
        api_port = None
        if name == "api":
            api_port = servers.free_port()
            self.api_ports[key] = api_port
        process = service_process(name, key, {**self.env, **env}, self.log_dir, api_port=api_port)
        self.services[key] = process
        process.start(_SERVICE_START_TIMEOUT)
        return process

    def stream_leader(self) -> str | None:
        """Key (``nats-N``) of the NATS node that leads the ``EXPORTS`` stream."""
        index = self.nats.stream_leader(STREAM)
        return None if index is None else f"nats-{index + 1}"

    def log(self, key: str) -> str:
        path = self.log_dir / f"{key}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Services first (they hand running exports back), then the servers."""
        for process in self.services.values():  # SIGTERM to all at once, then wait for each
            if process.running() and process.process is not None:
                process.process.terminate()
        for process in self.services.values():
            process.stop(timeout)
        for server in (self.s3, self.nats, self.pg):
            server.stop()


def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, catalog=True)
    finally:
        await conn.close()


def start_cluster(
    root: Path,
    *,
    shape: ClusterShape | None = None,
    env: dict[str, str] | None = None,
    start_services: bool = True,
) -> Cluster:
    """Start the servers, migrate the database (catalog tables included), create the bucket,
    then (``start_services``) every service process; return once every part is ready.

    ``env`` adds or overrides ``EXPORTS_*`` settings of the services (secrets not given are
    generated). ``root`` must be world-traversable when we are root (PostgreSQL runs as
    ``nobody``). On any failure everything started so far is stopped.
    """
    shape = shape or ClusterShape()
    root = Path(root).absolute()
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    overrides = dict(env or {})
    access_key = overrides.get("EXPORTS_S3_ACCESS_KEY") or "exports-" + secrets.token_hex(4)
    secret_key = overrides.get("EXPORTS_S3_SECRET_KEY") or secrets.token_urlsafe(32)
    started: list[servers.Server] = []
    try:
        pg = servers.start_postgres(root / "pg")
        started.append(pg)
        nats = servers.start_nats_cluster(root / "nats", size=shape.nats)
        started.append(nats)
        s3 = servers.start_s3_cluster(root / "s3", access_key, secret_key, volumes=shape.volumes)
        started.append(s3)
        service_env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
        service_env.update(
            {
                "EXPORTS_DATABASE_URL": pg.url,
                "EXPORTS_NATS_URL": nats.url,
                "EXPORTS_STREAM_REPLICAS": str(min(3, shape.nats)),
                "EXPORTS_S3_ENDPOINT": s3.endpoint,
                "EXPORTS_S3_ACCESS_KEY": access_key,
                "EXPORTS_S3_SECRET_KEY": secret_key,
                "EXPORTS_S3_SECURE": "false",
                "EXPORTS_JWT_SECRET": secrets.token_urlsafe(48),
                "EXPORTS_API_HOST": servers.LOOPBACK,
                **overrides,
            }
        )
        settings = Settings.model_validate(
            {
                k.removeprefix("EXPORTS_").lower(): v
                for k, v in service_env.items()
                if k.startswith("EXPORTS_")
            }
        )
        asyncio.run(_migrate(pg.url))
        ensure_bucket(
            make_client(settings), settings.s3_bucket, retention_seconds=settings.retention_seconds
        )
        cluster = Cluster(root, pg, nats, s3, service_env, api_ports={})
        started.clear()
        started.append(cluster)
        if start_services:
            _start_services(cluster, shape)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise
    return cluster


def _start_services(cluster: Cluster, shape: ClusterShape) -> None:
    log_dir = cluster.log_dir
    plan: list[tuple[str, str]] = [
        *(("api", f"api-{i}") for i in range(1, shape.apis + 1)),
        *(("worker", f"worker-{i}") for i in range(1, shape.workers + 1)),
        *(("janitor", f"janitor-{i}") for i in range(1, shape.janitors + 1)),
    ]
    for name, key in plan:
        api_port = None
        if name == "api":
            api_port = servers.free_port()
            cluster.api_ports[key] = api_port
        cluster.services[key] = service_process(name, key, cluster.env, log_dir, api_port=api_port)
    # The first api creates the stream; the others start once it exists (no start-up race
    # between three replicas' creations on a cluster still electing its leaders).
    first = cluster.services[plan[0][1]]
    first.start(_SERVICE_START_TIMEOUT)
    rest: Iterable[servers.ManagedProcess] = [cluster.services[key] for _, key in plan[1:]]
    for process in rest:
        process.spawn()
    for process in rest:
        process.wait_ready(_SERVICE_START_TIMEOUT)
