"""Request rate limits as Codex has them, on real api processes sharing one real NATS.

Two api processes (A and B) with small limits, against a NATS server of this module's own (a
fresh key-value bucket). Every bucket refills one token per 5 s, so a burst sent at once
never sees a refill in between. Anonymous clients are told apart by ``X-Forwarded-For``,
which the apis believe from 127.0.0.1 (the default ``EXPORTS_FORWARDED_ALLOW_IPS``), and a
connection from 127.0.0.2 shows that nobody else can pick their address. Each test uses users
and addresses of its own, so no test drains another's bucket.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from services.cli import servers
from tests.conftest import Servers, create_database, new_user, service_env
from tests.system import System, make_system

pytestmark = pytest.mark.integration

URL = "/api/v1/user/exports/series"
USER_BURST = 5
ANON_BURST = 4
LIMITS = {
    "EXPORTS_RATE_LIMIT_USER_PER_SECOND": "0.2",
    "EXPORTS_RATE_LIMIT_USER_BURST": str(USER_BURST),
    "EXPORTS_RATE_LIMIT_ANON_PER_SECOND": "0.2",
    "EXPORTS_RATE_LIMIT_ANON_BURST": str(ANON_BURST),
}
HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture(scope="module")
def nats_url(servers_dir: Path) -> Iterator[str]:
    nats = servers.start_nats(servers_dir / f"nats-ratelimit-{uuid.uuid4().hex[:8]}")
    try:
        yield nats.url
    finally:
        nats.stop()


@pytest.fixture(scope="module")
async def database(real_servers: Servers) -> str:
    return await create_database(real_servers)


def _start_api(env: dict[str, str], log_dir: Path) -> System:
    system = make_system(env, log_dir)
    system.start("api")
    return system


@pytest.fixture(scope="module")
def apis(
    real_servers: Servers, database: str, nats_url: str, servers_dir: Path
) -> Iterator[tuple[System, System]]:
    env = service_env(
        real_servers, database, EXPORTS_NATS_URL=nats_url, EXPORTS_S3_BUCKET="ratelimit", **LIMITS
    )
    tag = uuid.uuid4().hex[:6]
    first = _start_api(env, servers_dir / f"logs-ratelimit-{tag}-a")
    try:
        second = _start_api(env, servers_dir / f"logs-ratelimit-{tag}-b")
        try:
            yield first, second
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture
async def user(database: str) -> uuid.UUID:
    return await new_user(database)


@pytest.fixture
async def someone(database: str) -> uuid.UUID:
    return await new_user(database)


def address() -> str:
    """An address of the documentation range no other test uses."""
    n = uuid.uuid4().int
    return f"198.{18 + n % 2}.{n >> 8 & 255}.{n >> 16 & 255}"


def anon(api: System, ip: str, path: str = "/settings/exports", **kw: object) -> httpx.Response:
    headers = {"X-Forwarded-For": ip, **kw.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.request(
        str(kw.pop("method", "GET")),
        api.api_url + path,
        headers=headers,
        timeout=30,
        **kw,  # type: ignore[arg-type]
    )


def as_user(api: System, user: uuid.UUID, ip: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    with api.client(user) as client:
        return client.get(URL, headers=headers)


def limit_headers(response: httpx.Response) -> tuple[int, int, int]:
    return tuple(int(response.headers[h]) for h in HEADERS)  # type: ignore[return-value]


def refused_properly(response: httpx.Response, burst: int) -> int:
    """The 429 as Codex sends it, with the API's error body; its Retry-After."""
    assert response.status_code == 429, response.text
    retry = int(response.headers["retry-after"])
    assert 1 <= retry <= 5  # one token takes 5 s
    unit = "second" if retry == 1 else "seconds"
    assert response.json() == {
        "error": "RateLimitExceeded",
        "message": f"Too many requests. Please retry after {retry} {unit}.",
    }
    assert limit_headers(response) == (burst, 0, retry)
    return retry


# --- the headers -----------------------------------------------------------------------------


