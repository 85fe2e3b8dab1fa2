"""What the encoders share (``services.worker.render.encoder``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from services.worker.render.encoder import rfc3339


def test_timestamps_are_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2024, 1, 1, 12, tzinfo=plus_two)) == "2024-01-01T10:00:00Z"
    assert rfc3339(datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == "2024-01-01T00:00:00.000001Z"
