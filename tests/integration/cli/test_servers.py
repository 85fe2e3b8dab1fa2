"""Integration tests of ``services.cli.servers``: real servers, real clients, loopback only.

Each test starts a server in a fresh directory, uses it through the client the project uses
(asyncpg, nats-py, minio), checks that every port it listens on is bound to 127.0.0.1, restarts it
on the same directory to check the data survives, and checks ``stop()`` leaves no process behind.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import psutil
import pytest
from minio import Minio
from minio.error import S3Error

from services.cli.servers import (
    NatsServer,
    PostgresServer,
    S3Server,
    start_nats,
    start_postgres,
    start_s3,
)

pytestmark = pytest.mark.integration

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key-0123456789"


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A fresh world-traversable directory (PostgreSQL runs as ``nobody`` when we are root)."""
    path = Path(tempfile.mkdtemp(prefix="servers-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _process_tree(pid: int) -> list[int]:
    process = psutil.Process(pid)
    return [pid, *(child.pid for child in process.children(recursive=True))]


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the processes listen on, IPv4 and IPv6."""
    found: set[tuple[str, int]] = set()
    for pid in pids:
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue  # a short-lived child (backend, autovacuum worker) that just exited
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _assert_loopback_only(pids: list[int], expected_ports: set[int]) -> None:
    listening = _listening(pids)
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert {port for _, port in listening} == expected_ports


def _stop_and_check_gone(server: PostgresServer | NatsServer | S3Server) -> float:
    """Stop ``server``; check its whole process tree is gone; return the time ``stop()`` took."""
    pids = _process_tree(server.pid) if _alive(server.pid) else [server.pid]
    started = time.monotonic()
    server.stop()
    elapsed = time.monotonic() - started
    assert [pid for pid in pids if _alive(pid)] == []
    server.stop()  # idempotent
    return elapsed


async def test_postgres_select_restart_and_stop(base_dir: Path) -> None:
    data_dir = base_dir / "pg"
    server = start_postgres(data_dir)
    assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    assert (data_dir / "PG_VERSION").exists()
    assert server.log_path.parent == data_dir
    assert server.log_path.exists()
    if os.geteuid() == 0:
        postmaster_uid = psutil.Process(server.pid).uids().real
        assert postmaster_uid != 0
        assert data_dir.stat().st_uid == postmaster_uid
        assert data_dir.stat().st_mode & 0o777 == 0o700
    try:
        conn = await asyncpg.connect(server.url)
        try:
            assert await conn.fetchval("select 1") == 1
            await conn.execute("create table kept (id int primary key, title text)")
            await conn.execute("insert into kept values (1, 'Dune')")
        finally:
            await conn.close()
        _assert_loopback_only(_process_tree(server.pid), {server.port})
    finally:
        _stop_and_check_gone(server)

    again = start_postgres(data_dir, port=server.port)
    try:
        conn = await asyncpg.connect(again.url)
        try:
            assert await conn.fetchval("select title from kept where id = 1") == "Dune"
        finally:
            await conn.close()
    finally:
        _stop_and_check_gone(again)


async def test_nats_jetstream_publish_ack_restart_and_stop(base_dir: Path) -> None:
    data_dir = base_dir / "nats"
    server = start_nats(data_dir)
    assert server.url == f"nats://127.0.0.1:{server.port}"
    try:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="KEPT", subjects=["kept.>"])
            ack = await js.publish("kept.one", b"hello")
            assert (ack.stream, ack.seq, ack.duplicate) == ("KEPT", 1, None)
        finally:
            await nc.close()
        _assert_loopback_only(_process_tree(server.pid), {server.port, server.monitor_port})
    finally:
        _stop_and_check_gone(server)
    assert (data_dir / "jetstream").is_dir()
    assert server.log_path.exists()

    again = start_nats(data_dir, port=server.port)
    try:
        nc = await nats.connect(again.url)
        try:
            info = await nc.jetstream().stream_info("KEPT")
            assert info.state.messages == 1
        finally:
            await nc.close()
    finally:
        _stop_and_check_gone(again)


def _client(server: S3Server, secret_key: str | None = None) -> Minio:
    return Minio(
        server.endpoint,
        access_key=server.access_key,
        secret_key=secret_key or server.secret_key,
        secure=False,
    )


def _read(client: Minio, bucket: str, name: str) -> bytes:
    response = client.get_object(bucket, name)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def test_s3_round_trip_auth_restart_and_stop(base_dir: Path) -> None:
    data_dir = base_dir / "s3"
    server = start_s3(data_dir, ACCESS_KEY, SECRET_KEY)
    assert server.endpoint == f"127.0.0.1:{server.port}"
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert SECRET_KEY not in repr(server)
    body = b"title,author\nDune,Herbert\n"
    try:
        client = _client(server)
        client.make_bucket("exports")
        client.put_object("exports", "a/b.csv", io.BytesIO(body), len(body))
        assert _read(client, "exports", "a/b.csv") == body

        with pytest.raises(S3Error) as wrong_key:
            _client(server, secret_key="not-the-secret").list_buckets()
        assert wrong_key.value.response.status == 403
        assert wrong_key.value.code == "SignatureDoesNotMatch"
        with pytest.raises(S3Error) as anonymous:
            _read(Minio(server.endpoint, secure=False), "exports", "a/b.csv")
        assert anonymous.value.response.status == 403

        _assert_loopback_only(
            _process_tree(server.pid), {server.port, *server.other_ports.values()}
        )
    finally:
        _stop_and_check_gone(server)
    assert server.log_path.exists()

    again = start_s3(data_dir, ACCESS_KEY, SECRET_KEY, port=server.port)
    try:
        assert _read(_client(again), "exports", "a/b.csv") == body
    finally:
        _stop_and_check_gone(again)
