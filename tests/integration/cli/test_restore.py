"""``codex-exports catalog restore``: backups load back byte for byte.

The round trips run their own api + worker pairs on their own NATS server and bucket: two systems
on one bus would share the worker consumer, and the demo system's janitor would sweep their
objects from its bucket as orphans.
"""

from __future__ import annotations

import difflib
import gzip
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from services.cli import servers
from services.cli.demo_seed import seed_demo
from tests.conftest import Servers, create_database, service_env
from tests.fixture_catalog import build
from tests.integration.cli.conftest import cli
from tests.system import System, make_system

pytestmark = pytest.mark.integration

BACKUP = (
    "export",
    "create",
    "--type",
    "both",
    "--format",
    "json",
    "--all-libraries",
    "--preset",
    "all",
)


@pytest.fixture(scope="module")
def bus(servers_dir: Path) -> Iterator[str]:
    """A NATS server of our own (see the module docstring)."""
    nats = servers.start_nats(servers_dir / f"nats-restore-{uuid.uuid4().hex[:6]}")
    try:
        yield nats.url
    finally:
        nats.stop()


@contextmanager
def running(srv: Servers, bus: str, database_url: str, log_dir: Path) -> Iterator[System]:
    """api + worker on ``database_url``, their own bus and bucket."""
    env = service_env(
        srv,
        database_url,
        EXPORTS_NATS_URL=bus,
        EXPORTS_S3_BUCKET="restore-" + uuid.uuid4().hex[:12],
    )
    system = make_system(env, log_dir)
    system.start("api", "worker")
    try:
        yield system
    finally:
        system.stop()


async def user_id(database_url: str, username: str) -> uuid.UUID:
    conn = await asyncpg.connect(database_url)
    try:
        found: uuid.UUID = await conn.fetchval("SELECT id FROM users WHERE username = $1", username)
    finally:
        await conn.close()
    return found


def backup(system: System, user: uuid.UUID, target: Path, home: Path) -> bytes:
    result = cli(
        *BACKUP,
        "-o",
        str(target),
        "--api",
        system.api_url,
        "--token",
        system.token(user),
        home=home,
    )
    assert result.returncode == 0, result.stderr + system.log("worker")[-2000:]
    return target.read_bytes()


def explain(first: bytes, second: bytes) -> str:
    diff = difflib.unified_diff(
        first.decode().splitlines(),
        second.decode().splitlines(),
        "original",
        "restored",
        lineterm="",
        n=0,
    )
    return "\n".join(list(diff)[:30])


@pytest.mark.parametrize("catalog", ["fixture", "demo"])
async def test_restore_round_trip_is_byte_identical(
    catalog: str, real_servers: Servers, bus: str, servers_dir: Path, tmp_path: Path
) -> None:
    source = await create_database(real_servers)
    conn = await asyncpg.connect(source)
    try:
        if catalog == "fixture":
            fixture = await build(conn)
            owner = fixture.users["alice"].username
            # No title_sort: the order is by title, so the restore can keep title_sort NULL.
            await conn.execute("UPDATE series_metadata SET title_sort = NULL")
        else:
            await seed_demo(conn)
            owner = "demo"
    finally:
        await conn.close()
    logs = servers_dir / f"logs-restore-{catalog}"

    with running(real_servers, bus, source, logs / "source") as system:
        original = backup(
            system, await user_id(source, owner), tmp_path / "original.json", tmp_path
        )

    target = await create_database(real_servers)
    env = {"EXPORTS_DATABASE_URL": target}
    restored = cli(
        "catalog",
        "restore",
        str(tmp_path / "original.json"),
        "--as-user",
        owner,
        "--json",
        home=tmp_path,
        env=env,
    )
    assert restored.returncode == 0, restored.stderr
    summary = json.loads(restored.stdout)
    doc = json.loads(original)
    assert (summary["series"], summary["books"]) == (len(doc["series"]), len(doc["books"]))
    assert summary["userCreated"] is True
    assert summary["user"] == owner
    # The demo's title_sort moves articles ("Wind, The"): only positions give its order back.
    assert summary["titleSort"] == {"fixture": "natural", "demo": "position"}[catalog]
    assert summary["placeholderRaters"] >= 1

    with running(real_servers, bus, target, logs / "restored") as system:
        again = backup(system, await user_id(target, owner), tmp_path / "again.json", tmp_path)
    assert again == original, explain(original, again)
    if catalog == "fixture":
        batman = next(s for s in doc["series"] if s["series_name"] == "Batman: Year One")
        # Codex's collection and read-list names are unique: one row per name comes back.
        assert batman["collections"] == ["best of", "DC Classics"]
        chapter_one = next(b for b in doc["books"] if b["book_name"] == "Chapter One")
        assert chapter_one["read_lists"] == ["Batman Order", "Summer Reading"]

    refused = cli(
        "catalog",
        "restore",
        str(tmp_path / "original.json"),
        "--as-user",
        owner,
        home=tmp_path,
        env=env,
    )
    assert refused.returncode == 1
    assert "The catalog is not empty (libraries: " in refused.stderr


