"""Structured logs: one JSON object per line, a request id from the api to the janitor, no secrets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.lifecycle.conftest import URL, Catalog, create, fresh_user, wait_until
from tests.system import JWT_SECRET, System, wait_for_export

pytestmark = pytest.mark.integration


async def test_request_id_follows_the_export_and_no_secret_is_logged(
    big_catalog: Catalog, system_factory: Any
) -> None:
    system: System = system_factory(big_catalog.database_url, EXPORTS_RETENTION_SECONDS="3")
    user = await fresh_user(big_catalog.database_url)
    trace = "trace-7f3c2a9e"
    token = system.token(user)
    with system.client(user) as client:
        client.headers["X-Request-Id"] = trace
        export = create(
            client,
            {
                "format": "json",
                "libraryIds": [str(big_catalog.synthetic.library_id)],
                "fields": ["title"],
            },
        )
        assert wait_for_export(client, export["id"])["status"] == "completed"
        wait_until(lambda: client.get(f"{URL}/{export['id']}").status_code == 404, timeout=30)
        # A failed sign-in carries a password in its body: it must not reach a log either.
        client.post("/api/v1/auth/login", json={"username": "nobody", "password": "hunter2-secret"})

    def events(key: str) -> list[dict[str, Any]]:
        lines = [line for line in system.log(key).splitlines() if line.strip()]
        parsed = [json.loads(line) for line in lines]  # every line is one JSON object
        return [e for e in parsed if e.get("export_id") == export["id"]]

    api, worker, janitor = events("api"), events("worker"), events("janitor")
    assert {e["message"] for e in api} >= {"export created"}
    assert {e["message"] for e in worker} >= {"export started (attempt 1)"}
    assert any(e["message"] == "export removed (expired)" for e in janitor)
    for entry in api + worker + janitor:
        assert entry["request_id"] == trace, entry
        assert entry["user_id"] == str(user)
    everything = "".join(system.log(k) for k in ("api", "worker", "janitor"))
    secrets = (token, JWT_SECRET, system.env["EXPORTS_S3_SECRET_KEY"], "hunter2-secret")
    for secret in secrets:
        assert secret not in everything