def test_every_response_carries_the_limit_headers(
    apis: tuple[System, System], user: uuid.UUID
) -> None:
    api, _ = apis
    with api.client(user) as client:
        answers = [
            client.get(URL),
            client.get(f"{URL}/fields"),
            client.get(f"{URL}/{uuid.uuid4()}"),
            client.post(URL, json={"format": "nope", "libraryIds": [str(uuid.uuid4())]}),
        ]
    assert [r.status_code for r in answers] == [200, 200, 404, 400]
    # The user's bucket: one token fewer each time, none needed yet.
    assert [limit_headers(r) for r in answers] == [(USER_BURST, n, 0) for n in (4, 3, 2, 1)]

    anonymous = [
        anon(api, address()),
        anon(api, address(), "/settings/exports/assets/app.js"),
        anon(api, address(), "/no/such/path"),
        anon(
            api,
            address(),
            "/api/v1/auth/login",
            method="POST",
            json={"username": "nobody", "password": "wrong"},
        ),
        anon(api, address(), URL),  # no credential: 401
    ]
    assert [r.status_code for r in anonymous] == [200, 200, 404, 401, 401]
    # A fresh address each time: a full bucket of the anonymous size each time.
    assert {limit_headers(r) for r in anonymous} == {(ANON_BURST, ANON_BURST - 1, 0)}


# --- over the limit, and back ------------------------------------------------------------


def test_past_the_burst_a_user_gets_429_with_retry_after_until_a_token_refills(
    apis: tuple[System, System], user: uuid.UUID
) -> None:
    api, _ = apis
    passed = [as_user(api, user) for _ in range(USER_BURST)]
    assert [r.status_code for r in passed] == [200] * USER_BURST
    assert [int(r.headers["x-ratelimit-remaining"]) for r in passed] == [4, 3, 2, 1, 0]
    # The last token is taken: the reset says when the next one comes.
    assert 1 <= int(passed[-1].headers["x-ratelimit-reset"]) <= 5

    refused_properly(as_user(api, user), USER_BURST)

    # A refusal takes nothing: polling does not push the refill back. Once a token is back,
    # exactly one request passes.
    deadline = time.monotonic() + 30
    while (again := as_user(api, user)).status_code == 429:
        refused_properly(again, USER_BURST)
        assert time.monotonic() < deadline, "no token came back"
        time.sleep(0.25)
    assert again.status_code == 200
    assert int(again.headers["x-ratelimit-remaining"]) == 0
    refused_properly(as_user(api, user), USER_BURST)


def test_each_user_and_each_address_has_a_bucket_of_its_own(
    apis: tuple[System, System], user: uuid.UUID, someone: uuid.UUID
) -> None:
    api, _ = apis
    for _ in range(USER_BURST):
        assert as_user(api, user).status_code == 200
    assert as_user(api, user).status_code == 429

    crowded, other = address(), address()
    for _ in range(ANON_BURST):
        assert anon(api, crowded).status_code == 200
    refused_properly(anon(api, crowded), ANON_BURST)

    assert anon(api, other).status_code == 200
    # A signed-in user behind the drained address counts in their own bucket, not its.
    assert as_user(api, someone).status_code == 200
    behind = as_user(api, someone, ip=crowded)
    assert behind.status_code == 200
    assert limit_headers(behind) == (USER_BURST, USER_BURST - 2, 0)


def test_failed_credentials_count_against_the_address(
    apis: tuple[System, System], user: uuid.UUID
) -> None:
    """Guessing keys or replaying bad tokens is limited like any anonymous traffic."""
    api, _ = apis
    ip = address()
    bad = [
        anon(api, ip, URL, headers={"Authorization": "Bearer not-a-token"}),
        anon(api, ip, URL, headers={"X-API-Key": "codex_0123456789abcdef_" + "0" * 32}),
        anon(api, ip, URL, headers={"X-API-Key": "cxk_guess"}),
        anon(api, ip, "/api/v1/auth/me", headers={"Authorization": "Bearer x.y.z"}),
    ]
    assert [r.status_code for r in bad] == [401] * ANON_BURST
    assert [int(r.headers["x-ratelimit-remaining"]) for r in bad] == [3, 2, 1, 0]
    refused_properly(anon(api, ip, URL, headers={"Authorization": "Bearer again"}), ANON_BURST)
    # A good credential from there is its user's business.
    assert as_user(api, user, ip=ip).status_code == 200


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    apis: tuple[System, System],
) -> None:
    """From 127.0.0.2 (not in EXPORTS_FORWARDED_ALLOW_IPS) a new X-Forwarded-For each time
    changes nothing: the connection's own address is the bucket."""
    api, _ = apis
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=api.api_url, transport=transport, timeout=30) as client:
        answers = [
            client.get("/settings/exports", headers={"X-Forwarded-For": address()})
            for _ in range(ANON_BURST + 1)
        ]
    assert [r.status_code for r in answers] == [200] * ANON_BURST + [429]


