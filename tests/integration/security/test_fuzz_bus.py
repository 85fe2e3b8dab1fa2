"""Random and malformed messages on every subject the services consume.

The worker (``export.requested``, ``export.cancel.*``), the janitor (``export.timer.fired.*``)
and the api's ``export.submit`` responder must stay up; malformed messages are terminated
(never redelivered) and logged; no existing export changes; every ``export.submit`` gets an
answer, and an export it creates belongs to the user it names; a normal export still completes.

Payloads come from a seeded generator (printed, so a failure can be replayed with
``SECURITY_FUZZ_SEED``): random bytes, random JSON, and valid messages with fields dropped,
retyped or filled with hostile text, some aimed at the ids of existing exports.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient
from pydantic import ValidationError

from services.cli.synthetic import build_synthetic
from shared.events import TIMER_EVENT, ExportRequested
from tests.conftest import Servers, new_user, seeded_database
from tests.integration.security.conftest import URL, SystemFactory
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration

HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",  # a lone surrogate: no UTF-8 form
    "../../etc/passwd",
    "'; DROP TABLE exports.exports; --",
    "=cmd|' /C calc'!A0",
    "\r\nX-Injected: 1",
    "💥" * 50,
    "x" * 5000,
    "export.>",
    "*",
]
EVENT_TYPES = [
    "export.requested",
    "export.timer.expire",
    "export.timer.sweep",
    "export.completed",
    "nope",
    "",
]


@dataclass
class Rig:
    system: System
    nats_url: str
    database_url: str
    library: str
    alice: uuid.UUID
    bob: uuid.UUID
    existing: list[str]  # ids of exports that must not change
    running: str  # the one held by a live worker elsewhere


class Payloads:
    """Seeded random payloads; ``targets`` are ids worth aiming at."""

    def __init__(self, seed: int, targets: list[str]) -> None:
        self.rng = random.Random(seed)
        self.targets = targets

    def text(self) -> Any:
        r = self.rng
        return r.choice(
            [
                r.choice(HOSTILE_TEXT),
                "".join(chr(r.randrange(0, 0x3000)) for _ in range(r.randrange(0, 40))),
                r.randrange(-(2**70), 2**70),
                r.random() * 10 ** r.randrange(-10, 300),
                None,
                True,
                [],
                {},
            ]
        )

    def json_value(self, depth: int = 0) -> Any:
        r = self.rng
        kind = r.randrange(6 if depth < 4 else 3)
        if kind < 3:
            return self.text()
        if kind == 3:
            return [self.json_value(depth + 1) for _ in range(r.randrange(0, 5))]
        return {str(self.text()): self.json_value(depth + 1) for _ in range(r.randrange(0, 5))}

    def an_id(self) -> Any:
        r = self.rng
        return r.choice(
            [
                *self.targets,
                str(uuid.uuid4()),
                str(uuid.uuid4()).upper(),
                self.text(),
                uuid.uuid4().hex,
            ]
        )

    def mutate(self, valid: dict[str, Any]) -> dict[str, Any]:
        message = dict(valid)
        for _ in range(self.rng.randrange(0, 3)):
            key = self.rng.choice([*message, "extra", "type"])
            action = self.rng.randrange(3)
            if action == 0:
                message.pop(key, None)
            elif action == 1:
                message[key] = self.text()
            else:
                message[key] = self.json_value()
        return message

    def encode(self, value: Any) -> bytes:
        r = self.rng
        roll = r.random()
        if roll < 0.08:
            return r.randbytes(r.randrange(0, 200))
        if roll < 0.12:
            return b"[" * 5000 + b"]" * 5000  # deeper than any parser's recursion limit
        if roll < 0.15:
            return json.dumps(value).encode()[: r.randrange(0, 30)]  # truncated
        return json.dumps(value, ensure_ascii=r.random() < 0.5).encode("utf-8", "surrogatepass")

    def event(self, event_type: str, with_id: bool, **extra: Any) -> bytes:
        message: dict[str, Any] = {"type": self.rng.choice([event_type, event_type, *EVENT_TYPES])}
        if with_id:
            message["export_id"] = self.an_id()
        message.update(extra)
        if self.rng.random() < 0.5:
            message = self.mutate(message)
        return self.encode(message if self.rng.random() < 0.9 else self.json_value())

    def submit(self, users: list[str], library: str) -> bytes:
        r = self.rng
        request: dict[str, Any] = {
            "format": r.choice(["json", "csv", "md", self.text()]),
            "exportType": r.choice(["series", "books", "both", self.text()]),
            "libraryIds": r.choice([[library], [library, library], [self.an_id()], self.text()]),
            "fields": r.choice([["title"], None, [self.text()], self.text()]),
            "bookFields": r.choice([["title"], None, [self.text()]]),
            "preset": r.choice([None, "llm", "all", self.text()]),
        }
        message: dict[str, Any] = {
            "userId": r.choice([*users, str(uuid.uuid4()), self.text()]),
            "request": self.mutate(request) if r.random() < 0.5 else request,
        }
        if r.random() < 0.4:
            message["idempotencyKey"] = self.text()
        return self.encode(self.mutate(message) if r.random() < 0.3 else message)


async def _rows(database_url: str) -> dict[str, dict[str, Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        return {str(r["id"]): dict(r) for r in await conn.fetch("SELECT * FROM exports.exports")}
    finally:
        await conn.close()


@pytest.fixture(scope="module")
async def rig(real_servers: Servers, private_systems: SystemFactory) -> Rig:
    url, catalog = await seeded_database(
        real_servers, lambda c: build_synthetic(c, series=20, books=200)
    )
    alice, bob = await new_user(url), await new_user(url)
    system = private_systems(
        url, EXPORTS_MAX_COMPLETED_PER_USER="1000", EXPORTS_MAX_CONCURRENT_PER_USER="1000"
    )
    library = str(catalog.library_id)
    existing: list[str] = []
    with system.client(alice) as client:
        for fmt in ("json", "csv", "md"):
            created = client.post(
                URL, json={"format": fmt, "libraryIds": [library], "fields": ["title"]}
            ).json()
            assert wait_for_export(client, created["id"])["status"] == "completed"
            existing.append(created["id"])
    conn = await asyncpg.connect(url)
    try:
        for status, extra in (
            ("failed", ", error = 'The export failed: test.'"),
            ("cancelled", ""),
            # Held by a worker elsewhere whose heartbeat stays fresh for an hour.
            (
                "running",
                ", worker_id = 'elsewhere', heartbeat_at = now() + interval '1 hour', attempt = 1",
            ),
        ):
            export_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids, library_names,"
                " fields, book_fields, file_name, object_key, expires_at, published_at, status)"
                " VALUES ($1, $2, 'json', 'series', $3, '{L}', '{title}', '{}', 'f.json', $4,"
                " now() + interval '1 day', now(), $5)",
                export_id, bob, [catalog.library_id], f"exports/{bob}/{export_id}/f.json", status,
            )  # fmt: skip
            if extra:
                await conn.execute(
                    f"UPDATE exports.exports SET status = status{extra} WHERE id = $1", export_id
                )
            existing.append(str(export_id))
    finally:
        await conn.close()
    return Rig(
        system, system.env["EXPORTS_NATS_URL"], url, library, alice, bob, existing, existing[-1]
    )


async def _settled(nc: NatsClient, held: int, within_seconds: float = 60) -> None:
    """Both durable consumers have nothing pending, and nothing awaiting an ack but the
    ``held`` requests for the export another worker holds (put back until it could be stale)."""
    js = nc.jetstream()
    deadline = time.monotonic() + within_seconds
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = {}
        for durable in ("workers", "janitor"):
            consumer = await js.consumer_info("EXPORTS", durable)
            info[durable] = (consumer.num_pending, consumer.num_ack_pending)
        if info == {"workers": (0, held), "janitor": (0, 0)}:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"consumers did not settle: {info}")


def _parsed(body: bytes, model: Any) -> Any:
    """What the consumer will make of ``body``: the event, or None when it is malformed."""
    try:
        return model(body)
    except ValidationError:
        return None


async def _run_fuzz(rig: Rig, per_subject: int, seed: int) -> None:
    print(
        f"\nbus fuzz seed {seed} ({per_subject} messages per subject); replay with SECURITY_FUZZ_SEED={seed}"
    )
    before = await _rows(rig.database_url)
    logged_requests = rig.system.log("worker").count("rejected malformed export.requested")
    logged_timers = rig.system.log("janitor").count("rejected malformed timer event")
    payloads = Payloads(seed, rig.existing)
    nc = await nats.connect(rig.nats_url)
    bad_requests = bad_timers = held = 0
    created: dict[str, str] = {}
    try:
        js = nc.jetstream()
        for _ in range(per_subject):
            body = payloads.event("export.requested", True, user_id=payloads.an_id())
            event = _parsed(body, ExportRequested.model_validate_json)
            bad_requests += event is None
            held += event is not None and str(event.export_id) == rig.running
            await js.publish("export.requested", body)
            for subject, kind, with_id in (
                ("export.timer.fired.expire", "export.timer.expire", True),
                ("export.timer.fired.sweep", "export.timer.sweep", False),
            ):
                body = payloads.event(kind, with_id)
                bad_timers += _parsed(body, TIMER_EVENT.validate_json) is None
                await js.publish(subject, body)
            token = payloads.rng.choice([*rig.existing, str(uuid.uuid4()), "not-a-uuid", "x" * 200])
            await nc.publish(f"export.cancel.{token}", payloads.encode(payloads.json_value()))

            users = [str(rig.alice), str(rig.bob)]
            body = payloads.submit(users, rig.library)
            try:
                reply = await nc.request("export.submit", body, timeout=10)
            except nats.errors.TimeoutError:
                pytest.fail(f"export.submit never answered {body[:300]!r}")
            answer = json.loads(reply.data)
            assert isinstance(answer, dict), answer
            if "id" not in answer:
                assert set(answer) == {"error", "message"} and all(
                    isinstance(v, str) for v in answer.values()
                )
            else:
                request = json.loads(body)
                assert answer["status"] == "pending"
                created[answer["id"]] = request["userId"]
        await nc.flush()
        await _settled(nc, held)
    finally:
        await nc.close()

    for key in ("worker", "janitor", "api"):
        assert rig.system.processes[key].poll() is None, rig.system.log(key)[-3000:]
    # Every malformed message was logged once and terminated (the consumers are empty).
    assert (
        rig.system.log("worker").count("rejected malformed export.requested") - logged_requests
        == bad_requests
    )
    assert (
        rig.system.log("janitor").count("rejected malformed timer event") - logged_timers
        == bad_timers
    )

    after = await _rows(rig.database_url)
    for export_id in rig.existing:
        assert after[export_id] == before[export_id], export_id
    new = {i: r for i, r in after.items() if i not in before}
    assert set(new) == set(created), "exports appeared that no submit answered with"
    for export_id, user in created.items():
        assert str(new[export_id]["user_id"]) == str(uuid.UUID(user))
        assert new[export_id]["object_key"].startswith(
            f"exports/{new[export_id]['user_id']}/{export_id}/codex-"
        )

    # A normal export still runs from start to end.
    with rig.system.client(rig.alice) as client:
        response = client.post(
            URL, json={"format": "md", "libraryIds": [rig.library], "fields": ["year"]}
        )
        assert response.status_code == 202, response.text
        assert wait_for_export(client, response.json()["id"])["status"] == "completed"


def _seed() -> int:
    return int(os.environ.get("SECURITY_FUZZ_SEED") or random.SystemRandom().randrange(2**32))


async def test_bus_consumers_survive_random_and_malformed_messages(rig: Rig) -> None:
    await _run_fuzz(rig, per_subject=60, seed=_seed())


@pytest.mark.slow
async def test_bus_consumers_survive_random_and_malformed_messages_long(rig: Rig) -> None:
    await _run_fuzz(rig, per_subject=1500, seed=_seed())


# A stray or forged export.cancel.<id> must not throw a run away: the row decides.
async def test_a_cancel_signal_the_row_does_not_confirm_changes_nothing(
    real_servers: Servers, private_systems: SystemFactory
) -> None:
    # Large enough that the export is still running when the signal arrives.
    url, catalog = await seeded_database(
        real_servers, lambda c: build_synthetic(c, series=1000, books=100_000)
    )
    user = await new_user(url)
    system = private_systems(
        url,
        EXPORTS_BATCH_ROWS="50",
        EXPORTS_STALE_AFTER_SECONDS="3",
        EXPORTS_SWEEP_INTERVAL_SECONDS="1",
    )
    body = {
        "format": "md",
        "exportType": "both",
        "libraryIds": [str(catalog.library_id)],
        "preset": "all",
    }
    with system.client(user) as client:
        export = client.post(URL, json=body).json()
        deadline = time.monotonic() + 30
        while (
            client.get(f"{URL}/{export['id']}").json()["status"] == "pending"
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        nc = await nats.connect(system.env["EXPORTS_NATS_URL"])
        try:
            await nc.publish(f"export.cancel.{export['id']}", b"")
            await nc.flush()
        finally:
            await nc.close()
        done = wait_for_export(client, export["id"], timeout=120)
    assert done["status"] == "completed"
    conn = await asyncpg.connect(url)
    try:
        assert (
            await conn.fetchval(
                "SELECT attempt FROM exports.exports WHERE id = $1", uuid.UUID(export["id"])
            )
            == 1
        )
    finally:
        await conn.close()
