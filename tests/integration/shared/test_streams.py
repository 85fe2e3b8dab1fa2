"""``shared.streams`` on real servers: replicas from ``EXPORTS_STREAM_REPLICAS`` are applied to a
new or an existing stream and its consumers, or refused with the setting named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import ConsumerConfig

from services.cli import servers
from shared.streams import StreamSetupError, ensure_consumer_replicas, ensure_stream
from shared.subjects import STREAM, WORKERS_DURABLE

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="streams-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def test_an_r1_stream_and_its_consumer_are_scaled_to_three_in_place(scratch: Path) -> None:
    with servers.start_nats_cluster(scratch / "nats") as cluster:
        nc = await nats.connect(cluster.urls)
        try:
            js = nc.jetstream()
            assert (await ensure_stream(nc, 1)).config.num_replicas == 1
            await js.publish("export.completed", b"{}")
            await js.add_consumer(
                STREAM, ConsumerConfig(durable_name=WORKERS_DURABLE, num_replicas=1, ack_wait=7)
            )
            info = await ensure_stream(nc, 3)
            assert info.config.num_replicas == 3
            assert await ensure_consumer_replicas(js, WORKERS_DURABLE, 3) is True
            assert await ensure_consumer_replicas(js, WORKERS_DURABLE, 3) is False
            consumer = await js.consumer_info(STREAM, WORKERS_DURABLE)
            assert consumer.config.num_replicas == 3
            assert consumer.config.ack_wait == 7  # every other setting kept
            after = await js.stream_info(STREAM)
            assert after.state.messages == 1  # the message survived the scaling
            assert after.cluster is not None and len(after.cluster.replicas or []) == 2
            # And back down, as an operator shrinking the cluster would.
            assert (await ensure_stream(nc, 1)).config.num_replicas == 1
        finally:
            await nc.close()


async def test_three_replicas_on_a_single_server_are_refused_with_the_setting_named(
    scratch: Path,
) -> None:
    with servers.start_nats(scratch / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            await ensure_stream(nc, 1)
            with pytest.raises(StreamSetupError, match="EXPORTS_STREAM_REPLICAS=3") as caught:
                await ensure_stream(nc, 3)
            assert "single server set EXPORTS_STREAM_REPLICAS=1" in str(caught.value)
            assert (await nc.jetstream().stream_info(STREAM)).config.num_replicas == 1
        finally:
            await nc.close()


def test_a_worker_asked_for_three_replicas_of_one_server_stops_and_says_why(
    scratch: Path,
) -> None:
    with servers.start_nats(scratch / "nats") as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
        env.update(
            {
                "EXPORTS_NATS_URL": f"{server.url}, nats://127.0.0.1:1",
                "EXPORTS_STREAM_REPLICAS": "3",
                "EXPORTS_METRICS_PORT": "0",
                "EXPORTS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            }
        )
        done = subprocess.run(
            [sys.executable, "-m", "services.worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode != 0
    assert "EXPORTS_STREAM_REPLICAS=3 needs a JetStream cluster" in done.stdout + done.stderr
