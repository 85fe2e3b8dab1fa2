"""The cron rules of scheduled exports (shared/schedules.py): parsing, time zones and DST,
the shortest interval, keep, the spread of due times and the run key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared import schedules
from shared.schedules import InvalidSchedule

UTC_ZONE = schedules.zone("UTC")
PARIS = schedules.zone("Europe/Paris")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "every day",
        "* * * *",
        "* * * * * * *",
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "a b c d e",
        "*/0 * * * *",
        "0 3 * * \x00",
        5,
        None,
        ["0", "3"],
    ],
)
def test_invalid_cron(text: object) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Invalid cron expression: "):
        schedules.parse_cron(text, UTC_ZONE)


def test_invalid_cron_quotes_the_text() -> None:
    with pytest.raises(InvalidSchedule) as err:
        schedules.parse_cron("every day", UTC_ZONE)
    assert str(err.value) == "Invalid cron expression: every day"
    with pytest.raises(InvalidSchedule) as err:
        schedules.parse_cron("x" * 300, UTC_ZONE, lambda v: v[:5] + "…")
    assert str(err.value) == "Invalid cron expression: xxxxx…"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", 3])
def test_unknown_time_zone(name: object) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Unknown time zone: "):
        schedules.zone(name)


def test_next_run_is_in_the_zone_and_follows_dst() -> None:
    cron = schedules.parse_cron("0 3 * * *", PARIS)
    # Winter: 03:00 in Paris is 02:00 UTC; summer: 01:00 UTC.
    assert cron.next_after(at(2026, 1, 10, 12, 0)) == at(2026, 1, 11, 2, 0)
    assert cron.next_after(at(2026, 7, 10, 12, 0)) == at(2026, 7, 11, 1, 0)
    # The night clocks go forward (29 March 2026): 02:30 does not exist, it runs at the jump
    # (03:00 local, 01:00 UTC), so the day's backup is not lost.
    skipped = schedules.parse_cron("30 2 * * *", PARIS)
    assert skipped.next_after(at(2026, 3, 28, 12, 0)) == at(2026, 3, 29, 1, 0)
    assert skipped.next_after(at(2026, 3, 29, 1, 0)) == at(2026, 3, 30, 0, 30)
    # The night they go back (25 October 2026) 02:30 happens twice: it runs once.
    assert skipped.next_after(at(2026, 10, 24, 12, 0)) == at(2026, 10, 25, 0, 30)
    assert skipped.next_after(at(2026, 10, 25, 0, 30)) == at(2026, 10, 26, 1, 30)
    # An hourly cron runs every real hour that night, the repeated one too.
    hourly = schedules.parse_cron("0 * * * *", PARIS)
    assert hourly.next_after(at(2026, 10, 25, 0, 0)) == at(2026, 10, 25, 1, 0)
    assert hourly.next_after(at(2026, 10, 25, 1, 0)) == at(2026, 10, 25, 2, 0)
    assert cron.next_after(at(2026, 1, 10, 12, 0)).tzinfo == UTC


def test_next_run_is_strictly_after() -> None:
    cron = schedules.parse_cron("0 * * * *", UTC_ZONE)
    assert cron.next_after(at(2026, 5, 1, 10, 0)) == at(2026, 5, 1, 11, 0)


def test_six_fields_put_seconds_first() -> None:
    cron = schedules.parse_cron("30 0 * * * *", UTC_ZONE)
    assert cron.next_after(at(2026, 5, 1, 10, 0)) == at(2026, 5, 1, 10, 0, 30)
    every2 = schedules.parse_cron("*/2 * * * * *", UTC_ZONE)
    assert every2.shortest_interval(at(2026, 5, 1)) == 2


@pytest.mark.parametrize(
    ("text", "shortest"),
    [
        ("0 * * * *", 3600),
        ("*/5 * * * *", 300),
        ("0 3 * * *", 86400),
        ("0,30 3 * * *", 1800),
        ("0 3 * * 1", 7 * 86400),
        ("59 23 * * *", 86400),
    ],
)
def test_shortest_interval(text: str, shortest: float) -> None:
    assert schedules.parse_cron(text, UTC_ZONE).shortest_interval(at(2026, 5, 1)) == shortest


def test_a_daily_cron_is_daily_across_dst() -> None:
    # A year of due times includes both changes of the clocks: the shortest gap is 23.5 hours
    # (02:30 the day before the spring jump to 03:00, the jump's run), never the hour of the
    # repeated wall time in autumn.
    daily = schedules.parse_cron("30 2 * * *", PARIS)
    assert daily.shortest_interval(at(2026, 1, 1)) == 23.5 * 3600


def test_rare_crons_are_measured_and_frequent_ones_stop_early() -> None:
    leap = schedules.parse_cron("0 0 29 2 *", UTC_ZONE)
    assert leap.shortest_interval(at(2026, 1, 1)) == 1461 * 86400  # 2028 to 2032
    every_minute = schedules.parse_cron("* * * * *", UTC_ZONE)
    assert every_minute.shortest_interval(at(2026, 1, 1), below=3600) == 60


def test_check_interval_message() -> None:
    cron = schedules.parse_cron("*/5 * * * *", UTC_ZONE)
    with pytest.raises(InvalidSchedule) as err:
        schedules.check_interval(cron, 3600, at(2026, 5, 1))
    assert str(err.value) == (
        "Schedule runs too often: at most once every hour (this cron runs every 5 minutes)"
    )
    schedules.check_interval(schedules.parse_cron("0 * * * *", UTC_ZONE), 3600, at(2026, 5, 1))


def test_interval_text() -> None:
    assert schedules.interval_text(3600) == "hour"
    assert schedules.interval_text(7200) == "2 hours"
    assert schedules.interval_text(60) == "minute"
    assert schedules.interval_text(90) == "90 seconds"
    assert schedules.interval_text(1) == "second"
    assert schedules.interval_text(86400) == "day"
    assert schedules.interval_text(0) == "0 seconds"


@pytest.mark.parametrize("keep", [0, 31, -1, "7", 7.0, True, None])
def test_keep_out_of_range(keep: object) -> None:
    with pytest.raises(InvalidSchedule, match=r"^Keep must be between 1 and 30$"):
        schedules.check_keep(keep)


@pytest.mark.parametrize("keep", [1, 7, 30])
def test_keep_in_range(keep: int) -> None:
    assert schedules.check_keep(keep) == keep


def test_spread_is_deterministic_bounded_and_spread() -> None:
    ids = [uuid.uuid4() for _ in range(600)]
    offsets = [schedules.spread_seconds(i) for i in ids]
    assert offsets == [schedules.spread_seconds(i) for i in ids]
    assert all(0 <= o < 60 for o in offsets)
    # 600 schedules at midnight are not all in a few seconds: most of the minute is used.
    assert len(set(offsets)) > 45
    assert {schedules.spread_seconds(i, 0) for i in ids} == {0}
    assert {schedules.spread_seconds(i, 1) for i in ids} == {0}
    assert all(0 <= schedules.spread_seconds(i, 5) < 5 for i in ids)


def test_run_key_names_the_schedule_and_the_due_time_in_utc() -> None:
    sid = uuid.uuid4()
    due = at(2026, 5, 1, 3, 0)
    assert schedules.run_key(sid, due) == f"schedule:{sid}:2026-05-01T03:00:00+00:00"
    paris = due.astimezone(PARIS)
    assert schedules.run_key(sid, paris) == schedules.run_key(sid, due)
    assert schedules.run_key(sid, due) != schedules.run_key(sid, due + timedelta(seconds=1))
    assert len(schedules.run_key(sid, due)) <= 200  # fits an Idempotency-Key
