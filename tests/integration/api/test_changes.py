"""``GET /series/{id}/changes?since=`` (SPEC §12) on the real api and worker: the hand-built
catalog exported, known edits made to Codex's tables by the test (a series added, one removed,
a title and a genre changed, a book moved to another series), exported again; the comparison
gives exactly those changes, whatever JSON / JSON Lines / gzip pair is compared; and the
400 / 404 / 409 answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.cli import servers
from shared.codex_tables import insert_rows
from shared.naming import object_key
from shared.settings import Settings
from tests.conftest import Servers, new_user, seeded_database, service_env
from tests.fixture_catalog import FIXTURE, build
from tests.system import System, make_system, wait_for_export

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"
ALICE = FIXTURE.users["alice"]
NOT_COMPARABLE = (
    "Exports can be compared only when both are JSON or JSON Lines of the same type "
    "and include their IDs"
)
VARIANTS = [("json", "none"), ("jsonl", "none"), ("json", "gzip"), ("jsonl", "gzip")]
ADDED_SERIES = uuid.UUID("00000003-0000-4000-8000-0000000000aa")


async def _build(srv: Servers) -> str:
    url, _ = await seeded_database(srv, build)
    return url


async def _edit(url: str) -> None:
    """The known edits, written straight into Codex's tables (as Codex itself would)."""
    s, b = FIXTURE.series, FIXTURE.books
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            comics = FIXTURE.libraries["comics"]
            await insert_rows(
                conn,
                "series",
                [{"id": ADDED_SERIES, "library_id": comics, "path": "/c/Added", "name": "Added"}],
            )
            await insert_rows(
                conn, "series_metadata", [{"series_id": ADDED_SERIES, "title": "Added Series"}]
            )
            # Removed: "secret" (no books) and everything that points at it.
            linked = await conn.fetch(
                """SELECT c.table_name FROM information_schema.columns c
                   JOIN information_schema.tables t USING (table_schema, table_name)
                   WHERE c.table_schema = 'public' AND c.column_name = 'series_id'
                     AND t.table_type = 'BASE TABLE' AND c.table_name <> 'books'"""
            )
            for record in linked:
                table = record["table_name"]
                await conn.execute(f'DELETE FROM "{table}" WHERE series_id = $1', s["secret"])
            await conn.execute("DELETE FROM series WHERE id = $1", s["secret"])
            await conn.execute(
                "UPDATE series_metadata SET title = 'Batman Returns' WHERE series_id = $1",
                s["batman"],
            )
            genre = await conn.fetchval("SELECT id FROM genres WHERE name = 'Cyberpunk'")
            await insert_rows(
                conn, "series_genres", [{"series_id": s["naruto"], "genre_id": genre}]
            )
            await conn.execute(
                "UPDATE books SET series_id = $1 WHERE id = $2", s["akira"], b["naruto_2"]
            )
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def system(real_servers: Servers, servers_dir: Path) -> Iterator[tuple[System, str]]:
    """api, worker and janitor on the hand-built catalog, with a NATS server of their own: on
    the session's bus another system's workers (the demo's) would take these exports too."""
    url = asyncio.run(_build(real_servers))
    tag = uuid.uuid4().hex[:6]
    nats = servers.start_nats(servers_dir / f"nats-changes-{tag}")
    env = service_env(
        real_servers, url, EXPORTS_NATS_URL=nats.url, EXPORTS_MAX_COMPLETED_PER_USER="50"
    )
    running = make_system(env, servers_dir / f"logs-changes-{tag}")
    try:
        running.start()
        yield running, url
    finally:
        running.stop()
        nats.stop()


def _export(client: httpx.Client, fmt: str, compression: str, **extra: Any) -> dict[str, Any]:
    body = {
        "format": fmt,
        "compression": compression,
        "exportType": "both",
        "libraryIds": [str(i) for i in FIXTURE.library_ids()],
        "preset": "all",
        **extra,
    }
    created = client.post(URL, json=body)
    assert created.status_code == 202, created.text
    done = wait_for_export(client, created.json()["id"])
    assert done["status"] == "completed", done
    return done


def _changes(client: httpx.Client, newer: str, older: str) -> httpx.Response:
    return client.get(f"{URL}/{newer}/changes", params={"since": older})


def _expected() -> list[tuple[str, str, str, list[str]]]:
    s, b = FIXTURE.series, FIXTURE.books
    return [
        # Series in the newer export's order. akira gained naruto_2 (unread: its progress stays
        # 0); batman keeps its title_sort, so its place; naruto lost a book it had not read.
        ("series", "changed", str(s["akira"]), ["actual_book_count", "unread_book_count"]),
        ("series", "changed", str(s["batman"]), ["title"]),
        (
            "series",
            "changed",
            str(s["naruto"]),
            ["genres", "actual_book_count", "unread_book_count", "progress"],
        ),
        ("series", "removed", str(s["secret"]), []),
        # No title_sort: after every series that has one.
        ("series", "added", str(ADDED_SERIES), []),
        # Books: naruto_2 is now akira's.
        ("books", "changed", str(b["naruto_2"]), ["series_id", "series_name"]),
    ]


