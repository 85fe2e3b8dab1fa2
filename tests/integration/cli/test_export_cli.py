"""``codex-exports export …`` and ``login`` as a subprocess against the running demo system."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import stat
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.cli import servers
from shared.codex_tables import insert_rows
from tests.conftest import Servers, new_user, seeded_database, service_env
from tests.integration.cli.conftest import cli
from tests.system import System, make_system, wait_for_export

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"


@pytest.fixture(scope="module")
def auth(demo_system: System, owner: uuid.UUID) -> list[str]:
    return ["--api", demo_system.api_url, "--token", demo_system.token(owner)]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- fields, create, list, get, delete ----------------------------------------------------------


def test_fields_as_table_and_json(
    demo_system: System, owner: uuid.UUID, auth: list[str], home: Path
) -> None:
    text = cli("export", "fields", *auth, home=home)
    assert text.returncode == 0, text.stderr
    assert "Series fields:" in text.stdout
    assert "Book fields:" in text.stdout
    assert "series_name" in text.stdout
    assert "anchor" in text.stdout
    assert "Counts & Progress" in text.stdout
    as_json = cli("export", "fields", "--json", *auth, home=home)
    assert as_json.returncode == 0, as_json.stderr
    with demo_system.client(owner) as client:
        assert json.loads(as_json.stdout) == client.get(f"{URL}/fields").json()


def test_create_wait_download_then_list_get_delete(
    demo_system: System, owner: uuid.UUID, auth: list[str], home: Path
) -> None:
    """Example 1 ("Send my reading list to ChatGPT") end to end, then the management commands."""
    target = home / "reading-list.json"
    created = cli(
        "export",
        "create",
        "--all-libraries",
        "--preset",
        "llm",
        "--output",
        str(target),
        *auth,
        home=home,
    )
    assert created.returncode == 0, created.stderr
    assert "rows" in created.stderr  # progress, plain text because stderr is not a terminal
    assert "SHA-256 verified" in created.stdout
    export_id = created.stdout.split()[1]
    with demo_system.client(owner) as client:
        export = client.get(f"{URL}/{export_id}").json()
    assert export["status"] == "completed"
    data = target.read_bytes()
    assert sha256(data) == export["sha256"]
    assert len(data) == export["fileSizeBytes"]
    assert not target.with_name(target.name + ".part").exists()
    rows = json.loads(data)
    assert len(rows) == export["rowCount"]
    assert not any("series_id" in r for r in rows)

    listed = cli("export", "list", *auth, home=home)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split()[:5] == ["ID", "CREATED", "TYPE", "FORMAT", "STATUS"]
    assert any(line.startswith(export_id) and "completed" in line for line in lines)
    listed_json = cli("export", "list", "--json", *auth, home=home)
    assert export_id in [e["id"] for e in json.loads(listed_json.stdout)["exports"]]

    got = cli("export", "get", export_id, *auth, home=home)
    assert got.returncode == 0, got.stderr
    assert "ID:" in got.stdout
    assert export["sha256"] in got.stdout
    assert "Status:" in got.stdout
    got_json = cli("export", "get", export_id, "--json", *auth, home=home)
    assert json.loads(got_json.stdout) == export

    deleted = cli("export", "delete", export_id, "--json", *auth, home=home)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout) == {"id": export_id, "deleted": True}
    gone = cli("export", "get", export_id, *auth, home=home)
    assert gone.returncode == 1
    assert gone.stderr.strip() == "error: Export not found"


def test_library_by_name_and_groups_markdown(
    libraries: list[dict[str, str]], auth: list[str], home: Path
) -> None:
    """Example 3: one library by name, Metadata + Counts & Progress, Markdown into a directory."""
    library = libraries[0]
    outdir = home / "out"
    outdir.mkdir()
    result = cli(
        "export", "create", "--format", "md", "--library", library["name"].upper(),
        "--group", "Metadata", "--group", "counts & progress", "--output", str(outdir), "--json",
        *auth, home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    export = json.loads(result.stdout)
    assert export["libraryIds"] == [library["id"]]
    assert export["libraryNames"] == [library["name"]]
    assert "title" in export["fields"]
    assert "progress" in export["fields"]
    assert "series_id" not in export["fields"]
    assert "user_rating" not in export["fields"]
    saved = Path(export["savedTo"])
    assert saved.parent == outdir
    assert saved.name == export["fileName"]
    text = saved.read_text(encoding="utf-8")
    assert sum(line.startswith("## ") for line in text.splitlines()) == export["rowCount"]


def test_output_ending_in_a_slash_is_a_new_directory(auth: list[str], home: Path) -> None:
    """The README's example 2 on a fresh machine: ``-o backups/`` makes the directory and saves
    the server's file name in it (it used to write a file called ``backups``)."""
    result = cli(
        "export", "create", "--type", "both", "--all-libraries", "--preset", "all",
        "-o", "backups/", "--json", "--quiet", *auth, home=home, cwd=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    export = json.loads(result.stdout)
    backups = home / "backups"
    assert backups.is_dir()
    saved = backups / export["fileName"]
    assert (home / export["savedTo"]).resolve() == saved.resolve()
    assert sha256(saved.read_bytes()) == export["sha256"]
    assert [p.name for p in backups.iterdir()] == [export["fileName"]]  # no .part left
    # A nested one, and `export download` too.
    again = cli(
        "export", "download", export["id"], "-o", str(home / "a" / "b") + "/", "--json",
        *auth, home=home,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert (home / "a" / "b" / export["fileName"]).read_bytes() == saved.read_bytes()


def test_books_csv_by_groups(auth: list[str], home: Path) -> None:
    """Example 4: books, CSV, Identity + File Info, every library."""
    target = home / "sizes.csv"
    result = cli(
        "export", "create", "--type", "books", "--format", "csv", "--all-libraries",
        "--group", "Identity", "--group", "File Info", "-o", str(target), "--quiet",
        *auth, home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # --quiet
    header = target.read_bytes().split(b"\r\n", 1)[0].decode()
    assert header.split(",")[:3] == ["book_name", "book_id", "series_id"]
    assert "file_size" in header
    assert "title" not in header.split(",")


def test_gzip_is_stored_compressed_and_decompress_writes_the_plain_file(
    auth: list[str], home: Path
) -> None:
    """``--gzip`` keeps the stored ``.jsonl.gz``; ``--decompress`` saves the plain ``.jsonl``,
    after verifying the stored bytes."""
    outdir = home / "out"
    outdir.mkdir()
    result = cli(
        "export", "create", "--type", "both", "--format", "jsonl", "--all-libraries",
        "--preset", "all", "--gzip", "-o", str(outdir), "--json", "--quiet", *auth, home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    export = json.loads(result.stdout)
    assert export["compression"] == "gzip"
    stored = Path(export["savedTo"])
    assert stored.name == export["fileName"] and stored.name.endswith(".jsonl.gz")
    assert sha256(stored.read_bytes()) == export["sha256"]
    plain = gzip.decompress(stored.read_bytes())
    assert plain.count(b"\n") == export["rowCount"]

    result = cli(
        "export", "download", export["id"], "--decompress", "-o", str(outdir), "--json",
        "--quiet", *auth, home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = json.loads(result.stdout)
    target = Path(saved["file"])
    assert target.name == export["fileName"].removesuffix(".gz")
    assert target.read_bytes() == plain
    assert saved["decompressed"] is True
    assert saved["bytes"] == len(plain)
    assert saved["storedBytes"] == export["fileSizeBytes"]
    assert saved["sha256"] == export["sha256"]
    assert sorted(p.name for p in outdir.iterdir()) == sorted([stored.name, target.name])

    result = cli("export", "get", export["id"], *auth, home=home)
    assert "JSONL+GZIP" in result.stdout


def test_create_decompress_into_a_file(auth: list[str], home: Path) -> None:
    target = home / "books.csv"
    result = cli(
        "export", "create", "--type", "books", "--format", "csv", "--all-libraries",
        "--group", "File Info", "--gzip", "--decompress", "-o", str(target), *auth, home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "decompressed from" in result.stdout
    assert target.read_bytes().startswith(b"book_name,file_name,")
    assert [p.name for p in home.iterdir() if p.name.startswith("books")] == ["books.csv"]


@pytest.fixture(scope="module")
async def idle_api(real_servers: Servers, servers_dir: Path) -> AsyncIterator[tuple[System, str]]:
    """An api without a worker (own bus and bucket): its exports stay pending until cancelled."""
    database, _ = await seeded_database(
        real_servers, lambda c: insert_rows(c, "libraries", [{"name": "Comics"}])
    )
    nats = servers.start_nats(servers_dir / f"nats-idle-{uuid.uuid4().hex[:6]}")
    env = service_env(
        real_servers,
        database,
        EXPORTS_NATS_URL=nats.url,
        EXPORTS_S3_BUCKET="idle-" + uuid.uuid4().hex[:12],
    )
    system = make_system(env, servers_dir / "logs-idle-api")
    try:
        system.start("api")
        yield system, database
    finally:
        system.stop()
        nats.stop()


async def test_create_without_wait_then_cancel(idle_api: tuple[System, str], home: Path) -> None:
    system, database = idle_api
    auth = ["--api", system.api_url, "--token", system.token(await new_user(database))]
    created = cli(
        "export", "create", "--type", "both", "--library", "comics", "--preset", "all", *auth,
        home=home,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("Export ")
    assert "queued (pending)" in created.stdout
    export_id = created.stdout.split()[1]
    not_ready = cli("export", "download", export_id, "-o", str(home / "x.json"), *auth, home=home)
    assert not_ready.returncode == 1
    assert not_ready.stderr.strip() == "error: Export is not ready for download (status: pending)"
    assert not (home / "x.json.part").exists()

    cancelled = cli("export", "cancel", export_id, "--json", *auth, home=home)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    again = cli("export", "cancel", export_id, *auth, home=home)
    assert again.returncode == 1
    assert again.stderr.strip() == "error: Export cannot be cancelled (status: cancelled)"
    shown = cli("export", "get", export_id, *auth, home=home)
    assert "Status:" in shown.stdout
    assert "cancelled" in shown.stdout
    deleted = cli("export", "delete", export_id, *auth, home=home)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"Deleted export {export_id}"


def test_errors_print_the_server_message(demo_system: System, auth: list[str], home: Path) -> None:
    both_csv = cli(
        "export", "create", "--type", "both", "--format", "csv", "--all-libraries",
        "--preset", "all", *auth, home=home,
    )  # fmt: skip
    assert both_csv.returncode == 1
    assert both_csv.stderr.strip() == (
        "error: CSV format is not supported for 'both' export type. Use JSON or Markdown."
    )
    as_json = cli("export", "create", "--all-libraries", "--json", *auth, home=home)
    assert as_json.returncode == 1
    assert as_json.stdout == ""
    assert json.loads(as_json.stderr) == {
        "error": "ValidationError",
        "message": "At least one series field must be selected",
        "status": 400,
    }
    unknown = cli(
        "export", "create", "--library", "No Such Library", "--preset", "all", *auth, home=home
    )
    assert unknown.returncode == 1
    assert "Unknown library: No Such Library" in unknown.stderr
    missing = cli("export", "get", str(uuid.uuid4()), *auth, home=home)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: Export not found"
    bad_token = cli("export", "list", "--api", demo_system.api_url, "--token", "nope", home=home)
    assert bad_token.returncode == 1
    assert "Invalid or expired credentials" in bad_token.stderr
    assert "login" in bad_token.stderr
    no_token = cli("export", "list", "--api", demo_system.api_url, home=home)
    assert no_token.returncode == 2
    assert "Not signed in" in no_token.stderr
    no_api = cli("export", "list", "--token", "t", home=home)
    assert no_api.returncode == 2
    assert "No API address" in no_api.stderr
    unreachable = cli("export", "list", "--api", "http://127.0.0.1:9", "--token", "t", home=home)
    assert unreachable.returncode == 1
    assert "Cannot reach the API" in unreachable.stderr
    not_an_id = cli("export", "get", "42", *auth, home=home)
    assert not_an_id.returncode == 2
    assert "Not an export id" in not_an_id.stderr


def test_login_saves_a_private_token(demo_system: System, home: Path) -> None:
    env = {"EXPORTS_API_URL": demo_system.api_url}
    wrong = cli("login", "--username", "demo", "--password", "wrong", home=home, env=env)
    assert wrong.returncode == 1
    assert "Invalid username or password" in wrong.stderr
    assert not (home / "config" / "codex-exports" / "token").exists()
    ok = cli("login", "--username", "demo", "--password", "demo", "--json", home=home, env=env)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    token_file = home / "config" / "codex-exports" / "token"
    assert body["username"] == "demo"
    assert body["tokenFile"] == str(token_file)
    assert body["expiresAt"]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    listed = cli("export", "list", "--json", home=home, env=env)  # the saved token, no --token
    assert listed.returncode == 0, listed.stderr
    assert "exports" in json.loads(listed.stdout)


# --- downloads: resume and verification ---------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int = 0
    sent: int = 0


@dataclass
class CuttingProxy:
    """Forwards to the api; the first download response is cut after ``cut_after`` bytes."""

    upstream: str
    cut_after: int | None = None
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def downloads(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/download")]


def _handler(proxy: CuttingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.forward()

        def do_POST(self) -> None:
            self.forward()

        def do_DELETE(self) -> None:
            self.forward()

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() not in ("host", "connection", "accept-encoding", "content-length")
            }
            seen = Seen(
                self.command, self.path, self.headers.get("Range"), self.headers.get("If-Range")
            )
            proxy.seen.append(seen)
            cut = proxy.cut_after if self.path.endswith("/download") else None
            if cut is not None:
                proxy.cut_after = None  # only the first download is cut
            with (
                httpx.Client(base_url=proxy.upstream, timeout=30) as client,
                client.stream(self.command, self.path, headers=headers, content=body) as response,
            ):
                seen.status = response.status_code
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.end_headers()
                for chunk in response.iter_raw():
                    if cut is not None and seen.sent + len(chunk) >= cut:
                        self.wfile.write(chunk[: cut - seen.sent])
                        seen.sent = cut
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    self.wfile.write(chunk)
                    seen.sent += len(chunk)

    return Handler


@pytest.fixture
def proxy(demo_system: System) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(demo_system.api_url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def finished(
    demo_system: System, owner: uuid.UUID, libraries: list[dict[str, str]]
) -> tuple[dict[str, Any], bytes]:
    """One completed export (all series, every field) and its bytes."""
    with demo_system.client(owner) as client:
        response = client.post(
            URL,
            json={
                "format": "json",
                "libraryIds": [lib["id"] for lib in libraries],
                "preset": "all",
            },
        )
        assert response.status_code == 202, response.text
        export = wait_for_export(client, response.json()["id"])
        assert export["status"] == "completed", export
        content = client.get(f"{URL}/{export['id']}/download").content
    assert sha256(content) == export["sha256"]
    assert len(content) > 100_000
    return export, content


def test_download_resumes_after_the_connection_drops(
    demo_system: System,
    owner: uuid.UUID,
    finished: tuple[dict[str, Any], bytes],
    proxy: CuttingProxy,
    home: Path,
) -> None:
    export, content = finished
    size = len(content)
    proxy.cut_after = size // 3
    target = home / "cut.json"
    result = cli(
        "export", "download", export["id"], "-o", str(target), "--json",
        "--api", proxy.url, "--token", demo_system.token(owner), home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "connection lost" in result.stderr
    assert target.read_bytes() == content
    assert json.loads(result.stdout) == {
        "id": export["id"], "file": str(target), "bytes": size, "sha256": export["sha256"],
        "resumedFrom": 0, "storedBytes": size, "decompressed": False,
    }  # fmt: skip
    first, second = proxy.downloads()
    assert (first.range, first.status, first.sent) == (None, 200, size // 3)
    assert second.range == f"bytes={size // 3}-"
    assert second.if_range == f'"{export["sha256"]}"'
    assert (second.status, second.sent) == (206, size - size // 3)


def test_download_continues_a_part_file(
    demo_system: System,
    owner: uuid.UUID,
    finished: tuple[dict[str, Any], bytes],
    proxy: CuttingProxy,
    home: Path,
) -> None:
    export, content = finished
    half = len(content) // 2
    target = home / "resumed.json"
    target.with_name("resumed.json.part").write_bytes(content[:half])
    result = cli(
        "export", "download", export["id"], "-o", str(target), "--json",
        "--api", proxy.url, "--token", demo_system.token(owner), home=home,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["resumedFrom"] == half
    assert target.read_bytes() == content
    [only] = proxy.downloads()  # just the missing half went over the wire
    assert (only.range, only.status, only.sent) == (f"bytes={half}-", 206, len(content) - half)


def test_a_corrupted_download_is_detected_and_removed(
    finished: tuple[dict[str, Any], bytes], auth: list[str], home: Path
) -> None:
    export, content = finished
    target = home / "corrupt.json"
    part = target.with_name("corrupt.json.part")
    part.write_bytes(b"X" * (len(content) // 2))  # wrong bytes the resume builds on
    result = cli("export", "download", export["id"], "-o", str(target), *auth, home=home)
    assert result.returncode == 3
    assert "SHA-256 mismatch" in result.stderr
    assert export["sha256"] in result.stderr
    assert "was removed" in result.stderr
    assert not part.exists()
    assert not target.exists()
    again = cli("export", "download", export["id"], "-o", str(target), *auth, home=home)
    assert again.returncode == 0, again.stderr
    assert target.read_bytes() == content


def test_changes_prints_counts_and_items_and_json(
    libraries: list[dict[str, str]], auth: list[str], home: Path
) -> None:
    """``export changes``: an export of one library against one of every library — the other
    libraries' series are the added ones (the catalog itself is shared with other tests)."""

    def create(*args: str) -> dict[str, Any]:
        result = cli(
            "export", "create", "--fields", "series_id,title", "--wait", "--json", *args,
            *auth, home=home,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        done: dict[str, Any] = json.loads(result.stdout)
        return done

    one = create("--library", libraries[0]["id"])
    every = create("--all-libraries", "--format", "jsonl", "--gzip")
    added = every["rowCount"] - one["rowCount"]
    assert added > 0

    as_json = cli(
        "export", "changes", every["id"], "--since", one["id"], "--json", *auth, home=home
    )
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["since"] == one["id"]
    assert doc["series"] == {"added": added, "removed": 0, "changed": 0}
    assert doc["books"] == {"added": 0, "removed": 0, "changed": 0}
    assert len(doc["items"]) == min(added, 1000)
    assert {i["change"] for i in doc["items"]} == {"added"}

    text = cli("export", "changes", every["id"], "--since", one["id"], *auth, home=home)
    assert text.returncode == 0, text.stderr
    assert f"Series: {added:,} added, 0 removed, 0 changed" in text.stdout
    assert "Books: 0 added, 0 removed, 0 changed" in text.stdout
    lines = text.stdout.splitlines()
    assert lines[3].split() == ["KIND", "CHANGE", "ID", "NAME", "FIELDS"]
    first = doc["items"][0]
    assert lines[4].startswith(f"series  added   {first['id']}")

    same = cli("export", "changes", one["id"], "--since", one["id"], *auth, home=home)
    assert same.returncode == 0 and "No changes." in same.stdout

    markdown = create("--library", libraries[0]["id"], "--format", "md")
    refused = cli("export", "changes", markdown["id"], "--since", one["id"], *auth, home=home)
    assert refused.returncode == 1
    assert "Exports can be compared only when both are JSON or JSON Lines" in refused.stderr