# --- several replicas ------------------------------------------------------------------------


def test_two_apis_share_one_bucket(apis: tuple[System, System], user: uuid.UUID) -> None:
    first, second = apis
    alternating = [as_user((first, second)[n % 2], user) for n in range(USER_BURST)]
    assert [r.status_code for r in alternating] == [200] * USER_BURST
    assert [int(r.headers["x-ratelimit-remaining"]) for r in alternating] == [4, 3, 2, 1, 0]
    refused_properly(as_user(first, user), USER_BURST)
    refused_properly(as_user(second, user), USER_BURST)

    ip = address()
    assert [anon(first, ip).status_code for _ in range(ANON_BURST)] == [200] * ANON_BURST
    refused_properly(anon(second, ip), ANON_BURST)


def test_simultaneous_requests_through_two_apis_never_pass_more_than_the_burst(
    apis: tuple[System, System], user: uuid.UUID
) -> None:
    """The compare-and-set: requests racing each other in both processes take one token each."""
    first, second = apis
    count = 4 * USER_BURST
    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(lambda n: as_user((first, second)[n % 2], user), range(count)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] * USER_BURST + [429] * (count - USER_BURST)
    remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for r in answers if r.is_success)
    assert remaining == list(range(USER_BURST))


# --- exempt ----------------------------------------------------------------------------------


def test_probes_and_metrics_are_never_limited(apis: tuple[System, System]) -> None:
    api, _ = apis
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=api.api_url, transport=transport, timeout=30) as client:
        drained = [client.get("/settings/exports").status_code for _ in range(ANON_BURST + 1)]
        assert drained == [200] * ANON_BURST + [429]
        for _ in range(3):
            for path in ("/healthz", "/readyz", "/metrics"):
                response = client.get(path)
                assert response.status_code == 200, path
                assert not any(h in response.headers for h in HEADERS), path
        scraped = client.get("/metrics").text
    refused = [
        line
        for line in scraped.splitlines()
        if line.startswith('exports_rate_limited_total{bucket="anonymous"}')
    ]
    assert refused
    assert float(refused[0].split()[-1]) >= 1


# --- NATS gone -------------------------------------------------------------------------------


def test_without_nats_requests_pass_unlimited_and_it_is_logged_and_counted(
    real_servers: Servers, database: str, servers_dir: Path, user: uuid.UUID
) -> None:
    tag = uuid.uuid4().hex[:6]
    nats = servers.start_nats(servers_dir / f"nats-ratelimit-gone-{tag}")
    env = service_env(
        real_servers,
        database,
        EXPORTS_NATS_URL=nats.url,
        EXPORTS_S3_BUCKET="ratelimit-gone",
        EXPORTS_RATE_LIMIT_TIMEOUT_SECONDS="0.5",
        **LIMITS,
    )
    system = make_system(env, servers_dir / f"logs-ratelimit-gone-{tag}")
    try:
        system.start("api")
        with system.client(user) as client:
            assert client.get(URL).headers["x-ratelimit-remaining"] == "4"
            nats.stop()
            # More requests than the burst, all served, none with headers it cannot know.
            answers = [client.get(URL) for _ in range(USER_BURST + 2)]
            assert [r.status_code for r in answers] == [200] * (USER_BURST + 2)
            assert not any(h in r.headers for r in answers for h in HEADERS)
            scraped = client.get("/metrics").text
        errors = [
            line
            for line in scraped.splitlines()
            if line.startswith("exports_rate_limit_errors_total ")
        ]
        assert errors
        assert float(errors[0].split()[-1]) >= USER_BURST + 2
        assert "rate limits not applied" in system.log("api")

        # A NATS started anew on the same address knows nothing of the bucket: the api
        # reconnects, creates it again, and limits again, from a full bucket.
        restarted = servers.start_nats(servers_dir / f"nats-ratelimit-back-{tag}", port=nats.port)
        try:
            with system.client(user) as client:
                deadline = time.monotonic() + 60
                while "x-ratelimit-remaining" not in (back := client.get(URL)).headers:
                    assert back.status_code == 200
                    assert time.monotonic() < deadline, "the limits never came back"
                    time.sleep(0.25)
                assert back.headers["x-ratelimit-remaining"] == "4"
                rest = [client.get(URL).status_code for _ in range(USER_BURST)]
            assert rest == [200] * (USER_BURST - 1) + [429]
        finally:
            restarted.stop()
    finally:
        system.stop()
        nats.stop()
