"""Bad input stays small: request bodies are bounded in size and in time on every endpoint,
and a value quoted in an error message is cut short, over HTTP and over ``export.submit``.

One api process of its own (body deadline lowered to 2 s, a NATS server that takes 8 MB
messages so ``export.submit`` can be sent more than the limit), its RSS sampled throughout.
Bodies are sent over raw sockets, so a test controls exactly what is sent and when.
"""

from __future__ import annotations

import json
import select
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
import pytest

from services.cli import servers
from tests.conftest import Servers, first_library, new_user, service_env
from tests.system import System, make_system

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
LIMIT = MiB  # the default EXPORTS_MAX_BODY_BYTES
DEADLINE = 2.0  # EXPORTS_BODY_TIMEOUT_SECONDS of this module's api
RSS_GROWTH_BOUND = 100 * MiB
URL = "/api/v1/user/exports/series"
TOO_LARGE = {"error": "PayloadTooLarge", "message": "Request body is too large (limit: 1 MiB)"}
TOO_SLOW = {
    "error": "RequestTimeout",
    "message": "Request body took too long to arrive (limit: 2 seconds)",
}


# --- the api under test ------------------------------------------------------------------


@pytest.fixture(scope="module")
def roomy_nats(servers_dir: Path) -> Iterator[str]:
    """A NATS server whose messages may be 8 MB (the default max_payload is 1 MiB)."""
    port, monitor = servers.free_port(), servers.free_port()
    root = servers_dir / f"nats-roomy-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    config = root / "nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\nhttp: "127.0.0.1:{monitor}"\nmax_payload: 8MB\n'
        f'jetstream {{ store_dir: "{root / "js"}" }}\n'
    )
    with (root / "nats.log").open("ab") as log:
        proc = subprocess.Popen(
            [str(servers.nats_server_binary()), "-c", str(config)], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{monitor}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                root / "nats.log"
            ).read_text()
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def api(
    real_servers: Servers, demo_database: str, roomy_nats: str, servers_dir: Path
) -> Iterator[System]:
    env = service_env(
        real_servers,
        demo_database,
        EXPORTS_NATS_URL=roomy_nats,
        EXPORTS_BODY_TIMEOUT_SECONDS=str(DEADLINE),
        EXPORTS_S3_BUCKET="body-limits",
    )
    system = make_system(env, servers_dir / "logs-body-limits")
    system.start("api")
    try:
        yield system
    finally:
        system.stop()


@pytest.fixture(scope="module")
async def caller(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
async def library(demo_database: str) -> str:
    return await first_library(demo_database)


class Memory:
    """The api's resident memory, sampled every 20 ms from its warmed-up start on."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def check(self) -> None:
        grown = self.peak - self.start
        print(f"api RSS: start {self.start / MiB:.1f} MiB, peak {self.peak / MiB:.1f} MiB")
        assert grown < RSS_GROWTH_BOUND, f"the api grew by {grown / MiB:.0f} MiB"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def memory(api: System, caller: uuid.UUID, library: str) -> Iterator[Memory]:
    # Warm up every path the tests take (imports, caches, pools) before the baseline.
    with api.client(caller) as client:
        for _ in range(3):
            client.post(URL, json={"format": "json", "libraryIds": ["x"], "fields": ["title"]})
            client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x"})
            client.get(URL)
            client.post("/api/v1/user/api-keys", content=b"{")
    sampler = Memory(api.processes["api"].pid)
    try:
        yield sampler
    finally:
        sampler.stop()
        sampler.check()


# --- every endpoint, over a raw socket -----------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # path parameters filled with a random id
    takes_body: bool

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def endpoints(api: System) -> list[Endpoint]:
    """Every operation of the api's own OpenAPI document, and the page."""
    document = httpx.get(api.api_url + "/openapi.json", timeout=10).json()
    found = [Endpoint("GET", "/settings/exports", False)]
    for template, item in document["paths"].items():
        path = template
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            path = path[:start] + str(uuid.uuid4()) + path[end + 1 :]
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                found.append(Endpoint(method.upper(), path, "requestBody" in operation))
    return found


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes sent before the answer came
    seconds: float  # from the request's head to the answer's end (the server closing)

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(
    api: System,
    endpoint: Endpoint,
    head: dict[str, str],
    body: Iterable[bytes],
    token: str,
) -> Answer:
    """Send the head, then the body's pieces until the server answers; read to the end.

    Every answer that cuts a body short closes the connection, so the read ends with the
    server closing it (a test that hangs here found a connection left open)."""
    host, port = api.api_url.removeprefix("http://").split(":")
    lines = [
        f"{endpoint.method} {endpoint.path} HTTP/1.1",
        f"Host: {host}:{port}",
        f"Authorization: Bearer {token}",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in head.items()),
    ]
    started = time.monotonic()
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # answered (or closed): a client stops sending then
            try:
                sock.sendall(piece)
            except OSError:  # reset, broken pipe, or a send blocked past the timeout
                break
            sent += len(piece)
        data = b""
        while True:
            try:
                part = sock.recv(1 << 16)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
    seconds = time.monotonic() - started
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), f"{endpoint}: no answer ({data[:200]!r})"
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, payload, sent, seconds)


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield b"%x\r\n%s\r\n" % (len(piece), piece)


