"""Other services: ``export.submit`` over core NATS, and the facts on JetStream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from tests.conftest import Servers, first_library, new_user
from tests.system import System

pytestmark = pytest.mark.integration


@pytest.fixture
async def caller(demo_database: str) -> tuple[uuid.UUID, str]:
    """A fresh user of the demo catalog and a library they may read."""
    return await new_user(demo_database), await first_library(demo_database)


@asynccontextmanager
async def facts(nats_url: str, subject: str) -> AsyncIterator[tuple[Client, JetStreamContext, Any]]:
    """A connection, its JetStream and an ephemeral consumer of the new facts on ``subject``."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        yield (
            nc,
            js,
            await js.subscribe(subject, config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW)),
        )
    finally:
        await nc.close()


async def test_submit_over_nats_and_consume_the_facts(
    demo_system: System, real_servers: Servers, caller: tuple[uuid.UUID, str]
) -> None:
    user, library = caller
    # Like a notification service: an ephemeral consumer on the completion facts.
    async with facts(real_servers.nats_url, "export.completed") as (nc, _, sub):
        request = {
            "userId": str(user),
            "request": {"format": "json", "libraryIds": [library], "fields": ["title"]},
        }
        reply = await nc.request("export.submit", json.dumps(request).encode(), timeout=10)
        export = json.loads(reply.data)
        assert export["status"] == "pending", export
        assert export["fields"] == ["title"]

        async def completed_fact() -> dict[str, object]:
            while True:
                msg = await sub.next_msg(timeout=60)
                await msg.ack()
                fact = json.loads(msg.data)
                if fact["export_id"] == export["id"]:
                    return fact

        fact = await asyncio.wait_for(completed_fact(), 60)
        assert fact["type"] == "export.completed"
        assert fact["user_id"] == str(user)
        assert fact["row_count"] > 0 and len(fact["sha256"]) == 64

        # The same validation and messages as HTTP.
        bad = {
            "userId": str(user),
            "request": {"format": "csv", "exportType": "both", "libraryIds": [library]},
        }
        reply = await nc.request("export.submit", json.dumps(bad).encode(), timeout=10)
        assert json.loads(reply.data) == {
            "error": "ValidationError",
            "message": "CSV format is not supported for 'both' export type. Use JSON or Markdown.",
        }
        unknown = {
            "userId": str(uuid.uuid4()),
            "request": {"format": "json", "libraryIds": [library]},
        }
        reply = await nc.request("export.submit", json.dumps(unknown).encode(), timeout=10)
        assert json.loads(reply.data)["error"] == "Unauthorized"
        reply = await nc.request("export.submit", b"\xff not json", timeout=10)
        assert json.loads(reply.data)["error"] == "ValidationError"


async def test_failed_exports_publish_a_fact(
    demo_system: System, real_servers: Servers, demo_database: str, caller: tuple[uuid.UUID, str]
) -> None:
    """A request whose row vanished before the worker ran ends quietly; a failed one is announced."""
    user, library = caller
    async with facts(real_servers.nats_url, "export.failed") as (_, js, sub):
        conn = await asyncpg.connect(demo_database)
        try:
            # A library id that exists at request time but whose rows break rendering is hard to
            # make; an export whose attempts are already used up fails at once, as after crashes.
            export_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO exports.exports (id, user_id, format, export_type, library_ids, library_names,"
                " fields, book_fields, file_name, object_key, expires_at, attempt)"
                " VALUES ($1, $2, 'json', 'series', $3, '{L}', '{title}', '{}', 'f.json', $4,"
                " now() + interval '1 day', 99)",
                export_id,
                user,
                [uuid.UUID(library)],
                f"exports/{user}/{export_id}/f.json",
            )
        finally:
            await conn.close()
        await js.publish(
            "export.requested",
            json.dumps(
                {"type": "export.requested", "export_id": str(export_id), "user_id": str(user)}
            ).encode(),
        )

        async def failed_fact() -> dict[str, object]:
            while True:
                msg = await sub.next_msg(timeout=60)
                await msg.ack()
                fact = json.loads(msg.data)
                if fact["export_id"] == str(export_id):
                    return fact

        fact = await asyncio.wait_for(failed_fact(), 60)
        assert fact["type"] == "export.failed"
        assert "could not be completed after" in str(fact["error"])