async def test_a_gzip_json_lines_backup_round_trips_byte_identical(
    real_servers: Servers, bus: str, servers_dir: Path, tmp_path: Path
) -> None:
    """The JSON Lines backup, kept gzip-compressed (SPEC §10), restores as the JSON one does:
    exported again, the same compressed bytes."""
    source = await create_database(real_servers)
    conn = await asyncpg.connect(source)
    try:
        fixture = await build(conn)
        await conn.execute("UPDATE series_metadata SET title_sort = NULL")
    finally:
        await conn.close()
    owner = fixture.users["alice"].username
    logs = servers_dir / "logs-restore-jsonl"
    jsonl_backup = [a if a != "json" else "jsonl" for a in BACKUP] + ["--gzip"]

    def take(system: System, user: uuid.UUID, target: Path) -> bytes:
        result = cli(
            *jsonl_backup, "-o", str(target), "--api", system.api_url,
            "--token", system.token(user), home=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr + system.log("worker")[-2000:]
        return target.read_bytes()

    with running(real_servers, bus, source, logs / "source") as system:
        original = take(system, await user_id(source, owner), tmp_path / "original.jsonl.gz")
    target = await create_database(real_servers)
    restored = cli(
        "catalog", "restore", str(tmp_path / "original.jsonl.gz"), "--as-user", owner, "--json",
        home=tmp_path, env={"EXPORTS_DATABASE_URL": target},
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    lines = gzip.decompress(original).decode().splitlines()
    summary = json.loads(restored.stdout)
    assert summary["series"] == sum('"type":"series"' in line[:20] for line in lines) > 0
    assert summary["series"] + summary["books"] == len(lines)

    with running(real_servers, bus, target, logs / "restored") as system:
        again = take(system, await user_id(target, owner), tmp_path / "again.jsonl.gz")
    assert again == original, explain(gzip.decompress(original), gzip.decompress(again))


async def test_restore_refuses_an_incomplete_file_and_leaves_the_catalog_empty(
    fresh_database: str, tmp_path: Path
) -> None:
    series = {
        "series_name": "A",
        "series_id": str(uuid.uuid4()),
        "library_id": str(uuid.uuid4()),
        "library_name": "L",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "actual_book_count": 1,
        "unread_book_count": 1,
        "progress": 0,
    }
    path = tmp_path / "partial.json"
    path.write_text(json.dumps({"series": [series], "books": []}))
    env = {"EXPORTS_DATABASE_URL": fresh_database}
    result = cli("catalog", "restore", str(path), "--as-user", "someone", home=tmp_path, env=env)
    assert result.returncode == 1
    assert "says 1 books, 1 unread, but the file holds 0 books" in result.stderr
    no_title = dict(series, actual_book_count=0, unread_book_count=0)
    del no_title["created_at"]
    path.write_text(json.dumps({"series": [no_title], "books": []}))
    result = cli(
        "catalog", "restore", str(path), "--as-user", "someone", "--json", home=tmp_path, env=env
    )
    assert result.returncode == 1
    assert "has no created_at" in json.loads(result.stderr)["message"]
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM libraries") == 0
        assert await conn.fetchval("SELECT count(*) FROM users") == 0  # rolled back too
    finally:
        await conn.close()
