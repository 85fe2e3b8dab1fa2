"""Run api, worker and janitor as real processes against the test servers."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from services.cli import servers
from shared.tokens import issue_token

JWT_SECRET = "tests-" + "x" * 40


@dataclass
class System:
    """A running set of services; ``client(user_id)`` talks to its api as that user."""

    env: dict[str, str]
    log_dir: Path
    api_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def start(self, *names: str) -> None:
        names = names or ("api", "worker", "janitor")
        for name in names:
            self.start_one(name)
        if "api" in self.processes:
            self.wait_ready()
        # A worker or janitor serves /healthz once its start-up (pool, bucket) is done: a test
        # that then stops a server tests an outage, not a start-up that raced it.
        for name in names:
            if name != "api":
                self.wait_started(name)

    def start_one(
        self, name: str, key: str | None = None, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        key = key or name
        self.metrics_ports[key] = servers.free_port()
        with (self.log_dir / f"{key}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env={**self.env, "EXPORTS_METRICS_PORT": str(self.metrics_ports[key]), **extra_env},
                stdout=log,
                stderr=log,
            )
        self.processes[key] = proc
        return proc

    def stop_one(self, key: str, *, kill: bool = False, timeout: float = 30) -> None:
        proc = self.processes.pop(key)
        if proc.poll() is None:
            (proc.kill if kill else proc.terminate)()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Past the graceful bound (a loaded machine): never leave a process behind.
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for key in list(self.processes):
            self.stop_one(key)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.processes["api"]
            if proc.poll() is not None:
                raise RuntimeError("api exited:\n" + self.log("api")[-3000:])
            try:
                if httpx.get(self.api_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("api not ready:\n" + self.log("api")[-3000:])

    def wait_started(self, key: str, timeout: float = 60) -> None:
        url = f"http://127.0.0.1:{self.metrics_ports[key]}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[key].poll() is not None:
                raise RuntimeError(f"{key} exited:\n" + self.log(key)[-3000:])
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{key} not started:\n" + self.log(key)[-3000:])

    def log(self, key: str) -> str:
        path = self.log_dir / f"{key}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def token(self, user_id: UUID, username: str = "user", role: str = "reader") -> str:
        return issue_token(user_id, username, role, JWT_SECRET, 3600)[0]

    def client(self, user_id: UUID, username: str = "user") -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.token(user_id, username)}"},
            timeout=30,
        )


def make_system(env: dict[str, str], log_dir: Path) -> System:
    port = servers.free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **env,
        "EXPORTS_API_PORT": str(port),
        "EXPORTS_JWT_SECRET": JWT_SECRET,
        "EXPORTS_LOG_LEVEL": "INFO",
    }
    return System(env=env, log_dir=log_dir, api_url=f"http://127.0.0.1:{port}")


def wait_for_export(client: httpx.Client, export_id: str, timeout: float = 90) -> dict[str, Any]:
    """Poll until the export has ended; return it."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/user/exports/series/{export_id}")
        response.raise_for_status()
        body = response.json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"export {export_id} did not end in time: {body}")


def export_and_download(
    client: httpx.Client, body: dict[str, Any]
) -> tuple[dict[str, Any], httpx.Response]:
    """Create an export, wait until it has completed, download it: (its DTO, the download)."""
    response = client.post("/api/v1/user/exports/series", json=body)
    assert response.status_code == 202, response.text
    done = wait_for_export(client, response.json()["id"])
    assert done["status"] == "completed", done
    download = client.get(f"/api/v1/user/exports/series/{done['id']}/download")
    assert download.status_code == 200
    return done, download
