"""Faults on the cluster (SPEC §14): lose one NATS server, one volume server, an api, a janitor.

Each test asserts the rows, the bucket and the files: every completed file's SHA-256 matches
its row, the objects are exactly the completed rows, nothing is lost and nothing runs twice.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import nats
import pytest
from nats.js.api import DeliverPolicy

from tests.conftest import new_user
from tests.integration.cluster.conftest import (
    Rig,
    books_request,
    create,
    starts_of,
    status,
    verify_bucket_matches_rows,
    verify_json_download,
    wait_done,
    wait_until,
)

pytestmark = pytest.mark.integration

BOOKS = 20_000


async def test_the_stream_is_replicated_on_every_node(rig: Rig) -> None:
    nc = await nats.connect(rig.cluster.nats.urls)
    try:
        js = nc.jetstream()
        info = await js.stream_info("EXPORTS")
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.leader
        assert len(info.cluster.replicas or []) == 2
        for durable in ("workers", "janitor"):
            consumer = await js.consumer_info("EXPORTS", durable)
            assert consumer.config.num_replicas == 3
    finally:
        await nc.close()
    assert (
        rig.cluster.stream_leader() == f"nats-{['n1', 'n2', 'n3'].index(info.cluster.leader) + 1}"
    )


async def test_the_stream_leader_killed_mid_export_loses_nothing(rig: Rig) -> None:
    cluster = rig.cluster
    user = await new_user(cluster.database_url)
    with rig.client(user) as client:
        export = create(client, books_request(rig))
        wait_until(lambda: status(client, export["id"])["rowsWritten"] > 0)
        # The workers are held still (SIGSTOP) around the kill, so the export is surely mid-way
        # when the leader dies, however fast the machine: its message is unacknowledged, its
        # upload open; thawed, it goes on against the new leader.
        workers = [key for key in cluster.parts if key.startswith("worker-")]
        for key in workers:
            cluster.freeze(key)
        leader = cluster.stream_leader()
        assert leader is not None
        try:
            cluster.kill(leader)
            assert status(client, export["id"])["status"] == "running"
        finally:
            for key in workers:
                cluster.thaw(key)
        try:
            # A new export while the old leader is down: the other two elect one and go on.
            second = create(client, {**books_request(rig, "json"), "exportType": "series"})
            done = wait_done(client, export["id"])
            verify_json_download(client, done, BOOKS)
            verify_json_download(client, wait_done(client, second["id"]), 400)
            new_leader = cluster.stream_leader()
            assert new_leader not in (None, leader)
        finally:
            cluster.start(leader)
    rows = await verify_bucket_matches_rows(rig, [user])
    assert len(rows) == 2
    assert starts_of(cluster, export["id"]) == 1, "the export ran once"


async def test_a_volume_server_killed_mid_upload_loses_nothing(rig: Rig) -> None:
    cluster = rig.cluster
    user = await new_user(cluster.database_url)
    with rig.client(user) as client:
        export = create(client, books_request(rig))
        wait_until(lambda: status(client, export["id"])["rowsWritten"] > 0)
        cluster.kill("volume-1")
        try:
            assert status(client, export["id"])["status"] == "running"
            done = wait_done(client, export["id"])
            verify_json_download(client, done, BOOKS)
            # Reads and writes go on with one volume server down.
            after = wait_done(client, create(client, books_request(rig, "csv"))["id"])
            assert after["status"] == "completed", after
        finally:
            cluster.start("volume-1")
    rows = await verify_bucket_matches_rows(rig, [user])
    assert [r["status"] for r in rows] == ["completed", "completed"]


async def test_an_api_killed_between_insert_and_publish_is_relayed_by_another(rig: Rig) -> None:
    """api-x talks to one NATS node only; that node hangs (SIGSTOP), so api-x inserts the row,
    its publish times out, and api-x is killed before it could retry. The hung node is killed
    too, so the publish still in its socket buffer never reaches the stream. api-1 and api-2's
    outbox relays publish the row; it runs once."""
    cluster = rig.cluster
    lone = cluster.nats.nodes[2]
    cluster.add_service("api", "api-x", EXPORTS_NATS_URL=lone.url)
    user = await new_user(cluster.database_url)
    cluster.freeze("nats-3")
    try:
        with rig.client(user, api=list(cluster.api_ports).index("api-x")) as client:
            export = create(client, {**books_request(rig), "exportType": "series"})
        cluster.kill("api-x")
        cluster.kill("nats-3")
    finally:
        cluster.thaw("nats-3")
    assert f'"publish failed, left to the relay: nats: timeout", "export_id": "{export["id"]}"' in (
        cluster.log("api-x")
    )
    conn = await asyncpg.connect(cluster.database_url)
    try:
        published = await conn.fetchval(
            "SELECT published_at FROM exports.exports WHERE id = $1", uuid.UUID(export["id"])
        )
    finally:
        await conn.close()
    assert published is None, "the kill came between the insert and the publish"
    cluster.start("nats-3")
    with rig.client(user) as client:
        done = wait_done(client, export["id"], timeout=120)
        verify_json_download(client, done, 400)
    rows = await verify_bucket_matches_rows(rig, [user])
    assert len(rows) == 1 and rows[0]["attempt"] == 1
    assert starts_of(cluster, export["id"]) == 1
    del cluster.services["api-x"]
    del cluster.api_ports["api-x"]


async def test_a_janitor_killed_while_timers_fire_expires_each_export_once(rig: Rig) -> None:
    cluster = rig.cluster
    user = await new_user(cluster.database_url)
    ids: list[str] = []
    with rig.client(user) as client:
        for fmt in ("json", "csv", "md", "jsonl", "json", "csv", "md", "jsonl"):
            ids.append(create(client, {**books_request(rig, fmt), "exportType": "series"})["id"])
            assert wait_done(client, ids[-1])["status"] == "completed"  # 3 active at most
    assert len(rig.objects(f"exports/{user}/")) == len(ids)
    # Bring every expiry close: due in a few seconds, each with its one @at schedule.
    # Whole seconds, so the schedule's time and the row's are the same instant.
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=6)
    conn = await asyncpg.connect(cluster.database_url)
    try:
        await conn.execute(
            "UPDATE exports.exports SET expires_at = $2 WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
            due,
        )
    finally:
        await conn.close()
    nc = await nats.connect(cluster.nats.urls)
    try:
        js = nc.jetstream()
        for export_id in ids:
            await js.publish(
                f"export.timer.expire.{export_id}",
                json.dumps({"type": "export.timer.expire", "export_id": export_id}).encode(),
                headers={
                    "Nats-Schedule": f"@at {due.isoformat()}",
                    "Nats-Schedule-Target": "export.timer.fired.expire",
                },
            )
    finally:
        await nc.close()

    async def remaining() -> int:
        conn = await asyncpg.connect(cluster.database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM exports.exports WHERE id = ANY($1::uuid[])",
                    [uuid.UUID(i) for i in ids],
                )
            )
        finally:
            await conn.close()

    # Kill one janitor as the first expiry lands.
    deadline = asyncio.get_running_loop().time() + 90
    while await remaining() == len(ids):
        assert asyncio.get_running_loop().time() < deadline, "no timer fired"
        await asyncio.sleep(0.05)
    cluster.kill("janitor-1")
    try:
        deadline = asyncio.get_running_loop().time() + 180
        while await remaining():
            assert asyncio.get_running_loop().time() < deadline, "not every export expired"
            await asyncio.sleep(0.5)
    finally:
        cluster.start("janitor-1")  # finishes any deletion the kill interrupted
    conn = await asyncpg.connect(cluster.database_url)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while await conn.fetchval(
            "SELECT count(*) FROM exports.deletions WHERE user_id = $1", user
        ):
            assert asyncio.get_running_loop().time() < deadline, "a deletion stayed unfinished"
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    assert rig.objects(f"exports/{user}/") == []
    # A SIGKILL loses what the killed janitor had not flushed of its log, so its lines only
    # bound the count from above; the export.expired facts on the stream say each one was done.
    removals = {
        export_id: sum(
            1
            for key in ("janitor-1", "janitor-2")
            for line in cluster.log(key).splitlines()
            if "export removed (expired)" in line and export_id in line
        )
        for export_id in ids
    }
    assert max(removals.values()) <= 1, removals
    facts: dict[str, int] = dict.fromkeys(ids, 0)
    nc = await nats.connect(cluster.nats.urls)
    try:
        sub = await nc.jetstream().subscribe(
            "export.expired", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        while True:
            try:
                msg = await sub.next_msg(timeout=3)
            except nats.errors.TimeoutError:
                break
            export_id = json.loads(msg.data)["export_id"]
            if export_id in facts:
                facts[export_id] += 1
    finally:
        await nc.close()
    assert facts == dict.fromkeys(ids, 1), "every expiry done exactly once"
