"""Scheduled exports (SPEC §12): the cron rules, the due times, and the SQL of
``exports.schedules`` / ``exports.schedule_runs`` — one home for the api (create, list, run now)
and the janitor (firing).

Cron: five fields (minute hour day-of-month month day-of-week) as in crontab, read in the
schedule's IANA time zone with ``croniter``. DST: a local time the clocks skip runs when they
jump (03:00 for a 02:30); one that happens twice runs once, unless the hour is ``*``. A
six-field form with a leading seconds field (as NATS and Quartz write it) is accepted too;
``EXPORTS_MIN_SCHEDULE_SECONDS`` (default 3600) bounds both, so in production it only makes "at
second s" possible (tests lower it to fire every few seconds).

Firing: NATS's own cron (``Nats-Schedule: <6-field cron>``) is evaluated in UTC and nats-server
documents no time-zone header, so a zone with DST would drift by an hour twice a year. Each
schedule therefore has one ``@at`` message schedule on its own subject
(``export.timer.schedule.<id>``) for its next due time, re-armed by the janitor after each run
(:func:`arm`). The fired message carries the logical due time; the ``@at`` time is that plus
:func:`spread_seconds` (0-59 s, a hash of the schedule id: deterministic, so many midnight
schedules do not all start in the same second).

At most once per due time: the janitor inserts ``(schedule_id, due_at)`` into
``exports.schedule_runs`` and submits the run with the idempotency key :func:`run_key` derived
from the same pair, so a redelivery, a restart or two janitors at once find the run already made.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from croniter import croniter
from faststream.nats import NatsBroker, Schedule

from shared.events import ScheduleTimerFired
from shared.subjects import SCHEDULE_TIMER_FIRED, STREAM, schedule_timer_subject

log = logging.getLogger(__name__)

MAX_SCHEDULES_PER_USER = 10
KEEP_MIN, KEEP_MAX, KEEP_DEFAULT = 1, 30, 7
KEEP_MESSAGE = f"Keep must be between {KEEP_MIN} and {KEEP_MAX}"
# How many consecutive due times the shortest-interval check looks at: enough for a year of a
# daily cron and for every pattern a field list can make within an hour, a day or a week.
INTERVAL_SAMPLES = 500
MAX_CRON_CHARS = 200
INTERVAL_HORIZON = timedelta(days=2 * 366)


class InvalidSchedule(ValueError):
    """A schedule body that cannot be accepted; the message is for people."""


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron in its time zone."""

    text: str
    zone: ZoneInfo
    _expression: str
    _seconds_first: bool

    @property
    def _every_hour(self) -> bool:
        return self._expression.split()[2 if self._seconds_first else 1] == "*"

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``, as an aware UTC datetime.

        When the clocks go back, a wall time that happens twice runs once (the first time),
        unless the cron's hour is ``*`` (then every real hour runs), as cron does.
        """
        it = croniter(
            self._expression,
            moment.astimezone(self.zone),
            second_at_beginning=self._seconds_first,
        )
        while True:
            due: datetime = it.get_next(datetime)
            local = due.astimezone(self.zone)
            if local.fold == 1 and not self._every_hour:
                first = local.replace(fold=0).astimezone(UTC)
                if first != due.astimezone(UTC):
                    continue  # the repeat of a wall time that already ran
            return due.astimezone(UTC)

    def shortest_interval(
        self, start: datetime, samples: int = INTERVAL_SAMPLES, below: float = 0.0
    ) -> float:
        """The smallest gap in seconds between consecutive due times from ``start`` on.

        Looks at up to ``samples`` gaps within :data:`INTERVAL_HORIZON` of ``start`` (at least
        two), and stops at the first gap under ``below``: enough for every daily, weekly, yearly
        and DST pattern, and fast for any cron (~50 ms at most).
        """
        horizon = start + INTERVAL_HORIZON
        previous = self.next_after(start)
        shortest = float("inf")
        for n in range(samples):
            current = self.next_after(previous)
            shortest = min(shortest, (current - previous).total_seconds())
            if shortest < below or (n >= 1 and current > horizon):
                break
            previous = current
        return shortest


def _quote_plain(value: str) -> str:
    return value


def zone(name: Any, quote: Callable[[str], str] = _quote_plain) -> ZoneInfo:
    """The IANA zone ``name``; ``Unknown time zone: <name>`` otherwise."""
    if not isinstance(name, str) or not name or len(name) > 100 or "\x00" in name:
        raise InvalidSchedule(f"Unknown time zone: {quote(str(name))}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise InvalidSchedule(f"Unknown time zone: {quote(name)}") from err


def parse_cron(text: Any, tz: ZoneInfo, quote: Callable[[str], str] = _quote_plain) -> Cron:
    """Five-field cron (or six with leading seconds); ``Invalid cron expression: <text>``."""
    shown = quote(text if isinstance(text, str) else json.dumps(text))
    if not isinstance(text, str) or len(text) > MAX_CRON_CHARS or not text.isprintable():
        raise InvalidSchedule(f"Invalid cron expression: {shown}")
    fields = text.split()
    if len(fields) not in (5, 6):
        raise InvalidSchedule(f"Invalid cron expression: {shown}")
    expression = " ".join(fields)
    cron = Cron(text, tz, expression, len(fields) == 6)
    try:
        croniter(expression, datetime.now(UTC), second_at_beginning=len(fields) == 6)
        cron.next_after(datetime.now(UTC))
    except Exception as err:  # croniter's errors, and whatever odd input makes it raise
        raise InvalidSchedule(f"Invalid cron expression: {shown}") from err
    return cron


def interval_text(seconds: int) -> str:
    """3600 → "hour", 7200 → "2 hours", 90 → "90 seconds" (as in "once every …")."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} seconds"


