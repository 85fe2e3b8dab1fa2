"""deploy/codex: the reverse proxies that put codex-exports beside a Codex server.

The real nginx (and Caddy) from Debian run the shipped files in front of the api and a
stand-in for Codex. nginx gets its test ports by rewriting only the two upstreams' ``server``
lines and the ``listen`` line of the shipped site file; Caddy reads its ports from the
environment variables the shipped Caddyfile names. The routing rules under test are the
shipped ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import kubernetes_validate
import psutil
import pytest
from minio import Minio

from services.api.routes.page import STATIC_DIR
from services.cli import servers
from shared import naming
from shared import repository as exports_repo
from shared.settings import Settings
from tests.conftest import Servers, new_user
from tests.deploy.loading import DEPLOY, K8S, by_kind, yaml_documents
from tests.system import System

# The configs are checked by Debian's nginx and Caddy themselves, the routes against the real api.
pytestmark = pytest.mark.integration

CODEX_DIR = DEPLOY / "codex"
NGINX_SITE = CODEX_DIR / "nginx-site.conf"
CADDYFILE = CODEX_DIR / "Caddyfile"
INGRESS = CODEX_DIR / "ingress.yaml"
NGINX = Path("/usr/sbin/nginx")
CADDY = Path("/usr/bin/caddy")
URL = "/api/v1/user/exports/series"
DOWNLOAD_ROUTE = URL + "/{export_id}/download"
# Big enough that no buffer on the way (nginx, the kernel, the api's read-ahead) could hold it.
BIG_SIZE = 300 * 1024 * 1024
CHUNK = 1024 * 1024
WORKER_ID = "proxy-test"
PAUSE_SECONDS = 1.0

# Where each path must go. Codex owns everything but the export API and the page: sign-in,
# libraries and API keys included, although the api answers them when it runs standalone.
CODEX, EXPORTS = "codex", "exports"
SOME_ID = "00000000-0000-4000-8000-000000000000"
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/", CODEX),
    ("GET", "/series/123", CODEX),
    ("GET", "/api/v1/series", CODEX),
    ("GET", "/api/v1/books/1/file", CODEX),
    ("GET", "/api/v1/events/stream", CODEX),
    ("POST", "/api/v1/auth/login", CODEX),
    ("GET", "/api/v1/auth/me", CODEX),
    ("GET", "/api/v1/libraries", CODEX),
    ("GET", "/api/v1/user/api-keys", CODEX),
    ("POST", "/api/v1/user/api-keys", CODEX),
    ("GET", "/api/v1/user/exportsX", CODEX),
    ("GET", "/api/v1/user/export", CODEX),
    ("GET", "/healthz", CODEX),
    ("GET", "/readyz", CODEX),
    ("GET", "/metrics", CODEX),
    ("GET", "/docs", CODEX),
    ("GET", "/openapi.json", CODEX),
    ("GET", "/settings", CODEX),
    ("GET", "/settings/server", CODEX),
    ("GET", "/settings/exportsX", CODEX),
    ("GET", "/assets/index.js", CODEX),
    ("GET", URL, EXPORTS),
    ("POST", URL, EXPORTS),
    ("GET", URL + "/fields", EXPORTS),
    ("GET", f"{URL}/{SOME_ID}", EXPORTS),
    ("DELETE", f"{URL}/{SOME_ID}", EXPORTS),
    ("POST", f"{URL}/{SOME_ID}/cancel", EXPORTS),
    ("GET", f"{URL}/{SOME_ID}/download", EXPORTS),
    ("GET", f"{URL}/{SOME_ID}/events", EXPORTS),
    ("GET", "/api/v1/user/exports/usage", EXPORTS),
    # The page's own sign-in, user and libraries stay under the exports prefix.
    ("POST", "/api/v1/user/exports/auth/login", EXPORTS),
    ("GET", "/api/v1/user/exports/auth/me", EXPORTS),
    ("GET", "/api/v1/user/exports/libraries", EXPORTS),
    ("GET", "/settings/exports", EXPORTS),
    ("GET", "/settings/exports/", EXPORTS),
    ("GET", "/settings/exports/assets/app.js", EXPORTS),
    ("GET", "/settings/exports/assets/app.css", EXPORTS),
    ("GET", "/settings/exports/assets/icon.svg", EXPORTS),
    ("GET", "/settings/exports/assets/api.js", EXPORTS),
]


def _executable(path: Path) -> Path:
    if not path.exists():
        # Not a skip: `make test` (and so CI) installs both when missing; absent, the machine
        # is broken.
        pytest.fail(
            f"{path} is missing: the proxy tests need Debian's nginx and caddy "
            "(apt-get update && apt-get install -y nginx caddy)."
        )
    return path


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited:\n{log.read_text(errors='replace')}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not listen on {port}:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the stand-in for Codex ------------------------------------------------------------------


class _CodexHandler(BaseHTTPRequestHandler):
    """Every method on every path: ``{"upstream": "codex", "method", "path"}``."""

    protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream keepalive expects
    # Headers and body leave in one write. With the base's unbuffered writes (headers, then
    # body) Caddy 2.6 aborted about 3% of proxied POST answers; against the api (uvicorn) it
    # did not happen in 1,500 POSTs, so it is the stand-in's quirk to avoid, not a rule to test.
    wbufsize = 64 * 1024

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"upstream": "codex", "method": self.command, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def codex_standin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CodexHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="codex stand-in", daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- nginx -----------------------------------------------------------------------------------

_UPSTREAM_SERVER = re.compile(r"(upstream (\w+) \{\s*server )([^;\s]+)")
_LISTEN = re.compile(r"^(\s*listen )80;", re.MULTILINE)
_ACCESS_LOG = re.compile(r"^(\s*access_log )/var/log/nginx/", re.MULTILINE)


def site_for(codex: str, exports: str, port: int, logs: Path) -> str:
    """The shipped site file with the test's addresses and log folder: only these four lines
    change."""
    shipped = NGINX_SITE.read_text(encoding="utf-8")
    addresses = {"codex_upstream": codex, "exports_upstream": exports}
    seen: list[str] = []

    def server(match: re.Match[str]) -> str:
        seen.append(match.group(2))
        return match.group(1) + addresses[match.group(2)]

    site = _UPSTREAM_SERVER.sub(server, shipped)
    site, listens = _LISTEN.subn(rf"\g<1>127.0.0.1:{port};", site)
    site, access_logs = _ACCESS_LOG.subn(rf"\g<1>{logs}/", site)
    assert sorted(seen) == sorted(addresses) and listens == access_logs == 1, (seen, listens)
    changed = [
        line
        for line in difflib.unified_diff(shipped.splitlines(), site.splitlines(), lineterm="", n=0)
        if line.startswith("+") and not line.startswith("+++")
    ]
    assert len(changed) == 4, changed
    return site


def write_nginx_main(root: Path, site: Path) -> Path:
    """The test's wrapper: the http/events skeleton Debian's /etc/nginx/nginx.conf provides,
    with every path inside ``root``, around the site file."""
    temp = root / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
""",
        encoding="utf-8",
    )
    return conf


