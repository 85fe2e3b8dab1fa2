"""``services.api.ratelimit``: the token-bucket arithmetic, the headers and the bucket keys."""

from __future__ import annotations

import uuid

import pytest

from services.api.errors import RateLimited
from services.api.ratelimit import Decision, Limit, client_key, take, user_key

T0 = 1_800_000_000.0


def drain(
    limit: Limit, now: float, tat: float | None = None
) -> tuple[float | None, list[Decision]]:
    """Take until refused (all at ``now``): the stored value and every decision."""
    decisions = []
    while True:
        new, decision = take(tat, now, limit)
        decisions.append(decision)
        if new is None:
            return tat, decisions
        tat = new


def test_a_full_bucket_passes_exactly_the_burst_then_refuses() -> None:
    limit = Limit(per_second=10, burst=50)
    _, decisions = drain(limit, T0)
    assert [d.allowed for d in decisions] == [True] * 50 + [False]
    assert [d.remaining for d in decisions[:50]] == list(range(49, -1, -1))
    assert all(d.limit == 50 for d in decisions)


def test_reset_is_zero_while_a_token_is_left_then_the_wait_for_one() -> None:
    limit = Limit(per_second=0.25, burst=2)  # one token every 4 s
    first = take(None, T0, limit)
    assert first[1] == Decision(True, 2, 1, 0, 0)
    second = take(first[0], T0, limit)
    assert second[1] == Decision(True, 2, 0, 4, 0)
    refused = take(second[0], T0 + 1.5, limit)
    # 2.5 s until the next token: whole seconds, rounded up, so a retry then passes.
    assert refused == (None, Decision(False, 2, 0, 3, 3))
    assert take(second[0], T0 + 4.0, limit)[1].allowed


def test_retry_after_is_when_a_retry_passes_and_not_a_second_earlier() -> None:
    limit = Limit(per_second=3, burst=5)
    tat, decisions = drain(limit, T0)
    retry = decisions[-1].retry_after
    assert retry == 1
    assert take(tat, T0 + retry, limit)[1].allowed
    assert not take(tat, T0 + 0.3, limit)[1].allowed  # one token takes 1/3 s


def test_refill_is_continuous_at_the_rate_and_capped_at_the_burst() -> None:
    limit = Limit(per_second=10, burst=50)
    tat, _ = drain(limit, T0)
    # 1 s refills 10 tokens.
    _, later = drain(limit, T0 + 1.0, tat)
    assert sum(d.allowed for d in later) == 10
    # An hour idle refills no more than the burst.
    _, idle = drain(limit, T0 + 3600, tat)
    assert sum(d.allowed for d in idle) == 50


def test_a_missing_value_is_a_full_bucket_and_so_is_a_past_one() -> None:
    limit = Limit(per_second=1, burst=3)
    assert take(None, T0, limit)[1].remaining == 2
    assert take(T0 - 100, T0, limit)[1].remaining == 2


def test_a_value_far_in_the_future_counts_as_an_empty_bucket_not_a_lock_out() -> None:
    """A replica whose clock runs ahead (or limits lowered) must not lock a user out for long."""
    limit = Limit(per_second=1, burst=3)
    new, decision = take(T0 + 10_000, T0, limit)
    assert new is None
    assert decision.retry_after == 1


def test_sustained_traffic_at_the_rate_always_passes() -> None:
    limit = Limit(per_second=2, burst=1)
    tat: float | None = None
    for n in range(100):
        new, decision = take(tat, T0 + n * 0.5, limit)
        assert decision.allowed, n
        tat = new


def test_the_headers_and_retry_after_only_when_refused() -> None:
    passed = Decision(True, 200, 199, 0, 0)
    assert passed.headers() == [
        (b"x-ratelimit-limit", b"200"),
        (b"x-ratelimit-remaining", b"199"),
        (b"x-ratelimit-reset", b"0"),
    ]
    refused = Decision(False, 50, 0, 7, 7)
    assert (b"retry-after", b"7") in refused.headers()


def test_the_refusal_reads_like_codex_in_the_api_error_shape() -> None:
    assert RateLimited(30).body() == {
        "error": "RateLimitExceeded",
        "message": "Too many requests. Please retry after 30 seconds.",
    }
    assert RateLimited(1).message == "Too many requests. Please retry after 1 second."
    assert RateLimited(1).status == 429


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("203.0.113.7", 5000), "ip.203.0.113.7"),
        (("::ffff:203.0.113.7", 5000), "ip.203.0.113.7"),
        # A host's /64 is one bucket: the addresses inside it are the same client.
        (("2001:db8:1:2:aaaa::1", 1), "ip6.2001-0db8-0001-0002"),
        (("2001:db8:1:2:ffff::9", 1), "ip6.2001-0db8-0001-0002"),
        (("2001:db8:1:3::1", 1), "ip6.2001-0db8-0001-0003"),
    ],
)
def test_client_keys_are_per_address_and_valid_kv_keys(client: tuple[str, int], key: str) -> None:
    assert client_key({"client": client}) == key


def test_a_client_without_an_address_still_gets_a_bucket_of_its_own() -> None:
    named = client_key({"client": ("testclient", 1)})
    assert named.startswith("ip.other.")
    assert named != client_key({"client": ("otherclient", 1)})
    assert client_key({"client": None}) == client_key({})


def test_user_keys_name_the_user() -> None:
    user = uuid.uuid4()
    assert user_key(user) == f"user.{user.hex}"