def check_interval(cron: Cron, min_seconds: int, now: datetime | None = None) -> None:
    """Refuse a cron that asks for two runs closer than ``min_seconds``."""
    shortest = cron.shortest_interval(now or datetime.now(UTC), below=min_seconds)
    if shortest < min_seconds:
        raise InvalidSchedule(
            f"Schedule runs too often: at most once every {interval_text(min_seconds)}"
            f" (this cron runs every {interval_text(int(shortest))})"
        )


def check_keep(keep: Any) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or not KEEP_MIN <= keep <= KEEP_MAX:
        raise InvalidSchedule(KEEP_MESSAGE)
    return keep


def spread_seconds(schedule_id: UUID, limit: int = 60) -> int:
    """0 … limit-1 seconds, the same for a schedule every time (its id's hash)."""
    if limit <= 1:
        return 0
    digest = hashlib.sha256(schedule_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") % limit


def run_key(schedule_id: UUID, due_at: datetime) -> str:
    """The idempotency key of the run of ``schedule_id`` due at ``due_at``."""
    return f"schedule:{schedule_id}:{due_at.astimezone(UTC).isoformat()}"


# --- the tables -----------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
    "id, user_id, request, cron, timezone, keep, next_run_at, last_run_at, last_export_id,"
    " created_at"
)


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    id: UUID
    user_id: UUID
    request: dict[str, Any]
    cron: str
    timezone: str
    keep: int
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_export_id: UUID | None
    created_at: datetime

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ScheduleRow:
        values = dict(record)
        if isinstance(values["request"], str):
            values["request"] = json.loads(values["request"])
        return cls(**values)

    def parsed(self) -> Cron:
        return parse_cron(self.cron, ZoneInfo(self.timezone))


def _row(record: asyncpg.Record | None) -> ScheduleRow | None:
    return None if record is None else ScheduleRow.from_record(record)


class TooManySchedules(Exception):
    def __init__(self, count: int) -> None:
        super().__init__(f"You already have {count} schedules (limit: {MAX_SCHEDULES_PER_USER})")


