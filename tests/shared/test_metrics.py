"""``shared.metrics``: the HTTP and NATS middlewares, bounded labels, the metrics response."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from faststream.nats import NatsBroker, TestNatsBroker
from prometheus_client import REGISTRY

from shared import metrics


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


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
    metrics.record_created("x" * 50, "pdf", "accepted")
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


def test_queue_wait_and_exports_are_counted_per_lane() -> None:
    small = {"format": "csv", "lane": "small"}
    before = _sample("exports_queue_wait_seconds_count", small)
    before_other = _sample("exports_queue_wait_seconds_count", {"format": "csv", "lane": "other"})
    metrics.record_claimed("csv", 0.3, "small")
    metrics.record_claimed("csv", 0.3, "no-such-lane")
    assert _sample("exports_queue_wait_seconds_count", small) == before + 1
    assert (
        _sample("exports_queue_wait_seconds_count", {"format": "csv", "lane": "other"})
        == before_other + 1
    )
    lane_before = _sample("exports_lane_total", {"lane": "large"})
    metrics.record_lane("large")
    assert _sample("exports_lane_total", {"lane": "large"}) == lane_before + 1
    assert "workers-small" in metrics.CONSUMERS and "workers" in metrics.CONSUMERS


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