def test_changes_between_two_backups_are_exactly_the_edits(system: tuple[System, str]) -> None:
    running, url = system
    with running.client(ALICE.id, ALICE.username) as client:
        before = {v: _export(client, *v) for v in VARIANTS}
        asyncio.run(_edit(url))
        after = {v: _export(client, *v) for v in VARIANTS}

        # An export against itself: nothing.
        first = before[("json", "none")]["id"]
        same = _changes(client, first, first)
        assert same.status_code == 200, same.text
        assert same.json()["items"] == []

        pairs = [(o, n) for o in VARIANTS for n in VARIANTS if o == n or o[0] != n[0]]
        for old_variant, new_variant in pairs:
            older, newer = before[old_variant], after[new_variant]
            response = _changes(client, newer["id"], older["id"])
            assert response.status_code == 200, (old_variant, new_variant, response.text)
            body = response.json()
            assert body["since"] == older["id"]
            got = [(i["kind"], i["change"], i["id"], i["fields"]) for i in body["items"]]
            assert got == _expected(), (old_variant, new_variant)
            assert body["series"] == {"added": 1, "removed": 1, "changed": 3}
            assert body["books"] == {"added": 0, "removed": 0, "changed": 1}
            names = {i["id"]: i["name"] for i in body["items"]}
            assert names[str(ADDED_SERIES)] == "Added"  # the series' name, its anchor
            assert names[str(FIXTURE.series["secret"])]  # the older row's name
            assert names[str(FIXTURE.books["naruto_2"])] == "@x vol 2"  # the book's title

        # Backwards: what was added is removed, and the other way round.
        back = _changes(client, before[("json", "none")]["id"], after[("json", "none")]["id"])
        assert back.json()["series"] == {"added": 1, "removed": 1, "changed": 3}
        kinds = {(i["id"], i["change"]) for i in back.json()["items"]}
        assert (str(ADDED_SERIES), "removed") in kinds
        assert (str(FIXTURE.series["secret"]), "added") in kinds


def test_what_cannot_be_compared_is_refused_with_a_message(
    system: tuple[System, str], real_servers: Servers
) -> None:
    running, url = system
    with running.client(ALICE.id, ALICE.username) as client:
        base = _export(client, "json", "none")
        refused = [
            _export(client, "csv", "none", exportType="series"),
            _export(client, "md", "none"),
            _export(client, "json", "none", exportType="series"),  # another type
            # no series_id
            _export(client, "jsonl", "none", fields=["title"], bookFields=["book_id"], preset=None),
        ]
        for other in refused:
            for newer, older in ((base, other), (other, base)):
                response = _changes(client, newer["id"], older["id"])
                assert response.status_code == 400, response.text
                assert response.json() == {"error": "ValidationError", "message": NOT_COMPARABLE}

        # Unknown ids, and another user's export, either side: 404 like any unknown export.
        stranger = asyncio.run(new_user(url))
        with running.client(stranger) as theirs:
            foreign = _export(theirs, "json", "none")
            assert _changes(theirs, foreign["id"], base["id"]).status_code == 404
        for newer, older in (
            (base["id"], str(uuid.uuid4())),
            (str(uuid.uuid4()), base["id"]),
            (base["id"], foreign["id"]),
            (foreign["id"], base["id"]),
        ):
            response = _changes(client, newer, older)
            assert response.status_code == 404, response.text
            assert response.json() == {"error": "NotFound", "message": "Export not found"}
        malformed = client.get(f"{URL}/{base['id']}/changes", params={"since": "nope"})
        assert malformed.status_code == 400 and malformed.json()["message"]
        assert client.get(f"{URL}/{base['id']}/changes").status_code == 400  # since missing

        # A file gone from the store (deleted behind the api's back): 410, as for a download.
        gone = _export(client, "jsonl", "gzip")
        key = object_key(ALICE.id, uuid.UUID(gone["id"]), gone["fileName"])
        bucket = running.env.get("EXPORTS_S3_BUCKET") or Settings.model_fields["s3_bucket"].default
        real_servers.s3_client().remove_object(bucket, key)
        response = _changes(client, gone["id"], base["id"])
        assert response.status_code == 410, response.text
        assert response.json()["message"] == "The file of one of the exports is no longer available"

        # Not completed (the worker stopped, so it stays pending): 409, either side.
        running.stop_one("worker")
        try:
            created = client.post(
                URL,
                json={
                    "format": "json",
                    "exportType": "both",
                    "libraryIds": [str(i) for i in FIXTURE.library_ids()],
                    "preset": "all",
                },
            )
            pending = created.json()["id"]
            for newer, older in ((pending, base["id"]), (base["id"], pending)):
                response = _changes(client, newer, older)
                assert response.status_code == 409, response.text
                assert response.json()["message"] == (
                    f"Export {pending} is not completed (status: pending): "
                    "only completed exports can be compared"
                )
            assert client.delete(f"{URL}/{pending}").status_code == 204
        finally:
            running.start("worker")
