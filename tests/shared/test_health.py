"""``shared.health``: the health, readiness and metrics server every service runs."""

from __future__ import annotations

import asyncio
import json

from shared import health, metrics


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


async def test_health_server_answers_health_readiness_and_metrics() -> None:
    broken = {"database": False}

    async def database() -> bool:
        return not broken["database"]

    async def nats() -> None:
        await asyncio.sleep(10)  # a hung dependency counts as failing, after the timeout

    ready = health.check_all({"database": database, "nats": nats}, timeout=0.2)
    server = await health.serve_health_and_metrics(0, ready)
    assert server is not None
    port = server.sockets[0].getsockname()[1]
    try:
        status, _, body = await _get(port, "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})

        status, _, body = await _get(port, "/readyz")
        assert status == 503
        assert json.loads(body)["failing"] == ["nats"]
        assert "nats" in json.loads(body)["message"]

        broken["database"] = True
        status, _, body = await _get(port, "/readyz?verbose=1")
        assert json.loads(body)["failing"] == ["database", "nats"]

        metrics.WORKER_CONCURRENCY.set(2)
        status, headers, body = await _get(port, "/metrics")
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        assert b"exports_worker_concurrency 2.0" in body
        assert b"process_resident_memory_bytes" in body or b"python_info" in body

        status, _, body = await _get(port, "/metrics", method="HEAD")
        assert (status, body) == (200, b"")
        assert (await _get(port, "/nope"))[0] == 404
        assert (await _get(port, "/healthz", method="POST"))[0] == 405
    finally:
        server.close()
        await server.wait_closed()


async def test_ready_when_every_probe_passes() -> None:
    async def ok() -> None:
        return None

    server = await health.serve_health_and_metrics(0, health.check_all({"database": ok}))
    assert server is not None
    try:
        status, _, body = await _get(server.sockets[0].getsockname()[1], "/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
    finally:
        server.close()
        await server.wait_closed()


async def test_a_taken_port_does_not_stop_the_service() -> None:
    first = await health.serve_health_and_metrics(0, health.check_all({}))
    assert first is not None
    try:
        port = first.sockets[0].getsockname()[1]
        assert await health.serve_health_and_metrics(port, health.check_all({})) is None
    finally:
        first.close()
        await first.wait_closed()
