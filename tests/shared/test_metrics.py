"""shared/metrics.py: the health and metrics server, the HTTP middleware, bounded labels."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from fastapi import FastAPI
from faststream.nats import NatsBroker, TestNatsBroker
from prometheus_client import REGISTRY

from services.janitor import service as janitor_service
from shared import health, metrics


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


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


async def test_http_latency_is_labelled_by_route_template_not_path() -> None:
    app = FastAPI()
    app.add_middleware(metrics.HttpMetricsMiddleware)

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    labels = {"route": "/things/{thing_id}", "method": "GET", "status": "200"}
    before = _sample("exports_http_request_duration_seconds_count", labels)
    unmatched = {"route": metrics.UNMATCHED_ROUTE, "method": "GET", "status": "404"}
    before_404 = _sample("exports_http_request_duration_seconds_count", unmatched)
    errors = {"route": "/boom", "method": "GET", "status": "500"}
    before_500 = _sample("exports_http_request_duration_seconds_count", errors)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            assert (await client.get(f"/things/{uuid.uuid4()}")).status_code == 200
        assert (await client.get(f"/missing/{uuid.uuid4()}")).status_code == 404
        assert (await client.get("/boom")).status_code == 500

    assert _sample("exports_http_request_duration_seconds_count", labels) == before + 3
    assert _sample("exports_http_request_duration_seconds_count", unmatched) == before_404 + 1
    assert _sample("exports_http_request_duration_seconds_count", errors) == before_500 + 1


def test_metrics_response_negotiates_openmetrics() -> None:
    body, content_type = metrics.metrics_response()
    assert content_type.startswith("text/plain")
    assert b"exports_build_info" in body
    body, content_type = metrics.metrics_response("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_unknown_label_values_fold_into_other() -> None:
    before = _sample(
        "exports_created_total", {"type": "other", "format": "other", "result": "accepted"}
    )
    metrics.record_created("x" * 50, "xlsx", "accepted")
    after = _sample(
        "exports_created_total", {"type": "other", "format": "other", "result": "accepted"}
    )
    assert after == before + 1

    labels = {"type": "books", "format": "csv", "status": "completed"}
    before_rows = _sample("exports_rows_total", {"format": "csv", "status": "completed"})
    before_done = _sample("exports_finished_total", labels)
    metrics.record_finished("books", "csv", "completed", seconds=1.5, rows=10, size_bytes=100)
    assert _sample("exports_finished_total", labels) == before_done + 1
    assert (
        _sample("exports_rows_total", {"format": "csv", "status": "completed"}) == before_rows + 10
    )
    metrics.record_deletion("because", 2)
    assert _sample("exports_deletions_total", {"reason": "other"}) >= 2


def test_subject_template_folds_export_ids() -> None:
    export_id = uuid.uuid4()
    assert metrics.subject_template(f"export.cancel.{export_id}") == "export.cancel.*"
    assert metrics.subject_template(f"export.timer.expire.{export_id}") == "export.timer.expire.*"
    assert metrics.subject_template("export.requested") == "export.requested"


async def test_nats_middleware_labels_subjects_without_export_ids() -> None:
    broker = NatsBroker(middlewares=[metrics.nats_metrics_middleware("test")])
    received: list[bytes] = []

    @broker.subscriber("export.cancel.*")
    async def on_cancel(body: bytes) -> None:
        received.append(body)

    labels = {"app_name": "test", "broker": "nats", "handler": "export.cancel.*"}
    before = _sample("exports_nats_received_messages_total", labels)
    async with TestNatsBroker(broker) as test_broker:
        for _ in range(3):
            await test_broker.publish(b"", f"export.cancel.{uuid.uuid4()}")
    assert len(received) == 3
    assert _sample("exports_nats_received_messages_total", labels) == before + 3


class _FakeDb:
    async def fetchrow(self, query: str, *args: object) -> dict[str, object]:
        assert "FROM exports.exports" in query
        return {
            "pending": 2,
            "running": 1,
            "completed": 7,
            "failed": 1,
            "cancelled": 0,
            "oldest_pending_seconds": 12.5,
            "oldest_running_seconds": 30.0,
            "heartbeat_age_seconds": 4.0,
            "outbox_backlog": 1,
            "outbox_oldest_seconds": 9.0,
            "storage_bytes": 123456,
        }


class _Info:
    num_pending = 5
    num_ack_pending = 2


class _FakeJetStream:
    async def consumer_info(self, stream: str, consumer: str) -> _Info:
        assert stream == "EXPORTS"
        return _Info()


async def test_state_gauges_from_the_database_and_jetstream() -> None:
    await janitor_service.refresh_state(
        _FakeDb(), _FakeJetStream(), stream="EXPORTS", consumers=["workers"]
    )
    assert _sample("exports_records", {"status": "completed"}) == 7
    assert _sample("exports_oldest_pending_seconds") == 12.5
    assert _sample("exports_storage_bytes") == 123456
    assert _sample("exports_outbox_backlog") == 1
    assert _sample("exports_consumer_pending_messages", {"consumer": "workers"}) == 5
    assert _sample("exports_consumer_ack_pending_messages", {"consumer": "workers"}) == 2
    assert _sample("exports_state_refreshed_timestamp_seconds") > 0


async def test_refresh_loop_survives_errors(caplog: pytest.LogCaptureFixture) -> None:
    class _Down:
        async def fetchrow(self, query: str, *args: object) -> None:
            raise ConnectionError("database down")

    task = asyncio.create_task(
        janitor_service.refresh_state_forever(
            _Down(),
            None,
            stream="EXPORTS",
            consumers=[],
            storage_cap_bytes=1024,
            interval_seconds=0.01,
        )
    )
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _sample("exports_storage_cap_bytes") == 1024
    assert "database down" in caplog.text


async def test_a_missing_consumer_does_not_stale_the_database_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class _NoConsumer:
        async def consumer_info(self, stream: str, consumer: str) -> _Info:
            if consumer == "janitor":
                raise LookupError("consumer not found")
            return _Info()

    metrics.STATE_REFRESHED.set(0)
    await janitor_service.refresh_state(
        _FakeDb(), _NoConsumer(), stream="EXPORTS", consumers=["janitor", "workers"]
    )
    assert _sample("exports_state_refreshed_timestamp_seconds") > 0
    assert _sample("exports_consumer_pending_messages", {"consumer": "workers"}) == 5
    assert "consumer not found" in caplog.text
