"""``codex-exports dev``: the whole system on one machine, each service its own process.

PostgreSQL, NATS JetStream and SeaweedFS come from their PyPI packages, bound to 127.0.0.1.
The launcher imports no service: it starts ``python -m services.<name>`` exactly as a cluster
would run them, so a crash or a kill in one behaves as it would in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import asyncpg

from services.cli import devstate, servers
from services.cli.demo_seed import DEMO_SIGN_IN, seed_demo
from shared.migrate import apply_migrations
from shared.object_store import ensure_bucket, make_client
from shared.settings import Settings

SERVICES = ("api", "worker", "janitor")


@dataclass
class Stack:
    data_dir: Path
    temporary: bool
    servers: list[servers.Server] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 25
        for proc in self.processes.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for server in reversed(self.servers):
            server.stop()
        devstate.clear_state()
        if self.temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _secrets(data_dir: Path, persistent: bool) -> dict[str, str]:
    """Secrets from the environment, else generated (kept in the data dir when it persists)."""
    path = data_dir / "secrets.json"
    stored: dict[str, str] = {}
    if persistent and path.exists():
        stored = json.loads(path.read_text())
    values = {
        "EXPORTS_JWT_SECRET": os.environ.get("EXPORTS_JWT_SECRET")
        or stored.get("EXPORTS_JWT_SECRET")
        or secrets.token_urlsafe(48),
        "EXPORTS_S3_ACCESS_KEY": os.environ.get("EXPORTS_S3_ACCESS_KEY")
        or stored.get("EXPORTS_S3_ACCESS_KEY")
        or "exports-" + secrets.token_hex(4),
        "EXPORTS_S3_SECRET_KEY": os.environ.get("EXPORTS_S3_SECRET_KEY")
        or stored.get("EXPORTS_S3_SECRET_KEY")
        or secrets.token_urlsafe(32),
    }
    if persistent:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(values, out)
    return values


async def _prepare_database(url: str, *, demo: bool) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, catalog=True)
        if demo:
            await seed_demo(conn)
            return list(DEMO_SIGN_IN)
        return []
    finally:
        await conn.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the api exited during start-up (code {proc.returncode})")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as response:  # noqa: S310 - our own loopback URL
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the api did not become ready in time")


def run_dev(api_port: int | None, data_dir: str | None, demo: bool, cluster: bool = False) -> int:
    if cluster:
        return run_dev_cluster(data_dir, demo)
    persistent = data_dir is not None
    root = (
        Path(data_dir).resolve()
        if data_dir
        else Path(tempfile.mkdtemp(prefix="codex-exports-dev-"))
    )
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    stack = Stack(root, temporary=not persistent)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        keys = _secrets(root, persistent)
        pg = servers.start_postgres(root / "pg")
        stack.servers.append(pg)
        nats = servers.start_nats(root / "nats")
        stack.servers.append(nats)
        s3 = servers.start_s3(
            root / "s3", keys["EXPORTS_S3_ACCESS_KEY"], keys["EXPORTS_S3_SECRET_KEY"]
        )
        stack.servers.append(s3)
        port = api_port or servers.free_port()
        env_values = {
            **{k: v for k, v in os.environ.items() if k.startswith("EXPORTS_")},
            **keys,
            "EXPORTS_DATABASE_URL": pg.url,
            "EXPORTS_NATS_URL": nats.url,
            "EXPORTS_S3_ENDPOINT": s3.endpoint,
            "EXPORTS_S3_SECURE": "false",
            "EXPORTS_API_HOST": "127.0.0.1",
            "EXPORTS_API_PORT": str(port),
        }
        settings = Settings.model_validate(
            {k.removeprefix("EXPORTS_").lower(): v for k, v in env_values.items()}
        )
        sign_in = asyncio.run(_prepare_database(pg.url, demo=demo))
        ensure_bucket(
            make_client(settings), settings.s3_bucket, retention_seconds=settings.retention_seconds
        )

        child_env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
        child_env.update(env_values)
        logs = root / "logs"
        logs.mkdir(exist_ok=True)
        for name in SERVICES:
            stack.processes[name] = _spawn(name, child_env, logs)
        api_url = f"http://127.0.0.1:{port}"
        _wait_ready(api_url, stack.processes["api"])
        devstate.write_state({k: v for k, v in env_values.items() if k in _STATE_KEYS})

        print("codex-exports dev ready")
        print(f"  {'api':<9} {api_url}")
        print(f"  {'page':<9} {api_url}/settings/exports")
        print(f"  {'database':<9} {pg.url}")
        print(f"  {'nats':<9} {nats.url}")
        print(f"  {'s3':<9} {s3.url}")
        for username, password in sign_in:
            print(f"  sign in   {username} / {password}")
        print(f"  logs      {logs}")
        print("Ctrl-C stops everything.", flush=True)
        _supervise(stack, child_env, logs)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        stack.stop()
    return 0


_STATE_KEYS = {
    "EXPORTS_DATABASE_URL",
    "EXPORTS_NATS_URL",
    "EXPORTS_JWT_SECRET",
    "EXPORTS_S3_ENDPOINT",
    "EXPORTS_S3_ACCESS_KEY",
    "EXPORTS_S3_SECRET_KEY",
    "EXPORTS_S3_BUCKET",
    "EXPORTS_API_PORT",
}


def _spawn(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    # Every process on this host gets its own metrics port (9100 is for one per container).
    env = {**env, "EXPORTS_METRICS_PORT": str(servers.free_port())}
    with (logs / f"{name}.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", f"services.{name}"], env=env, stdout=log, stderr=log
        )


def _supervise(stack: Stack, env: dict[str, str], logs: Path) -> None:
    """Restart a service that exits, as a cluster would."""
    while True:
        time.sleep(0.5)
        for name, proc in list(stack.processes.items()):
            if proc.poll() is not None:
                print(
                    f"{name} exited with code {proc.returncode}; restarting",
                    file=sys.stderr,
                    flush=True,
                )
                stack.processes[name] = _spawn(name, env, logs)


def run_dev_cluster(data_dir: str | None, demo: bool) -> int:
    """``codex-exports dev --cluster``: SPEC §14's cluster on this machine (``cluster.py``):
    3 NATS servers, replicated SeaweedFS (3 volume servers), 2 api, 3 workers, 2 janitors."""
    from services.cli.cluster import start_cluster

    persistent = data_dir is not None
    root = (
        Path(data_dir).resolve()
        if data_dir
        else Path(tempfile.mkdtemp(prefix="codex-exports-cluster-"))
    )
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    running = None
    try:
        keys = _secrets(root, persistent)
        overrides = {k: v for k, v in os.environ.items() if k.startswith("EXPORTS_")}
        running = start_cluster(root, env={**overrides, **keys})
        sign_in = asyncio.run(_prepare_database(running.database_url, demo=demo))
        devstate.write_state(
            {
                **{k: v for k, v in running.env.items() if k in _STATE_KEYS},
                "EXPORTS_API_PORT": str(next(iter(running.api_ports.values()))),
            }
        )
        print("codex-exports dev --cluster ready")
        for key, url in zip(running.api_ports, running.api_urls, strict=True):
            print(f"  {key:<9} {url}   (page {url}/settings/exports)")
        print(f"  {'database':<9} {running.pg.url}")
        print(f"  {'nats':<9} {running.nats.url}")
        print(f"  {'s3':<9} {running.s3.url} (3 volume servers, replication 001)")
        for username, password in sign_in:
            print(f"  sign in   {username} / {password}")
        print(f"  logs      {running.log_dir}")
        print("Ctrl-C stops everything.", flush=True)
        while True:  # restart a service that exits, as a cluster would
            time.sleep(0.5)
            for key, process in running.services.items():
                if not process.running():
                    print(f"{key} exited; restarting", file=sys.stderr, flush=True)
                    process.spawn()
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        if running is not None:
            running.stop()
        devstate.clear_state()
        if not persistent:
            shutil.rmtree(root, ignore_errors=True)
    return 0
