"""Cancel, delete in flight, the atomic per-user limit, idempotency and progress events."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.lifecycle.conftest import (
    URL,
    Catalog,
    Restartable,
    big_books_request,
    create,
    fresh_user,
    incomplete_uploads,
    objects,
    wait_until,
)
from tests.system import wait_for_export

pytestmark = pytest.mark.integration


def _running(client: httpx.Client, export_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = client.get(f"{URL}/{export_id}").json()
    return body if body["status"] == "running" and body["rowsWritten"] > 0 else None


async def test_cancel_stops_a_running_export_and_leaves_no_object(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url)
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog))
        running = wait_until(lambda: _running(client, export["id"]))
        assert running["rowsTotal"] == 60_000
        response = client.post(f"{URL}/{export['id']}/cancel")
        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        final = wait_for_export(client, export["id"])
        assert final["status"] == "cancelled"
        assert final["rowsWritten"] < 60_000
        # The worker aborts its multipart upload: no object, no unfinished upload under the key.
        prefix = f"exports/{user}/{export['id']}/"
        wait_until(
            lambda: not [u for u in incomplete_uploads(restartable) if u.startswith(prefix)],
            timeout=20,
        )
        assert objects(restartable, prefix) == []
        wait_until(lambda: "export cancelled" in system.log("worker"), timeout=20)
        again = client.post(f"{URL}/{export['id']}/cancel")
        assert again.status_code == 409
        assert again.json() == {
            "error": "Conflict",
            "message": "Export cannot be cancelled (status: cancelled)",
        }
        download = client.get(f"{URL}/{export['id']}/download")
        assert download.json()["message"] == "Export is not ready for download (status: cancelled)"
        # The worker is free again: the next export completes.
        small = create(
            client,
            {
                "format": "csv",
                "libraryIds": [str(big_catalog.synthetic.library_id)],
                "fields": ["title"],
            },
        )
        assert wait_for_export(client, small["id"])["status"] == "completed"


async def test_delete_in_flight_stops_the_worker_and_removes_everything(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url)
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog, "md"))
        wait_until(lambda: _running(client, export["id"]))
        assert client.delete(f"{URL}/{export['id']}").status_code == 204
        assert client.get(f"{URL}/{export['id']}").status_code == 404
        prefix = f"exports/{user}/{export['id']}/"
        wait_until(lambda: "export cancelled" in system.log("worker"), timeout=20)
        wait_until(
            lambda: not [u for u in incomplete_uploads(restartable) if u.startswith(prefix)],
            timeout=20,
        )
        assert objects(restartable, prefix) == []


async def test_cancel_of_a_completed_export_is_a_conflict(
    big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url)
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(
            client,
            {
                "format": "json",
                "libraryIds": [str(big_catalog.synthetic.library_id)],
                "fields": ["year"],
            },
        )
        assert wait_for_export(client, export["id"])["status"] == "completed"
        response = client.post(f"{URL}/{export['id']}/cancel")
        assert response.status_code == 409
        assert "status: completed" in response.json()["message"]
        assert client.post(f"{URL}/{uuid.uuid4()}/cancel").status_code == 404


async def test_twenty_simultaneous_creates_never_pass_the_limit(
    big_catalog: Catalog, system_factory: Any
) -> None:
    # No worker: nothing can finish, so the limit is what decides.
    system = system_factory(big_catalog.database_url, "api")
    user = await fresh_user(big_catalog.database_url)
    other = await fresh_user(big_catalog.database_url)
    body = {
        "format": "json",
        "libraryIds": [str(big_catalog.synthetic.library_id)],
        "fields": ["title"],
    }
    results: list[httpx.Response] = []
    lock = threading.Lock()
    gate = threading.Barrier(20)

    def post() -> None:
        with system.client(user) as client:
            gate.wait()
            response = client.post(URL, json=body)
        with lock:
            results.append(response)

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [202] * 3 + [409] * 17
    refused = [r.json() for r in results if r.status_code == 409]
    assert all(
        r
        == {
            "error": "TooManyActiveExports",
            "message": "You already have 3 active exports (limit: 3)",
        }
        for r in refused
    )
    with system.client(user) as client:
        listed = client.get(URL).json()["exports"]
    assert len(listed) == 3 and {e["status"] for e in listed} == {"pending"}
    with system.client(other) as client:
        assert client.post(URL, json=body).status_code == 202


async def test_idempotency_key_returns_the_first_export(
    big_catalog: Catalog, system_factory: Any
) -> None:
    system = system_factory(big_catalog.database_url)
    user = await fresh_user(big_catalog.database_url)
    body = {
        "format": "csv",
        "libraryIds": [str(big_catalog.synthetic.library_id)],
        "fields": ["title"],
    }
    with system.client(user) as client:
        first = create(client, body, **{"Idempotency-Key": "nightly-2026-11-28"})
        second = create(client, body, **{"Idempotency-Key": "nightly-2026-11-28"})
        third = create(client, body, **{"Idempotency-Key": "nightly-2026-11-29"})
        assert first["id"] == second["id"] != third["id"]
        assert len(client.get(URL).json()["exports"]) == 2
    other = await fresh_user(big_catalog.database_url)
    with system.client(other) as client:
        # Keys are per user: the same key from someone else is a new export.
        assert (
            create(client, body, **{"Idempotency-Key": "nightly-2026-11-28"})["id"] != first["id"]
        )


async def test_progress_events_until_the_end(big_catalog: Catalog, system_factory: Any) -> None:
    # Progress is recorded every 0.1 s; Markdown of every field is the slowest rendering.
    system = system_factory(big_catalog.database_url, EXPORTS_HEARTBEAT_SECONDS="0.1")
    user = big_catalog.synthetic.user_id
    with system.client(user) as client:
        export = create(client, big_books_request(big_catalog, "md"))
        seen: list[dict[str, Any]] = []
        with client.stream("GET", f"{URL}/{export['id']}/events", timeout=120) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "status":
                    seen.append(json.loads(line[6:]))
    statuses = [e["status"] for e in seen]
    assert statuses[-1] == "completed"
    assert "running" in statuses
    progress = [e["rowsWritten"] for e in seen if e["status"] == "running"]
    # How many progress steps show depends on the machine's speed; the stream must show the
    # running export with its progress, never going backwards, then the end.
    assert progress == sorted(progress)
    assert any(e["rowsTotal"] == 60_000 for e in seen if e["status"] == "running")
    assert seen[-1]["rowCount"] == 60_000