async def insert(
    pool: asyncpg.Pool,
    user_id: UUID,
    request: dict[str, Any],
    cron: Cron,
    keep: int,
    next_run_at: datetime,
) -> ScheduleRow:
    """Insert under the per-user limit (counted under the user's advisory lock)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('schedules:' || $1::uuid::text, 0))",
            user_id,
        )
        count = await conn.fetchval(
            "SELECT count(*) FROM exports.schedules WHERE user_id = $1", user_id
        )
        if count >= MAX_SCHEDULES_PER_USER:
            raise TooManySchedules(count)
        record = await conn.fetchrow(
            "INSERT INTO exports.schedules (id, user_id, request, cron, timezone, keep,"
            " next_run_at) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)"
            f" RETURNING {SCHEDULE_COLUMNS}",
            uuid.uuid4(),
            user_id,
            json.dumps(request),
            cron.text,
            cron.zone.key,
            keep,
            next_run_at,
        )
    return ScheduleRow.from_record(record)


async def list_for_user(pool: asyncpg.Pool, user_id: UUID) -> list[ScheduleRow]:
    records = await pool.fetch(
        f"SELECT {SCHEDULE_COLUMNS} FROM exports.schedules WHERE user_id = $1"
        " ORDER BY created_at, id",
        user_id,
    )
    return [ScheduleRow.from_record(r) for r in records]


async def get_for_user(pool: asyncpg.Pool, schedule_id: UUID, user_id: UUID) -> ScheduleRow | None:
    return _row(
        await pool.fetchrow(
            f"SELECT {SCHEDULE_COLUMNS} FROM exports.schedules WHERE id = $1 AND user_id = $2",
            schedule_id,
            user_id,
        )
    )


async def get_any(pool: asyncpg.Pool, schedule_id: UUID) -> ScheduleRow | None:
    """Unscoped, for the janitor."""
    return _row(
        await pool.fetchrow(
            f"SELECT {SCHEDULE_COLUMNS} FROM exports.schedules WHERE id = $1", schedule_id
        )
    )


async def delete_for_user(pool: asyncpg.Pool, schedule_id: UUID, user_id: UUID) -> bool:
    result: str = await pool.execute(
        "DELETE FROM exports.schedules WHERE id = $1 AND user_id = $2", schedule_id, user_id
    )
    return result.endswith(" 1")


async def claim_run(pool: asyncpg.Pool, schedule_id: UUID, due_at: datetime) -> UUID | bool | None:
    """Record the run due at ``due_at``: True if this call made the record; else the export id
    an earlier attempt recorded (None: the earlier attempt did not get as far as the export).

    False when the schedule is gone.
    """
    async with pool.acquire() as conn, conn.transaction():
        exists = await conn.fetchval(
            "SELECT 1 FROM exports.schedules WHERE id = $1 FOR SHARE", schedule_id
        )
        if exists is None:
            return False
        made = await conn.fetchval(
            "INSERT INTO exports.schedule_runs (schedule_id, due_at) VALUES ($1, $2)"
            " ON CONFLICT DO NOTHING RETURNING 1",
            schedule_id,
            due_at,
        )
        if made:
            return True
        export_id: UUID | None = await conn.fetchval(
            "SELECT export_id FROM exports.schedule_runs WHERE schedule_id = $1 AND due_at = $2",
            schedule_id,
            due_at,
        )
        return export_id


async def record_run(
    pool: asyncpg.Pool,
    schedule_id: UUID,
    due_at: datetime,
    export_id: UUID,
    next_run_at: datetime | None,
) -> ScheduleRow | None:
    """The run due at ``due_at`` made ``export_id``; the schedule's next due time is
    ``next_run_at`` (None: unchanged, for a run now). Returns the schedule, None if gone."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO exports.schedule_runs (schedule_id, due_at, export_id)"
            " SELECT id, $2, $3 FROM exports.schedules WHERE id = $1"
            " ON CONFLICT (schedule_id, due_at) DO UPDATE SET export_id = EXCLUDED.export_id",
            schedule_id,
            due_at,
            export_id,
        )
        record = await conn.fetchrow(
            "UPDATE exports.schedules SET last_export_id = $3,"
            " last_run_at = greatest(coalesce(last_run_at, $2), $2),"
            " next_run_at = coalesce($4, next_run_at)"
            f" WHERE id = $1 RETURNING {SCHEDULE_COLUMNS}",
            schedule_id,
            due_at,
            export_id,
            next_run_at,
        )
    return _row(record)


async def advance(pool: asyncpg.Pool, schedule_id: UUID, next_run_at: datetime) -> None:
    """A due time passed without a run (skipped): only the next due time moves."""
    await pool.execute(
        "UPDATE exports.schedules SET next_run_at = $2 WHERE id = $1", schedule_id, next_run_at
    )


async def overdue(pool: asyncpg.Pool, grace_seconds: float) -> list[ScheduleRow]:
    """Schedules whose next due time passed ``grace_seconds`` ago with no run recorded for it:
    their timer was lost (the sweep re-arms them)."""
    records = await pool.fetch(
        f"SELECT {SCHEDULE_COLUMNS} FROM exports.schedules s"
        " WHERE next_run_at < now() - make_interval(secs => $1) AND NOT EXISTS"
        " (SELECT 1 FROM exports.schedule_runs r WHERE r.schedule_id = s.id"
        " AND r.due_at = s.next_run_at)",
        grace_seconds,
    )
    return [ScheduleRow.from_record(r) for r in records]


# --- the timer on the bus -------------------------------------------------------------------


async def arm(
    broker: NatsBroker,
    schedule_id: UUID,
    due_at: datetime,
    *,
    spread_limit: int = 60,
    fire_at: datetime | None = None,
) -> None:
    """(Re)place the schedule's one ``@at`` timer: fires at ``fire_at`` (default: ``due_at`` plus
    its spread) carrying ``due_at``. Raises when NATS does not take it."""
    when = fire_at or due_at + timedelta(seconds=spread_seconds(schedule_id, spread_limit))
    payload = ScheduleTimerFired(schedule_id=schedule_id, due_at=due_at).model_dump(mode="json")
    await broker.publish(
        payload,
        schedule_timer_subject(schedule_id),
        stream=STREAM,
        schedule=Schedule(when.astimezone(UTC), SCHEDULE_TIMER_FIRED),
        timeout=5.0,
    )


async def disarm(broker: NatsBroker, schedule_id: UUID) -> None:
    """Remove the schedule's timer (purge its subject); best effort, the janitor ignores a timer
    whose schedule is gone."""
    try:
        js = broker.connection.jetstream()
        await js.purge_stream(STREAM, subject=schedule_timer_subject(schedule_id))
    except Exception as err:
        log.warning("could not remove a schedule's timer (it will be ignored): %s", err)
