"""A catalog written by an attacker, exported end to end through the real services.

Library, series, book and genre names carry path traversal, SQL, header splitting, spreadsheet
formulas and Markdown structure. None of it may reach an object key or a file name unsafely,
execute in a spreadsheet, or break the Markdown's structure; JSON keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import asyncpg
import pytest

from shared.codex_tables import insert_rows
from tests.conftest import Servers, create_database, new_user
from tests.integration.security.conftest import SystemFactory, store
from tests.system import System, export_and_download

pytestmark = pytest.mark.integration

LIBRARY_NAMES = [
    "../../etc",
    "a/b",
    '"; DROP TABLE libraries; --',
    "line\nbreak\r\nX-Injected: yes",
    "Ünïcödé 漫画 📚",
    "..",
    "\\\\server\\share\\..\\x",
    "%2e%2e%2f%00",
    "<script>alert(1)</script>",
    "x" * 300,
]
FORMULAS = [
    '=HYPERLINK("http://evil.example","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\tTabbed",
    "\rCarriage",
    "=cmd|' /C calc'!A0",
]
MARKDOWN = [
    "## Fake heading",
    "# Books",
    "Title\n## Injected heading",
    "- **Title:** forged",
    "*bold* _em_ `code` [x](javascript:alert(1))",
    "<img src=x onerror=alert(1)>",
    "```",
    "> quote",
    "1. list",
    "---",
    "Name\r\n\r\n# Series",
]
SUMMARY = (
    "=1+1 first line\n## Not a heading\n- **Title:** forged\n# Series\n```\nunclosed fence\n"
    "\n\n  # indented\n| a | b |\n|---|---|\n<details>"
)
OBJECT_KEY = re.compile(
    r"exports/(?P<user>[0-9a-f-]{36})/(?P<export>[0-9a-f-]{36})/"
    r"codex-(series|books|both)-[a-z0-9-]+-\d{8}T\d{6}Z\.(json|csv|md)"
)
DISPOSITION = re.compile(
    r"attachment; filename=\"(?P<ascii>[A-Za-z0-9._ -]+)\"; filename\*=UTF-8''(?P<ext>[A-Za-z0-9._%-]+)"
)


@dataclass
class Hostile:
    system: System
    database_url: str
    bucket: str
    owner: uuid.UUID
    libraries: dict[str, str]  # id → name
    series_names: list[str]


async def _seed(database_url: str) -> tuple[dict[str, str], list[str]]:
    conn = await asyncpg.connect(database_url)
    try:
        libraries = {str(uuid.uuid4()): name for name in LIBRARY_NAMES}
        await insert_rows(
            conn, "libraries", [{"id": uuid.UUID(i), "name": n} for i, n in libraries.items()]
        )
        genre_ids = [uuid.uuid4() for _ in range(3)]
        await insert_rows(
            conn,
            "genres",
            [
                {"id": i, "name": g}
                for i, g in zip(genre_ids, ("=1+1", "@evil", "Safe"), strict=True)
            ],
        )
        names = FORMULAS + MARKDOWN
        library_ids = list(libraries)
        series: list[dict[str, Any]] = []
        metadata: list[dict[str, Any]] = []
        series_genres: list[dict[str, Any]] = []
        books: list[dict[str, Any]] = []
        book_metadata: list[dict[str, Any]] = []
        for i, name in enumerate(names):
            library = uuid.UUID(library_ids[i % len(library_ids)])
            series_id, book = uuid.uuid4(), uuid.uuid4()
            series.append(
                {
                    "id": series_id,
                    "library_id": library,
                    "name": name,
                    "path": f"/comics/../../{name}",
                }
            )
            metadata.append(
                {
                    "series_id": series_id,
                    "title": name,
                    "summary": SUMMARY,
                    "publisher": "=SUM(1)",
                    "status": None,
                    "authors_json": json.dumps(
                        [{"name": "=evil()", "role": "writer"}, {"name": "## Author", "role": "-x"}]
                    ),
                }
            )
            series_genres += [{"series_id": series_id, "genre_id": genre} for genre in genre_ids]
            # Codex's path is unique in a library: each book its own traversal.
            books.append(
                {
                    "id": book,
                    "series_id": series_id,
                    "library_id": library,
                    "file_name": f"../../{i}.cbz",
                    "path": f"/../../etc/passwd/../../{i}.cbz",
                    "file_size": 10,
                    "format": "cbz",
                    "page_count": 10,
                }
            )
            book_metadata.append(
                {"book_id": book, "title": name, "number": Decimal(i), "summary": SUMMARY}
            )
        await insert_rows(conn, "series", series)
        await insert_rows(conn, "series_metadata", metadata)
        await insert_rows(conn, "series_genres", series_genres)
        await insert_rows(conn, "books", books)
        await insert_rows(conn, "book_metadata", book_metadata)
    finally:
        await conn.close()
    return libraries, names


@pytest.fixture(scope="module")
async def hostile(real_servers: Servers, private_systems: SystemFactory) -> Hostile:
    url = await create_database(real_servers)
    libraries, names = await _seed(url)
    # Every export of the module is kept (the default keeps 10 per user).
    system = private_systems(url, EXPORTS_MAX_COMPLETED_PER_USER="100")
    return Hostile(
        system, url, system.env["EXPORTS_S3_BUCKET"], await new_user(url), libraries, names
    )


def _check_disposition(header: str, file_name: str) -> None:
    match = DISPOSITION.fullmatch(header)
    assert match is not None, header
    assert match["ascii"] == unquote(match["ext"]) == file_name


async def test_object_keys_and_file_names_come_only_from_server_side_ids(
    hostile: Hostile, real_servers: Servers
) -> None:
    every = list(hostile.libraries)
    requests = [[library] for library in every] + [every]
    seen: list[str] = []
    with hostile.system.client(hostile.owner) as client:
        for libraries in requests:
            done, download = export_and_download(
                client, {"format": "json", "libraryIds": libraries, "fields": ["title"]}
            )
            assert re.fullmatch(r"codex-series-[a-z0-9-]+-\d{8}T\d{6}Z\.json", done["fileName"]), (
                done["fileName"]
            )
            _check_disposition(download.headers["content-disposition"], done["fileName"])
            assert sorted(done["libraryNames"]) == sorted(hostile.libraries[i] for i in libraries)
            seen.append(done["id"])
    conn = await asyncpg.connect(hostile.database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, user_id, object_key FROM exports.exports WHERE id = ANY($1::uuid[])", seen
        )
        assert await conn.fetchval("SELECT count(*) FROM libraries") == len(
            LIBRARY_NAMES
        )  # no table dropped
    finally:
        await conn.close()
    assert len(rows) == len(seen)
    for row in rows:
        match = OBJECT_KEY.fullmatch(row["object_key"])
        assert match is not None, row["object_key"]
        assert (match["user"], match["export"]) == (str(row["user_id"]), str(row["id"]))
    stored = [
        o.object_name
        for o in store(real_servers).list_objects(hostile.bucket, prefix="", recursive=True)
    ]
    assert sorted(stored) == sorted(r["object_key"] for r in rows)


async def test_csv_cells_that_a_spreadsheet_would_run_are_guarded(hostile: Hostile) -> None:
    every = list(hostile.libraries)
    with hostile.system.client(hostile.owner) as client:
        for export_type, key in (("series", "fields"), ("books", "bookFields")):
            done, download = export_and_download(
                client,
                {
                    "format": "csv",
                    "exportType": export_type,
                    "libraryIds": every,
                    "preset": "all",
                    key: None,
                },
            )
            rows = list(csv.reader(io.StringIO(download.content.decode("utf-8"), newline="")))
            assert len(rows) - 1 == done["rowCount"] == len(hostile.series_names)
            for row in rows[1:]:
                for cell in row:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (
                        export_type,
                        cell,
                    )
            anchors = {row[0] for row in rows[1:]}
            for name in FORMULAS:
                assert "'" + name in anchors
            header = rows[0]
            genres = rows[1][header.index("genres")]
            assert genres.startswith("'") or not genres.startswith(("=", "@"))


async def test_markdown_structure_survives_hostile_names_and_summaries(hostile: Hostile) -> None:
    every = list(hostile.libraries)
    with hostile.system.client(hostile.owner) as client:
        for export_type in ("series", "books", "both"):
            done, download = export_and_download(
                client,
                {"format": "md", "exportType": export_type, "libraryIds": every, "preset": "all"},
            )
            lines = download.content.decode("utf-8").splitlines()
            headings = [line for line in lines if line.startswith("## ")]
            assert len(headings) == done["rowCount"], export_type
            parts = [line for line in lines if line.startswith("# ")]
            assert parts == (["# Series", "# Books"] if export_type == "both" else [])
            titles = [line for line in lines if line.startswith("- **Title:** ")]
            assert len(titles) == done["rowCount"], export_type
            fences = [line for line in lines if line.lstrip().startswith("```")]
            assert all(not line.startswith("```") for line in fences)


async def test_json_keeps_every_hostile_value_exactly(hostile: Hostile) -> None:
    with hostile.system.client(hostile.owner) as client:
        _, download = export_and_download(
            client,
            {
                "format": "json",
                "libraryIds": list(hostile.libraries),
                "fields": ["title", "summary", "genres"],
            },
        )
    rows = json.loads(download.content)
    assert sorted(r["series_name"] for r in rows) == sorted(hostile.series_names)
    assert {r["summary"] for r in rows} == {SUMMARY}
    assert {tuple(r["genres"]) for r in rows} == {("=1+1", "@evil", "Safe")}
