"""Schedules fire on the bus (SPEC §12), on real NATS, PostgreSQL and S3: runs are made, only
``keep`` of them stay (and they do not count against the completed cap), a due time never runs
twice across a NATS restart, a killed janitor, two janitors and a duplicated timer, and a run
waits while its owner is at the concurrency limit."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import nats
import nats.js.errors
import pytest

from services.cli.demo_seed import seed_demo
from shared.events import ScheduleTimerFired
from shared.subjects import SCHEDULE_RAN, SCHEDULE_TIMER_FIRED, STREAM, schedule_timer_subject
from tests.conftest import library_ids_by_name, seeded_database
from tests.integration.lifecycle.conftest import Restartable, fresh_user

pytestmark = pytest.mark.integration
SCHEDULES = "/api/v1/user/exports/schedules"
EXPORTS = "/api/v1/user/exports/series"
# Every 2 s (the six-field form, seconds first); no spread, a quick retry at the limit.
EVERY_2S = "*/2 * * * * *"
FAST_SCHEDULES = {
    "EXPORTS_MIN_SCHEDULE_SECONDS": "1",
    "EXPORTS_SCHEDULE_SPREAD_SECONDS": "0",
    "EXPORTS_SCHEDULE_RETRY_SECONDS": "1",
}
T = TypeVar("T")


@pytest.fixture(scope="module")
async def small_catalog(restartable: Restartable) -> str:
    url, _ = await seeded_database(restartable.info, seed_demo)
    return url


async def until(check: Callable[[], Awaitable[T]], within: float = 30) -> T:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def runs(url: str, schedule_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            "SELECT due_at, export_id FROM exports.schedule_runs WHERE schedule_id = $1"
            " ORDER BY due_at",
            uuid.UUID(schedule_id),
        )
    finally:
        await conn.close()


async def scheduled_exports(url: str, schedule_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            "SELECT id, status, completed_at FROM exports.exports WHERE schedule_id = $1",
            uuid.UUID(schedule_id),
        )
    finally:
        await conn.close()


def _schedule(client: Any, library: str, *, keep: int, cron: str = EVERY_2S) -> dict[str, Any]:
    body = {
        "request": {"format": "json", "libraryIds": [library], "fields": ["title"]},
        "cron": cron,
        "keep": keep,
    }
    response = client.post(SCHEDULES, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_runs_keep_only_keep_and_skip_the_completed_cap(
    restartable: Restartable, small_catalog: str, system_factory: Any
) -> None:
    system = system_factory(small_catalog, EXPORTS_MAX_COMPLETED_PER_USER="1", **FAST_SCHEDULES)
    user = await fresh_user(small_catalog)
    library = (await library_ids_by_name(small_catalog))[0]
    nc = await nats.connect(restartable.nats.url)
    ran: list[dict[str, Any]] = []

    async def on_ran(msg: Any) -> None:
        ran.append(json.loads(msg.data))

    sub = await nc.jetstream().subscribe(SCHEDULE_RAN, cb=on_ran, ordered_consumer=True)
    try:
        with system.client(user) as client:
            plain = client.post(
                EXPORTS, json={"format": "csv", "libraryIds": [library], "fields": ["title"]}
            )
            assert plain.status_code == 202
            schedule = _schedule(client, library, keep=2)

            async def four_done() -> bool:
                made = [r for r in await runs(small_catalog, schedule["id"]) if r["export_id"]]
                live = await scheduled_exports(small_catalog, schedule["id"])
                running = sum(r["status"] != "completed" for r in live)
                return len(made) >= 4 and running == 0

            await until(four_done)
            made = [r for r in await runs(small_catalog, schedule["id"]) if r["export_id"]]
            completed = [
                r
                for r in await scheduled_exports(small_catalog, schedule["id"])
                if r["status"] == "completed"
            ]
            # Only the newest `keep` completed runs stay; the older ones were deleted.
            assert len(completed) == 2, (made, completed)
            newest = sorted(made, key=lambda r: r["due_at"])[-2:]
            assert {r["export_id"] for r in newest} == {r["id"] for r in completed}
            state = client.get(f"{SCHEDULES}/{schedule['id']}").json()
            assert state["lastExportId"] in {str(r["export_id"]) for r in made}
            assert datetime.fromisoformat(state["nextRunAt"]) > datetime.fromisoformat(
                state["lastRunAt"]
            )
            assert client.delete(f"{SCHEDULES}/{schedule['id']}").status_code == 204
            # Its timer is purged from the stream (a run in flight may still re-arm it once; it
            # then fires into a schedule that is gone and does nothing).
            timer = schedule_timer_subject(uuid.UUID(schedule["id"]))

            async def timer_gone() -> bool:
                try:
                    await nc.jetstream().get_last_msg(STREAM, timer)
                except nats.js.errors.NotFoundError:
                    return True
                return False

            await until(timer_gone, within=5)
            # Its timer is gone with it: no run is made after the delete (beyond one in flight).
            after_delete = len(await scheduled_exports(small_catalog, schedule["id"]))
            await asyncio.sleep(4)
            assert len(await scheduled_exports(small_catalog, schedule["id"])) <= after_delete + 1
            await until(lambda: _all_ended(small_catalog, schedule["id"]))
            completed = [
                r
                for r in await scheduled_exports(small_catalog, schedule["id"])
                if r["status"] == "completed"
            ]
            listed = client.get(EXPORTS).json()["exports"]
        # Deleting the schedule leaves its runs to expire as any export does.
        assert len(completed) >= 2, completed
        # The interactive export is not evicted by the scheduled runs, nor they by the cap of 1.
        assert plain.json()["id"] in [e["id"] for e in listed]
        assert all(e["scheduleId"] in (None, schedule["id"]) for e in listed)
        await until(lambda: _true(len(ran) >= 4))
        assert all(e["schedule_id"] == schedule["id"] for e in ran)
        assert len({e["export_id"] for e in ran}) == len(ran)
        assert len({e["due_at"] for e in ran}) == len(ran)
    finally:
        await sub.unsubscribe()
        await nc.close()


async def _true(value: bool) -> bool:
    return value


async def _all_ended(url: str, schedule_id: str) -> bool:
    rows = await scheduled_exports(url, schedule_id)
    return all(r["status"] in ("completed", "failed", "cancelled") for r in rows)


async def _fire(js: Any, schedule_id: str, due_at: datetime, times: int) -> None:
    """Duplicate a schedule's timer: the same due time, fired ``times`` more times."""
    event = ScheduleTimerFired(schedule_id=uuid.UUID(schedule_id), due_at=due_at)
    for _ in range(times):
        await js.publish(SCHEDULE_TIMER_FIRED, event.model_dump_json().encode())


