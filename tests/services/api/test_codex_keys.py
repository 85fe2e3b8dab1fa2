"""``services.api.codex_keys``: verified Codex API keys are remembered, within bounds."""

from __future__ import annotations

import uuid

import pytest

from services.api.codex_keys import VerifiedKeys


def test_verified_keys_are_remembered_for_a_bounded_time_and_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("services.api.codex_keys.time.monotonic", lambda: clock[0])
    cache = VerifiedKeys(ttl=60, entries=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.put(b"a", a)
    assert cache.get(b"a") == a
    clock[0] += 60.5
    assert cache.get(b"a") is None  # past the 60 s bound: argon2 again
    cache.put(b"a", a)
    cache.put(b"b", b)
    cache.put(b"c", c)
    assert cache.get(b"a") is None  # the oldest is evicted past the size bound
    assert cache.get(b"c") == c
    cache.drop(b"c")
    assert cache.get(b"c") is None
