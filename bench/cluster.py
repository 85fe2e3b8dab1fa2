"""``python -m bench.cluster``: what the cluster harness (``services.cli.cluster``) measures.

One process starts 3 clustered NATS servers, the replicated SeaweedFS (3 volume servers,
replication ``001``) and PostgreSQL, with no service yet, then starts the api and worker
processes each part needs (``Cluster.add_service``, the harness's own code) and measures:

1. ``claim``: publish-to-claim latency of small exports on an idle system, the row's
   ``created_at`` -> ``published_at`` -> ``started_at`` (the database's clock), with the
   ``EXPORTS`` stream at 1 replica and then at 3 (the api started with
   ``EXPORTS_STREAM_REPLICAS=3`` scales the existing stream up), on the same 3-node cluster;
2. ``leader_kill``: the stream leader's NATS server SIGKILLed while idle; from the kill until
   a JetStream publish from this process to a stream subject no one consumes is acknowledged
   again (retried every 50 ms, 0.5 s timeout each), and until an export created right after the
   kill is published by the api (its outbox: a failed publish waits for the relay, every 5 s),
   claimed and completed. The node is restarted between repetitions;
3. ``workers``: exports/s of a batch of small exports created first with no worker running,
   then 1, 2 or 3 worker processes started (as ``bench/scale.py``: count over first claim to
   last completion, so process start-up does not count);
4. ``upload``: MB/s of one object of ``--upload-mib`` MiB put (multipart, 16 MiB parts, this
   process's minio client) into the replicated SeaweedFS and into a single ``weed mini``.

On one 2-core machine every process shares the same two cores: the figures say what this
harness measured there, not what separate nodes would give. ``/proc/loadavg`` is recorded
before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from minio import Minio

from bench.env import add_users
from services.cli import servers
from services.cli.cluster import Cluster, ClusterShape, service_process, start_cluster
from services.cli.synthetic import build_synthetic
from shared.tokens import issue_token

URL = "/api/v1/user/exports/series"
# The probe's subject: inside the stream (``export.timer.>``), consumed by nobody running here
# (no janitor is started; workers take ``export.requested`` only).
PROBE_SUBJECT = "export.timer.bench-probe"
RAISED = "100000"
ENV = {
    "EXPORTS_MAX_CONCURRENT_PER_USER": RAISED,
    "EXPORTS_MAX_COMPLETED_PER_USER": RAISED,
    "EXPORTS_STORAGE_CAP_BYTES": str(1 << 40),
    "EXPORTS_LOG_LEVEL": "WARNING",
    "EXPORTS_SWEEP_INTERVAL_SECONDS": "3600",
}
SMALL = {"format": "json", "exportType": "series", "preset": "llm"}


def _loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def _client(cluster: Cluster, api_key: str, user: uuid.UUID) -> httpx.Client:
    token = issue_token(user, "bench", "reader", cluster.env["EXPORTS_JWT_SECRET"], 24 * 3600)[0]
    return httpx.Client(
        base_url=f"http://{servers.LOOPBACK}:{cluster.api_ports[api_key]}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def _body(library: uuid.UUID) -> dict[str, Any]:
    return {**SMALL, "libraryIds": [str(library)]}


async def _row(url: str, export_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(
            "SELECT status, extract(epoch FROM created_at) AS created,"
            " extract(epoch FROM published_at) AS published,"
            " extract(epoch FROM started_at) AS started,"
            " extract(epoch FROM completed_at) AS completed"
            " FROM exports.exports WHERE id = $1",
            uuid.UUID(export_id),
        )
    finally:
        await conn.close()


def _wait_row(url: str, export_id: str, timeout: float = 180) -> asyncpg.Record:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = asyncio.run(_row(url, export_id))
        if row["status"] in ("completed", "failed", "cancelled"):
            return row
        time.sleep(0.05)
    raise RuntimeError(f"export {export_id} did not finish in {timeout} s")


def _stop(cluster: Cluster, *keys: str) -> None:
    for key in keys:
        cluster.services[key].stop()
        del cluster.services[key]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 1),
        "p95_ms": round(_pct(values, 0.95) * 1000, 1),
    }


def measure_claim(
    cluster: Cluster, user: uuid.UUID, library: uuid.UUID, replicas: int, count: int
) -> dict[str, Any]:
    """Sequential small exports on an idle api + worker with the stream at ``replicas``."""
    env = {"EXPORTS_STREAM_REPLICAS": str(replicas)}
    api, worker = f"api-r{replicas}", f"worker-r{replicas}"
    cluster.add_service("api", api, **env)
    cluster.add_service("worker", worker, **env)
    claim, publish, complete = [], [], []
    try:
        peers = asyncio.run(_stream_peers(cluster.nats.urls))
        if peers != replicas:
            raise RuntimeError(f"the EXPORTS stream has {peers} peers, not {replicas}")
        with _client(cluster, api, user) as client:
            for i in range(count + 2):
                response = client.post(URL, json=_body(library))
                response.raise_for_status()
                row = _wait_row(cluster.database_url, response.json()["id"])
                if i < 2:
                    continue  # warm-up: the first claims pay for imports and plans
                assert row["status"] == "completed", row["status"]
                claim.append(float(row["started"] - row["created"]))
                publish.append(float(row["published"] - row["created"]))
                complete.append(float(row["completed"] - row["created"]))
                time.sleep(0.1)
    finally:
        _stop(cluster, api, worker)
    return {
        "replicas": replicas,
        "stream_peers": peers,
        "exports": count,
        "create_to_claim": _ms(claim),
        "create_to_published": _ms(publish),
        "create_to_completed": _ms(complete),
    }


async def _stream_peers(urls: list[str]) -> int:
    """How many servers hold the EXPORTS stream (leader and replicas), as JetStream says."""
    nc = await nats.connect(urls)
    try:
        info = await nc.jetstream().stream_info("EXPORTS")
    finally:
        await nc.close()
    return 1 + len(info.cluster.replicas or []) if info.cluster else 1


async def _probe_until_ack(urls: list[str], timeout: float = 120) -> float:
    """Seconds (monotonic clock) at which a publish to the stream is acknowledged again."""

    async def quiet(err: Exception) -> None:  # the killed server refusing: expected
        return None

    nc = await nats.connect(
        urls,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.05,
        connect_timeout=1,
        error_cb=quiet,
    )
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await js.publish(PROBE_SUBJECT, b"probe", timeout=0.5)
                return time.monotonic()
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("no publish was acknowledged in time")
    finally:
        await nc.close()


def measure_leader_kill(
    cluster: Cluster, user: uuid.UUID, library: uuid.UUID, reps: int
) -> dict[str, Any]:
    env = {"EXPORTS_STREAM_REPLICAS": "3"}
    cluster.add_service("api", "api-kill", **env)
    cluster.add_service("worker", "worker-kill", **env)
    runs: list[dict[str, Any]] = []
    try:
        with _client(cluster, "api-kill", user) as client:
            # Warm-up, and proof the system works before each kill.
            _wait_row(cluster.database_url, client.post(URL, json=_body(library)).json()["id"])
            for _ in range(reps):
                leader = cluster.stream_leader()
                if leader is None:
                    raise RuntimeError("the EXPORTS stream has no leader")
                killed_wall, killed = time.time(), time.monotonic()
                cluster.kill(leader)
                response = client.post(URL, json=_body(library))
                response.raise_for_status()
                create_seconds = time.monotonic() - killed
                acked = asyncio.run(_probe_until_ack(cluster.nats.urls))
                row = _wait_row(cluster.database_url, response.json()["id"])
                run = {
                    "killed": leader,
                    "create_answered_s": round(create_seconds, 2),
                    "probe_publish_acked_s": round(acked - killed, 2),
                    "export_published_s": round(float(row["published"]) - killed_wall, 2),
                    "export_claimed_s": round(float(row["started"]) - killed_wall, 2),
                    "export_completed_s": round(float(row["completed"]) - killed_wall, 2),
                    "status": row["status"],
                    "new_leader": cluster.stream_leader(),
                }
                print(f"  leader kill {run}", flush=True)
                runs.append(run)
                cluster.start(leader)
                time.sleep(5)  # let the restarted node catch up before the next kill
    finally:
        _stop(cluster, "api-kill", "worker-kill")
    return {"runs": runs}


async def _create_batch(
    cluster: Cluster, api: str, user: uuid.UUID, library: uuid.UUID, count: int
) -> list[str]:
    token = issue_token(user, "bench", "reader", cluster.env["EXPORTS_JWT_SECRET"], 24 * 3600)[0]
    ids: list[str] = []
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(
        base_url=f"http://{servers.LOOPBACK}:{cluster.api_ports[api]}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        limits=httpx.Limits(max_connections=16),
    ) as client:

        async def one() -> None:
            async with gate:
                response = await client.post(URL, json=_body(library))
                response.raise_for_status()
                ids.append(response.json()["id"])

        await asyncio.gather(*(one() for _ in range(count)))
    return ids


async def _batch_state(url: str, ids: list[str]) -> asyncpg.Record:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'completed') AS done,"
            " count(*) FILTER (WHERE status = 'failed') AS failed,"
            " count(*) FILTER (WHERE status NOT IN ('completed', 'failed', 'cancelled')) AS left,"
            " extract(epoch FROM max(completed_at) - min(started_at)) AS span"
            " FROM exports.exports WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await conn.close()


def measure_workers(
    cluster: Cluster,
    users: list[uuid.UUID],
    library: uuid.UUID,
    count: int,
    workers: tuple[int, ...] = (1, 2, 3),
) -> dict[str, Any]:
    env = {"EXPORTS_STREAM_REPLICAS": "3"}
    cluster.add_service("api", "api-scale", **env)
    results: dict[str, Any] = {"exports": count}
    try:
        for n, user in zip(workers, users, strict=False):
            ids = asyncio.run(_create_batch(cluster, "api-scale", user, library, count))
            keys = [f"worker-scale-{n}-{i}" for i in range(n)]
            # Spawned together, then each waited for, so no worker drains the batch alone
            # while the others are still importing.
            processes = [
                service_process("worker", key, {**cluster.env, **env}, cluster.log_dir)
                for key in keys
            ]
            for key, process in zip(keys, processes, strict=True):
                cluster.services[key] = process
                process.spawn()
            for process in processes:
                process.wait_ready(180)
            try:
                deadline = time.monotonic() + max(300, count)
                while (state := asyncio.run(_batch_state(cluster.database_url, ids)))["left"]:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the batch did not finish in time")
                    time.sleep(0.25)
            finally:
                _stop(cluster, *keys)
            span = float(state["span"] or 0)
            results[f"workers_{n}"] = {
                "completed": int(state["done"]),
                "failed": int(state["failed"]),
                "seconds": round(span, 2),
                "exports_per_second": round(int(state["done"]) / span, 1) if span else None,
            }
            print(f"  {n} worker(s): {results[f'workers_{n}']}", flush=True)
    finally:
        _stop(cluster, "api-scale")
    return results


class _Pattern(io.RawIOBase):
    """``size`` bytes of a repeating 1 MiB pseudo-random block, streamed (never held whole)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(1 << 20)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        out = (self.block * (n // len(self.block) + 1))[:n]
        self.left -= n
        return out


def _put_mb_per_second(
    endpoint: str, access: str, secret: str, mib: int, reps: int, bucket: str
) -> list[float]:
    client = Minio(endpoint, access_key=access, secret_key=secret, secure=False)
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    rates = []
    for i in range(reps):
        size = mib << 20
        started = time.monotonic()
        client.put_object(bucket, f"bench/big-{i}", _Pattern(size), size, part_size=16 << 20)
        rates.append(round(size / 1e6 / (time.monotonic() - started), 1))
        client.remove_object(bucket, f"bench/big-{i}")
    return rates


def measure_upload(cluster: Cluster, root: Path, mib: int, reps: int) -> dict[str, Any]:
    access, secret = cluster.env["EXPORTS_S3_ACCESS_KEY"], cluster.env["EXPORTS_S3_SECRET_KEY"]
    bucket = cluster.env.get("EXPORTS_S3_BUCKET", "codex-exports")
    single = servers.start_s3(root / "s3-single", access, secret)
    try:
        replicated, alone = [], []
        for _ in range(reps):  # interleaved, so a noisy neighbour slows both alike
            # Into the exports' own bucket, as a file is: a new bucket is a new SeaweedFS
            # collection, whose volumes the 3 x 10-slot harness may not have room to grow.
            replicated += _put_mb_per_second(cluster.s3.endpoint, access, secret, mib, 1, bucket)
            alone += _put_mb_per_second(single.endpoint, access, secret, mib, 1, bucket)
    finally:
        single.stop()
    return {
        "mib": mib,
        "replicated_001_mb_per_second": replicated,
        "single_mb_per_second": alone,
        "replicated_median": statistics.median(replicated),
        "single_median": statistics.median(alone),
    }


async def _setup(url: str, users: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    conn = await asyncpg.connect(url)
    try:
        catalog = await build_synthetic(conn, series=200, books=2_000)
    finally:
        await conn.close()
    return catalog.library_id, await add_users(url, users, "cluster-bench")


PARTS = ("claim", "leader_kill", "workers", "upload")


def run(
    *,
    only: set[str] | None = None,
    claim_count: int = 30,
    kill_reps: int = 2,
    batch: int = 200,
    upload_mib: int = 128,
    upload_reps: int = 3,
    keep: bool = False,
) -> dict[str, Any]:
    parts = set(PARTS) if not only else only
    root = Path(tempfile.mkdtemp(prefix="codex-exports-cluster-bench-"))
    root.chmod(0o755)
    results: dict[str, Any] = {"loadavg_before": _loadavg(), "cpus": len(os.sched_getaffinity(0))}
    started = time.monotonic()
    print("starting 3 NATS, replicated SeaweedFS and PostgreSQL ...", flush=True)
    cluster = start_cluster(root, shape=ClusterShape(), env=ENV, start_services=False)
    try:
        library, users = asyncio.run(_setup(cluster.database_url, 8))

        def part(name: str, measure: Any) -> None:
            if name not in parts:
                return
            try:
                results[name] = measure()
            except Exception as err:  # one part failing still reports the others, and why
                results[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
            print(f"  {name} {json.dumps(results[name])}", flush=True)

        part(
            "claim",
            lambda: [
                measure_claim(cluster, users[0], library, 1, claim_count),
                measure_claim(cluster, users[1], library, 3, claim_count),
            ],
        )
        part("leader_kill", lambda: measure_leader_kill(cluster, users[2], library, kill_reps))
        part("workers", lambda: measure_workers(cluster, users[3:6], library, batch))
        part("upload", lambda: measure_upload(cluster, root, upload_mib, upload_reps))
    finally:
        cluster.stop()
        if keep:
            print(f"cluster data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    results["loadavg_after"] = _loadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"cluster harness bench ({results['cpus']} CPUs, {results['seconds']} s)"]
    for name in PARTS:
        if isinstance(results.get(name), dict) and "error" in results[name]:
            lines.append(f"  {name} FAILED: {results[name].pop('error')}")
            del results[name]
    for c in results.get("claim", []):
        lines.append(
            f"  R{c['replicas']}: create->claim median {c['create_to_claim']['median_ms']} ms,"
            f" p95 {c['create_to_claim']['p95_ms']} ms (create->published median"
            f" {c['create_to_published']['median_ms']} ms), {c['exports']} exports"
        )
    for r in results.get("leader_kill", {}).get("runs", []):
        lines.append(
            f"  leader {r['killed']} killed: publish acked after {r['probe_publish_acked_s']} s,"
            f" export published {r['export_published_s']} s, claimed {r['export_claimed_s']} s,"
            f" completed {r['export_completed_s']} s ({r['status']}; new leader {r['new_leader']})"
        )
    w = results.get("workers")
    if w:
        lines.append(
            f"  {w['exports']} small exports: "
            + ", ".join(
                f"{k.split('_')[1]} worker(s) {v['exports_per_second']} exports/s"
                for k, v in w.items()
                if k.startswith("workers_")
            )
        )
    u = results.get("upload")
    if u:
        lines.append(
            f"  upload {u['mib']} MiB: replicated (001) {u['replicated_median']} MB/s,"
            f" single {u['single_median']} MB/s"
        )
    lines.append(f"  loadavg before {results['loadavg_before']}, after {results['loadavg_after']}")
    return "\n".join(lines)


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--only", default="", help="comma-separated parts: " + ",".join(PARTS))
    parser.add_argument("--claim-count", type=int, default=30)
    parser.add_argument("--kill-reps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--upload-mib", type=int, default=128)
    parser.add_argument("--upload-reps", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    results = run(
        only={p for p in args.only.split(",") if p} or None,
        claim_count=args.claim_count,
        kill_reps=args.kill_reps,
        batch=args.batch,
        upload_mib=args.upload_mib,
        upload_reps=args.upload_reps,
        keep=args.keep,
    )
    print()
    print(table(results))
    print("CLUSTER_BENCH_JSON " + json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