async def test_a_due_time_runs_once_across_restarts_duplicates_and_two_janitors(
    restartable: Restartable, small_catalog: str, system_factory: Any
) -> None:
    system = system_factory(small_catalog, **FAST_SCHEDULES)
    system.start_one("janitor", "janitor-2")
    system.wait_started("janitor-2")
    user = await fresh_user(small_catalog)
    library = (await library_ids_by_name(small_catalog))[0]
    with system.client(user) as client:
        schedule = _schedule(client, library, keep=30)
    sid = schedule["id"]

    async def made() -> list[asyncpg.Record]:
        return [r for r in await runs(small_catalog, sid) if r["export_id"]]

    await until(lambda: _true_after(made, 2))
    nc = await nats.connect(restartable.nats.url)
    try:
        js = nc.jetstream()
        # A due time that already ran, fired again three times; the next one fired early twice
        # (its own timer fires it again when due).
        await _fire(js, sid, (await made())[-1]["due_at"], 3)
        with system.client(user) as client:
            upcoming = datetime.fromisoformat(client.get(f"{SCHEDULES}/{sid}").json()["nextRunAt"])
        await _fire(js, sid, upcoming + timedelta(seconds=2), 2)
    finally:
        await nc.close()
    # NATS down across a due time, then a janitor killed and started again.
    restartable.restart_nats(down_seconds=2.5)
    before = len(await made())
    system.stop_one("janitor", kill=True)
    system.start_one("janitor")
    system.wait_started("janitor")
    await until(lambda: _true_after(made, before + 3))
    # Stop both janitors (gracefully: a run in hand is finished), then count.
    system.stop_one("janitor")
    system.stop_one("janitor-2")
    recorded = await made()
    conn = await asyncpg.connect(small_catalog)
    try:
        exports = await conn.fetch(
            "SELECT id FROM exports.exports WHERE schedule_id = $1", uuid.UUID(sid)
        )
        keys = await conn.fetch(
            "SELECT key, export_id FROM exports.idempotency_keys WHERE key LIKE $1",
            f"schedule:{sid}:%",
        )
    finally:
        await conn.close()
    due_times = [r["due_at"] for r in recorded]
    assert len(set(due_times)) == len(due_times)
    # One export per due time: as many exports as due times that ran, each its own.
    assert {r["export_id"] for r in recorded} == {r["id"] for r in exports}
    assert len(exports) == len(recorded) == len(keys)
    assert upcoming + timedelta(seconds=2) in due_times


