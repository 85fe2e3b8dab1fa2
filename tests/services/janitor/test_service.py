"""``services.janitor.service``: the state gauges it refreshes from the database and JetStream."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from services.janitor import service as janitor_service
from shared import metrics


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


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