@dataclass
class Proxy:
    """A running proxy: its address, process, error log and temp dir."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    temp: Path

    def temp_files(self) -> list[str]:
        """Files under the proxy's temp dir: on disk, and open in a worker (nginx unlinks a
        buffering temp file as soon as it opens it, so only the worker's fds show it)."""
        on_disk = [str(p) for p in self.temp.rglob("*") if not p.is_dir()]
        opened = []
        for worker in psutil.Process(self.proc.pid).children(recursive=True):
            fds = Path(f"/proc/{worker.pid}/fd")
            with contextlib.suppress(FileNotFoundError):  # a worker that just exited
                for fd in fds.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        target = os.readlink(fd)  # "PATH (deleted)" once unlinked
                        if target.startswith(str(self.temp)):
                            opened.append(target)
        return on_disk + opened


def _start_nginx(root: Path, codex: str, exports: str) -> Proxy:
    nginx = _executable(NGINX)
    root.mkdir(parents=True)
    port = servers.free_port()
    site = root / "site.conf"
    site.write_text(site_for(codex, exports, port, root), encoding="utf-8")
    conf = write_nginx_main(root, site)
    log = root / "error.log"
    checked = subprocess.run(
        [nginx, "-t", "-p", root, "-c", conf], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    with (root / "stderr.log").open("ab") as stderr:
        proc = subprocess.Popen(
            [nginx, "-p", root, "-c", conf, "-g", "daemon off;"], stdout=stderr, stderr=stderr
        )
    _wait_for_port(port, proc, root / "stderr.log")
    return Proxy(f"http://127.0.0.1:{port}", proc, log, root / "temp")


@pytest.fixture(scope="module")
def nginx(servers_dir: Path, demo_system: System, codex_standin: str) -> Iterator[Proxy]:
    exports = demo_system.api_url.removeprefix("http://")
    proxy = _start_nginx(servers_dir / f"nginx-{uuid.uuid4().hex[:8]}", codex_standin, exports)
    try:
        yield proxy
    finally:
        _stop(proxy.proc)


# --- Caddy -----------------------------------------------------------------------------------


def _caddy_env(root: Path, **settings: str) -> dict[str, str]:
    """Caddy's storage and autosaved config inside ``root``; settings as Caddy env vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CODEX_", "CADDY_"))}
    env.update(
        HOME=str(root), XDG_DATA_HOME=str(root / "data"), XDG_CONFIG_HOME=str(root / "config")
    )
    env.update(settings)
    return env


@pytest.fixture(scope="module")
def caddy(servers_dir: Path, demo_system: System, codex_standin: str) -> Iterator[Proxy]:
    binary = _executable(CADDY)
    root = servers_dir / f"caddy-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    port = servers.free_port()
    env = _caddy_env(
        root,
        CADDY_ADMIN="off",
        CODEX_SITE=f"http://127.0.0.1:{port}",
        CODEX_UPSTREAM=codex_standin,
        CODEX_EXPORTS_UPSTREAM=demo_system.api_url.removeprefix("http://"),
    )
    log = root / "caddy.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [binary, "run", "--adapter", "caddyfile", "--config", CADDYFILE],
            env=env,
            stdout=out,
            stderr=out,
            cwd=root,
        )
    try:
        _wait_for_port(port, proc, log)
        yield Proxy(f"http://127.0.0.1:{port}", proc, log, root / "data")
    finally:
        _stop(proc)


@pytest.fixture(params=["nginx", "caddy"])
def proxy(request: pytest.FixtureRequest) -> Proxy:
    result: Proxy = request.getfixturevalue(request.param)
    return result


# --- exports made for the tests --------------------------------------------------------------


@dataclass(frozen=True)
class BigExport:
    id: str
    user_id: uuid.UUID
    size: int
    sha256: str
    etag: str


class _Generated:
    """``size`` deterministic pseudo-random bytes, read once (an upload body), hashed as read."""

    def __init__(self, size: int, seed: int) -> None:
        self.left = size
        self.random = random.Random(seed)
        self.sha = hashlib.sha256()
        self.pending = b""

    def read(self, n: int = -1) -> bytes:
        n = self.left + len(self.pending) if n < 0 else n
        parts, have = [self.pending], len(self.pending)
        while have < n and self.left:
            take = min(CHUNK, self.left)
            parts.append(self.random.randbytes(take))
            have += take
            self.left -= take
        data = b"".join(parts)
        out, self.pending = data[:n], data[n:]
        self.sha.update(out)
        return out


async def _running_export(pool: asyncpg.Pool, user_id: uuid.UUID) -> exports_repo.ExportRow:
    """An export row as a worker has it while running (claimed by WORKER_ID, never queued on
    the bus, so no real worker takes it)."""
    library = await pool.fetchrow("SELECT id, name FROM libraries ORDER BY name LIMIT 1")
    created = datetime.now(UTC)
    export_id = uuid.uuid4()
    file_name = naming.export_file_name("series", "json", [library["name"]], created)
    new = exports_repo.NewExport(
        id=export_id,
        user_id=user_id,
        format="json",
        export_type="series",
        library_ids=[library["id"]],
        library_names=[library["name"]],
        fields=["title"],
        book_fields=[],
        file_name=file_name,
        object_key=naming.object_key(user_id, export_id, file_name),
        created_at=created,
        expires_at=created + timedelta(days=1),
    )
    async with pool.acquire() as conn:
        await exports_repo.insert_export(conn, new, max_active=3)
    row = await exports_repo.claim(pool, export_id, WORKER_ID, stale_after_seconds=60)
    assert row is not None
    return row


@pytest.fixture(scope="module")
async def pool(demo_database: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(demo_database, min_size=1, max_size=2)
    assert p is not None
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture(scope="module")
async def big_export(
    pool: asyncpg.Pool, demo_database: str, demo_system: System, real_servers: Servers
) -> AsyncIterator[BigExport]:
    """A completed export whose object is BIG_SIZE generated bytes (a real render of that size
    would take minutes on two cores; the download path cannot tell the difference)."""
    user_id = await new_user(demo_database)
    row = await _running_export(pool, user_id)
    store = Minio(
        real_servers.s3_endpoint,
        access_key=real_servers.s3_access_key,
        secret_key=real_servers.s3_secret_key,
        secure=False,
    )
    body = _Generated(BIG_SIZE, seed=5)
    bucket = demo_system.env.get("EXPORTS_S3_BUCKET", "codex-exports")
    await asyncio.to_thread(
        store.put_object,
        bucket,
        row.object_key,
        body,  # type: ignore[arg-type]
        length=BIG_SIZE,
        # Uploaded in the workers' parts. After a big upload, SeaweedFS's volume server may take
        # about 27 s to stop at the end of the test session (seen in most runs with 64 MiB
        # parts, in a few with these); it slows the session's end, never a result.
        part_size=Settings().part_size_bytes,
        content_type="application/json",
    )
    sha = body.sha.hexdigest()
    done = await exports_repo.complete(
        pool, row.id, WORKER_ID, row_count=1, file_size_bytes=BIG_SIZE, sha256=sha
    )
    assert done is not None
    try:
        yield BigExport(str(row.id), user_id, BIG_SIZE, sha, f'"{sha}"')
    finally:
        async with httpx.AsyncClient(
            base_url=demo_system.api_url, headers=_auth(demo_system, user_id)
        ) as client:
            await client.delete(f"{URL}/{row.id}")  # the row and its object


def _auth(system: System, user_id: uuid.UUID) -> dict[str, str]:
    return {"Authorization": f"Bearer {system.token(user_id)}"}


def _download_count(system: System, status: str) -> float:
    """How many downloads the api has finished (its histogram counts a request at its end)."""
    text = httpx.get(system.api_url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if (
            line.startswith("exports_http_request_duration_seconds_count{")
            and f'route="{DOWNLOAD_ROUTE}"' in line
            and f'status="{status}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- the shipped files, offline --------------------------------------------------------------


def test_the_shipped_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    nginx = _executable(NGINX)
    conf = write_nginx_main(tmp_path, NGINX_SITE)
    checked = subprocess.run(
        [nginx, "-t", "-p", tmp_path, "-c", conf], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


def test_the_nginx_site_streams_and_passes_ranges() -> None:
    site = NGINX_SITE.read_text(encoding="utf-8")
    server = site[site.index("server {") :]
    directives = {
        line.strip().rstrip(";")
        for line in server.splitlines()
        if line.strip() and not line.strip().startswith("#")
    }
    for needed in (
        "proxy_buffering off",
        "proxy_max_temp_file_size 0",
        "proxy_http_version 1.1",
        'proxy_set_header Connection ""',
        "proxy_set_header Range $http_range",
        "proxy_set_header If-Range $http_if_range",
        "proxy_read_timeout 1h",
    ):
        assert needed in directives, needed
    # No location may re-enable buffering or caching for itself.
    assert "proxy_buffering on" not in directives
    assert not any(d.startswith("proxy_cache ") and d != "proxy_cache off" for d in directives)


def _handlers(node: Any, name: str) -> Iterator[dict[str, Any]]:
    """Every handler called ``name`` in Caddy's JSON config."""
    if isinstance(node, dict):
        if node.get("handler") == name:
            yield node
        for value in node.values():
            yield from _handlers(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _handlers(value, name)


def test_the_caddyfile_is_valid_and_formatted(tmp_path: Path) -> None:
    caddy = _executable(CADDY)
    checked = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", CADDYFILE],
        capture_output=True,
        text=True,
        env=_caddy_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "Valid configuration" in checked.stdout + checked.stderr
    assert "not formatted" not in checked.stderr
    adapted = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", CADDYFILE],
        capture_output=True,
        text=True,
        env=_caddy_env(tmp_path),
        cwd=tmp_path,
        check=True,
    )
    proxies = list(_handlers(json.loads(adapted.stdout), "reverse_proxy"))
    assert sorted(p["upstreams"][0]["dial"] for p in proxies) == [
        "127.0.0.1:8080",
        "127.0.0.1:8081",
    ]
    assert all(p["flush_interval"] == -1 for p in proxies), proxies


def _ingress_backend(paths: list[dict[str, Any]], path: str) -> str:
    """Kubernetes "Prefix" matching: whole path elements, the longest match wins."""
    best, backend = -1, ""
    for rule in paths:
        assert rule["pathType"] == "Prefix"
        prefix = rule["path"].rstrip("/")
        elements = [e for e in prefix.split("/") if e]
        if path.split("?")[0].split("/")[1 : len(elements) + 1] == elements and (
            len(elements) > best
        ):
            best, backend = len(elements), rule["backend"]["service"]["name"]
    return backend


def test_the_ingress_passes_the_schemas_and_routes_like_the_proxies() -> None:
    objects = yaml_documents(INGRESS)
    version = kubernetes_validate.latest_version()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {err.message}")
    (ingress,) = by_kind(objects, "Ingress").values()
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["nginx.ingress.kubernetes.io/proxy-max-temp-file-size"] == "0"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    (rule,) = ingress["spec"]["rules"]
    paths = rule["http"]["paths"]
    assert {p["path"] for p in paths} == {"/", "/api/v1/user/exports", "/settings/exports"}

    # The api's Service and port exist in the codex-exports base; Codex's is the ExternalName.
    api_services = by_kind(yaml_documents(K8S / "api.yaml"), "Service")
    codex_service = by_kind(objects, "Service")["codex"]
    names = {CODEX: "codex", EXPORTS: "codex-exports-api"}
    for p in paths:
        service = p["backend"]["service"]
        if service["name"] == names[EXPORTS]:
            ports = api_services[service["name"]]["spec"]["ports"]
        else:
            assert service["name"] == names[CODEX]
            ports = codex_service["spec"]["ports"]
        port = service["port"]
        key, value = ("name", port["name"]) if "name" in port else ("port", port["number"])
        assert any(q.get(key) == value for q in ports), service
    for _, path, expected in ROUTES:
        assert _ingress_backend(paths, path) == names[expected], path


# --- routing through the running proxies -----------------------------------------------------


def _upstream(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("upstream") == "codex":
        return CODEX
    # Every answer of the api carries its request id; the stand-in sends none.
    return EXPORTS if "x-request-id" in response.headers else f"? {response.status_code}"


@pytest.fixture(scope="module")
async def someone(demo_database: str) -> uuid.UUID:
    """A user with no exports."""
    return await new_user(demo_database)


def test_routes_reach_codex_or_the_api(
    proxy: Proxy, demo_system: System, someone: uuid.UUID
) -> None:
    headers = _auth(demo_system, someone)
    with httpx.Client(base_url=proxy.url, headers=headers, timeout=30) as client:
        seen = {}
        for method, path, _ in ROUTES:
            body = {"username": "u", "password": "p"} if method == "POST" else None
            seen[(method, path)] = _upstream(client.request(method, path, json=body))
        assert seen == {(m, p): expected for m, p, expected in ROUTES}

        # What arrives is what the api serves: the page, its assets, the API's answers.
        page = client.get("/settings/exports")
        assert page.status_code == 200
        assert page.content == (STATIC_DIR / "index.html").read_bytes()
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("app.js", "app.css", "icon.svg", "api.js"):
            served = client.get(f"/settings/exports/assets/{asset}")
            assert served.status_code == 200, asset
            assert served.content == (STATIC_DIR / asset).read_bytes(), asset
        assert client.get(URL).json() == {"exports": []}
        assert {"fields", "bookFields"} <= set(client.get(URL + "/fields").json())
        assert client.get(f"{URL}/{SOME_ID}").json()["error"] == "NotFound"
        # The stand-in sees the path as the client sent it.
        codex = client.get("/api/v1/series?page=2").json()
        assert codex == {"upstream": "codex", "method": "GET", "path": "/api/v1/series?page=2"}


# --- streaming, Range and events through nginx -----------------------------------------------


def test_a_large_download_streams_through_nginx_without_buffering(
    nginx: Proxy, demo_system: System, big_export: BigExport
) -> None:
    finished_before = _download_count(demo_system, "200")
    path = f"{URL}/{big_export.id}/download"
    sha = hashlib.sha256()
    received = 0
    in_flight_at_first_bytes: float | None = None
    temp_files: list[str] = []
    paused = False
    with httpx.Client(
        base_url=nginx.url, headers=_auth(demo_system, big_export.user_id), timeout=60
    ) as client:
        started = time.monotonic()
        with client.stream("GET", path) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(big_export.size)
            assert response.headers["etag"] == big_export.etag
            assert "content-encoding" not in response.headers
            for chunk in response.iter_raw(CHUNK):
                if not received:
                    first_byte = time.monotonic() - started
                    # The api counts a download when it has sent the last byte.
                    in_flight_at_first_bytes = _download_count(demo_system, "200")
                received += len(chunk)
                sha.update(chunk)
                if received % (32 * CHUNK) < len(chunk):
                    temp_files += nginx.temp_files()
                if not paused and received >= 16 * CHUNK:
                    # A slow client for a moment: a buffering proxy would now fill its temp
                    # file from the faster upstream; a streaming one holds the api back.
                    paused = True
                    time.sleep(PAUSE_SECONDS)
                    temp_files += nginx.temp_files()
        elapsed = time.monotonic() - started
    assert received == big_export.size
    assert sha.hexdigest() == big_export.sha256
    # Streamed: the first bytes came while the api was still sending the file.
    assert in_flight_at_first_bytes == finished_before
    # Not buffered: nothing went to nginx's temp dir, during the download or after it.
    assert temp_files == []
    assert nginx.temp_files() == []
    assert "buffered to a temporary file" not in nginx.log.read_text(errors="replace")
    deadline = time.monotonic() + 10
    while _download_count(demo_system, "200") == finished_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _download_count(demo_system, "200") == finished_before + 1
    print(
        f"\nnginx download: {received / 1e6:.0f} MB in {elapsed:.2f} s with a"
        f" {PAUSE_SECONDS:.0f} s pause ({received / 1e6 / (elapsed - PAUSE_SECONDS):.0f} MB/s"
        f" otherwise), first byte after {first_byte * 1000:.0f} ms"
    )


def test_an_interrupted_download_resumes_with_range_through_nginx(
    nginx: Proxy, demo_system: System, big_export: BigExport
) -> None:
    path = f"{URL}/{big_export.id}/download"
    sha = hashlib.sha256()
    with httpx.Client(
        base_url=nginx.url, headers=_auth(demo_system, big_export.user_id), timeout=60
    ) as client:
        # The first attempt breaks off after 10 MiB (the client closes the connection).
        with client.stream("GET", path) as response:
            assert response.status_code == 200
            kept = 0
            for chunk in response.iter_raw(CHUNK):
                sha.update(chunk)
                kept += len(chunk)
                if kept >= 10 * CHUNK:
                    break
        # Resumed as `curl -C -` or the CLI does: Range from what is kept, If-Range the ETag.
        resume = {"Range": f"bytes={kept}-", "If-Range": big_export.etag}
        last = b""
        with client.stream("GET", path, headers=resume) as response:
            assert response.status_code == 206
            assert response.headers["content-range"] == (
                f"bytes {kept}-{big_export.size - 1}/{big_export.size}"
            )
            assert response.headers["content-length"] == str(big_export.size - kept)
            for chunk in response.iter_raw(CHUNK):
                sha.update(chunk)
                kept += len(chunk)
                last = (last + chunk)[-100:]
        assert kept == big_export.size
        assert sha.hexdigest() == big_export.sha256

        # A suffix range comes back exact.
        tail = client.get(path, headers={"Range": "bytes=-100"})
        assert tail.status_code == 206
        assert tail.headers["content-range"] == (
            f"bytes {big_export.size - 100}-{big_export.size - 1}/{big_export.size}"
        )
        assert tail.content == last

        # A file that changed since the first attempt (another ETag) comes back whole.
        stale = {"Range": "bytes=100-", "If-Range": '"another-file"'}
        whole = hashlib.sha256()
        with client.stream("GET", path, headers=stale) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(big_export.size)
            for chunk in response.iter_raw(CHUNK):
                whole.update(chunk)
        assert whole.hexdigest() == big_export.sha256


async def test_progress_events_arrive_live_through_nginx(
    nginx: Proxy, demo_system: System, demo_database: str, pool: asyncpg.Pool
) -> None:
    user = await new_user(demo_database)
    row = await _running_export(pool, user)
    seen: list[dict[str, Any]] = []
    # Each step changes the export only after the previous event came through: every event
    # must reach the client while the stream is open, none may wait for the stream's end.
    steps = [(10, 100), (55, 100), None]
    async with (
        httpx.AsyncClient(
            base_url=nginx.url, headers=_auth(demo_system, user), timeout=30
        ) as client,
        client.stream("GET", f"{URL}/{row.id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "status":
                seen.append(json.loads(line[6:]))
                if not steps:
                    continue
                step = steps.pop(0)
                if step is None:
                    cancelled = await client.post(f"{URL}/{row.id}/cancel")
                    assert cancelled.status_code == 200, cancelled.text
                else:
                    status = await exports_repo.heartbeat(pool, row.id, WORKER_ID, *step)
                    assert status == "running"
    assert [(e["status"], e["rowsWritten"]) for e in seen] == [
        ("running", 0),
        ("running", 10),
        ("running", 55),
        ("cancelled", 55),
    ]
    assert seen[1]["rowsTotal"] == 100


# --- download links leave no token in the proxies' logs -------------------------------------


def test_download_links_work_through_the_proxy_and_stay_out_of_its_logs(
    proxy: Proxy, demo_system: System, big_export: BigExport
) -> None:
    """A link downloads through the proxy with no other credential (a range, a cut transfer,
    a refusal), and the proxy's access log holds the requests without their tokens."""
    with httpx.Client(
        base_url=proxy.url, headers=_auth(demo_system, big_export.user_id), timeout=60
    ) as client:
        made = client.post(f"{URL}/{big_export.id}/download-link")
        assert made.status_code == 200, made.text
    url = made.json()["url"]
    token = url.split("token=", 1)[1]
    with httpx.Client(base_url=proxy.url, timeout=60) as anonymous:
        part = anonymous.get(url, headers={"Range": "bytes=0-1048575", "If-Range": big_export.etag})
        assert part.status_code == 206
        assert len(part.content) == CHUNK
        # Cut by the client after 4 MiB, as a broken connection would.
        with anonymous.stream("GET", url) as response:
            assert response.status_code == 200
            got = 0
            for chunk in response.iter_raw(CHUNK):
                got += len(chunk)
                if got >= 4 * CHUNK:
                    break
        tampered = anonymous.get(url.replace(token, token[:-4] + "AAAA"))
        assert tampered.status_code == 401
        assert tampered.json()["message"].startswith("This download link is not valid")
    secrets = (token, token.split(".")[1], token.split(".")[2], token[:-4] + "AAAA")
    access = proxy.log.parent / "access.log" if proxy.log.name == "error.log" else proxy.log
    deadline = time.monotonic() + 10
    while url.split("?")[0] not in access.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the request never reached the access log"
        time.sleep(0.1)
    text = access.read_text(errors="replace")
    assert f"{URL}/{big_export.id}/download" in text  # the requests are logged
    for secret in secrets:
        assert secret not in text, f"a download token is in {access.name}"
    if proxy.log.name == "error.log":
        # nginx's error log names the request line of what it reports; it does so only at
        # level info here (the client that went away), below Debian's default level, error.
        for line in proxy.log.read_text(errors="replace").splitlines():
            if any(secret in line for secret in secrets):
                assert "[info]" in line, line