async def _true_after(made: Callable[[], Awaitable[list[Any]]], count: int) -> bool:
    return len(await made()) >= count


async def test_a_run_waits_at_the_concurrency_limit(
    restartable: Restartable, small_catalog: str, system_factory: Any
) -> None:
    # No worker: exports stay pending, so the limit of 1 is held as long as the test wants.
    system = system_factory(
        small_catalog, "api", "janitor", EXPORTS_MAX_CONCURRENT_PER_USER="1", **FAST_SCHEDULES
    )
    user = await fresh_user(small_catalog)
    library = (await library_ids_by_name(small_catalog))[0]
    with system.client(user) as client:
        held = client.post(
            EXPORTS, json={"format": "json", "libraryIds": [library], "fields": ["title"]}
        )
        assert held.status_code == 202
        schedule = _schedule(client, library, keep=3)
        sid = schedule["id"]
        # The run due first is recorded and waits: it holds no slot, makes no export.
        waiting = await until(lambda: runs(small_catalog, sid))
        await asyncio.sleep(3)
        assert await scheduled_exports(small_catalog, sid) == []
        pending = await runs(small_catalog, sid)
        assert [r["export_id"] for r in pending] == [None]
        assert pending[0]["due_at"] == waiting[0]["due_at"]
        # A slot frees: the waiting run goes, once, for its own due time.
        assert client.post(f"{EXPORTS}/{held.json()['id']}/cancel").status_code == 200
        await until(lambda: scheduled_exports(small_catalog, sid))
        await asyncio.sleep(3)
        made = await scheduled_exports(small_catalog, sid)
        assert len(made) == 1
        ran = [r for r in await runs(small_catalog, sid) if r["export_id"]]
        assert [(r["due_at"], r["export_id"]) for r in ran] == [
            (waiting[0]["due_at"], made[0]["id"])
        ]
        # Run now is interactive: at the limit it is refused like a create, not queued.
        now = client.post(f"{SCHEDULES}/{sid}/run")
        assert now.status_code == 409
        assert now.json()["error"] == "TooManyActiveExports"


async def test_the_sweep_rearms_a_schedule_whose_timer_was_lost(
    restartable: Restartable, small_catalog: str, system_factory: Any
) -> None:
    system = system_factory(small_catalog, EXPORTS_SWEEP_INTERVAL_SECONDS="2", **FAST_SCHEDULES)
    user = await fresh_user(small_catalog)
    library = (await library_ids_by_name(small_catalog))[0]
    with system.client(user) as client:
        schedule = _schedule(client, library, keep=3, cron="0 3 * * *")
    sid = uuid.UUID(schedule["id"])
    nc = await nats.connect(restartable.nats.url)
    conn = await asyncpg.connect(small_catalog)
    try:
        js = nc.jetstream()
        # The timer is armed on the schedule's own subject ...
        armed = await js.get_last_msg(STREAM, schedule_timer_subject(sid))
        assert json.loads(armed.data)["due_at"].startswith(schedule["nextRunAt"][:19])
        # ... and lost, while its due time passed long ago.
        await js.purge_stream(STREAM, subject=schedule_timer_subject(sid))
        lost_due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        await conn.execute(
            "UPDATE exports.schedules SET next_run_at = $2 WHERE id = $1", sid, lost_due
        )
        ran = await until(lambda: runs(small_catalog, str(sid)))
        assert [r["due_at"] for r in ran] == [lost_due]
        await until(lambda: _true_after(lambda: scheduled_exports(small_catalog, str(sid)), 1))
        with system.client(user) as client:
            after = client.get(f"{SCHEDULES}/{sid}").json()
        # The next due time is tomorrow's (or today's) 03:00 UTC again, and armed.
        next_run = datetime.fromisoformat(after["nextRunAt"])
        assert (next_run.hour, next_run.minute) == (3, 0)
        assert next_run > datetime.now(UTC)
        rearmed = await js.get_last_msg(STREAM, schedule_timer_subject(sid))
        assert datetime.fromisoformat(json.loads(rearmed.data)["due_at"]) == next_run
    finally:
        await conn.close()
        await nc.close()