def endless(total: int = 50 * MiB, piece: int = 64 * 1024) -> Iterator[bytes]:
    """A body that goes on for as long as anyone reads it (here: at most ``total`` bytes)."""
    data = b"[" + b"1," * (piece // 2)
    for _ in range(total // len(data)):
        yield data


def trickle(seconds: float = 20.0, every: float = 0.25) -> Iterator[bytes]:
    """A byte every ``every`` seconds, for at most ``seconds``."""
    for _ in range(int(seconds / every)):
        time.sleep(every)
        yield b" "


# --- the tests ---------------------------------------------------------------------------


def test_a_declared_200_mb_body_is_refused_before_it_is_read(
    api: System, caller: uuid.UUID, memory: Memory
) -> None:
    for endpoint in endpoints(api):
        # Only 256 KiB of the 200 MB follow the head: the answer may not wait for the rest.
        answer = exchange(
            api,
            endpoint,
            {"Content-Length": str(200 * 1000 * 1000)},
            [b"x" * (64 * 1024)] * 4,
            api.token(caller),
        )
        assert (answer.status, answer.json()) == (413, TOO_LARGE), endpoint
        assert answer.headers["connection"] == "close", endpoint
    memory.check()


def test_the_limit_is_exactly_one_mib(
    api: System, caller: uuid.UUID, library: str, memory: Memory
) -> None:
    """1 MiB is accepted (and validated as usual), one byte more is refused, declared or chunked."""
    body = json.dumps({"format": "json", "libraryIds": ["nope"], "fields": ["title"]}).encode()
    at_limit = body + b" " * (LIMIT - len(body))
    endpoint = Endpoint("POST", URL, True)
    for framing in ("length", "chunked"):
        for payload, status in ((at_limit, 400), (at_limit + b" ", 413)):
            if framing == "length":
                head = {"Content-Length": str(len(payload)), "Connection": "close"}
                pieces: Iterable[bytes] = [payload]
            else:
                head = {"Transfer-Encoding": "chunked", "Connection": "close"}
                pieces = [*chunked(payload[i : i + 65536] for i in range(0, len(payload), 65536))]
                pieces.append(b"0\r\n\r\n")
            answer = exchange(api, endpoint, head, pieces, api.token(caller))
            assert answer.status == status, (framing, len(payload), answer.body[:300])
            if status == 400:
                assert answer.json()["message"] == "Unknown library: nope"
            else:
                assert answer.json() == TOO_LARGE
    memory.check()


def test_endless_and_slow_bodies_are_cut_off_while_others_are_served(
    api: System, caller: uuid.UUID, memory: Memory
) -> None:
    token = api.token(caller)
    every = endpoints(api)
    kinds = {
        "endless chunked": lambda: ({"Transfer-Encoding": "chunked"}, chunked(endless())),
        "slow chunked": lambda: ({"Transfer-Encoding": "chunked"}, chunked(trickle())),
        "slow with length": lambda: ({"Content-Length": "100"}, trickle()),
    }
    jobs = [(endpoint, kind) for endpoint in every for kind in kinds]

    def run(endpoint: Endpoint, kind: str) -> Answer:
        head, body = kinds[kind]()
        return exchange(api, endpoint, head, body, token)

    # Meanwhile other users' requests are answered, each within a generous bound.
    served = 0
    with ThreadPoolExecutor(len(jobs)) as pool, api.client(caller) as other:
        futures = {(e, k): pool.submit(run, e, k) for e, k in jobs}
        while not all(f.done() for f in futures.values()):
            for path in ("/healthz", URL):
                started = time.monotonic()
                assert other.get(path).status_code == 200, path
                assert time.monotonic() - started < 5, f"{path} took too long"
                served += 1
            time.sleep(0.1)
        answers = {job: future.result() for job, future in futures.items()}
    assert served >= 10

    for (endpoint, kind), answer in answers.items():
        where = f"{endpoint}, {kind}"
        assert answer.headers.get("connection") == "close", where
        if endpoint.takes_body and kind == "endless chunked":
            assert (answer.status, answer.json()) == (413, TOO_LARGE), where
            assert answer.sent < 50 * MiB, where  # cut off, not read to the end
        elif endpoint.takes_body:
            assert (answer.status, answer.json()) == (408, TOO_SLOW), where
            assert DEADLINE - 0.5 < answer.seconds < DEADLINE + 15, where
        else:
            # An endpoint that reads no body answers at once, and the connection ends there.
            assert answer.status < 500, where
            assert answer.status not in (408, 413), where
            assert answer.seconds < 15, where
    memory.check()


def test_ordinary_requests_keep_their_connection(
    api: System, caller: uuid.UUID, library: str
) -> None:
    """Only a body cut short closes the connection: a read body or no body keeps it alive."""
    with api.client(caller) as client:
        body = {"format": "json", "libraryIds": ["nope"], "fields": ["title"]}
        for response in (client.get(URL), client.post(URL, json=body), client.get("/healthz")):
            assert response.headers.get("connection", "keep-alive") == "keep-alive"
        assert client.post(URL, json=body).json()["message"] == "Unknown library: nope"


@pytest.mark.parametrize(
    ("patch", "prefix"),
    [
        ({"libraryIds": ["L" * 1_000_000]}, "Unknown library: "),
        ({"fields": ["title", "k" * 1_000_000]}, "Unknown series field: "),
        ({"exportType": "books", "bookFields": ["k" * 1_000_000]}, "Unknown book field: "),
    ],
    ids=["library-id", "series-field", "book-field"],
)
def test_a_megabyte_of_bad_value_is_a_short_message(
    api: System,
    caller: uuid.UUID,
    library: str,
    memory: Memory,
    patch: dict[str, Any],
    prefix: str,
) -> None:
    body = {"format": "json", "libraryIds": [library], "fields": ["title"], **patch}
    value = next(v for v in patch.values() if isinstance(v, list))[-1]
    with api.client(caller) as client:
        response = client.post(URL, json=body)
    assert response.status_code == 400
    message = response.json()["message"]
    assert message == prefix + value[:64] + "…"
    assert len(response.content) < 200
    memory.check()


async def test_export_submit_quotes_values_short_and_keeps_the_limit(
    api: System, roomy_nats: str, caller: uuid.UUID, library: str, memory: Memory
) -> None:
    nc = await nats.connect(roomy_nats)
    try:
        bad = {
            "userId": str(caller),
            "request": {"format": "json", "libraryIds": ["L" * 1_000_000], "fields": ["title"]},
        }
        reply = await nc.request("export.submit", json.dumps(bad).encode(), timeout=30)
        assert len(reply.data) < 200
        assert json.loads(reply.data) == {
            "error": "ValidationError",
            "message": "Unknown library: " + "L" * 64 + "…",
        }
        # Past the limit (this NATS server takes up to 8 MB): refused unread, as over HTTP.
        huge = {**bad, "request": {**bad["request"], "libraryIds": ["L" * (6 * MiB)]}}
        reply = await nc.request("export.submit", json.dumps(huge).encode(), timeout=30)
        assert json.loads(reply.data) == TOO_LARGE
    finally:
        await nc.close()
    memory.check()


def test_a_new_user_posting_200_mb_with_httpx_gets_the_413(
    api: System, caller: uuid.UUID, memory: Memory
) -> None:
    """What a script does: the whole body in one call; it reads the answer once refused."""
    body = b'{"format": "json", "libraryIds": ["' + b"L" * (200 * 1000 * 1000) + b'"]}'
    with api.client(caller) as client:
        response = client.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert (response.status_code, response.json()) == (413, TOO_LARGE)
    memory.check()
