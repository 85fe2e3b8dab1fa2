"""Every service's /healthz, /readyz (naming the failing part) and /metrics, on real servers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.lifecycle.conftest import (
    URL,
    Catalog,
    Restartable,
    create,
    fresh_user,
    wait_until,
)
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration


def _base(system: System, key: str) -> str:
    return system.api_url if key == "api" else f"http://127.0.0.1:{system.metrics_ports[key]}"


async def test_health_readiness_and_metrics_of_every_service(
    restartable: Restartable, big_catalog: Catalog, system_factory: Any
) -> None:
    system: System = system_factory(big_catalog.database_url)
    for key in ("worker", "janitor"):
        wait_until(lambda k=key: _get(system, k, "/healthz") == 200, timeout=30)
    user = await fresh_user(big_catalog.database_url)
    with system.client(user) as client:
        export = create(
            client,
            {
                "format": "csv",
                "libraryIds": [str(big_catalog.synthetic.library_id)],
                "fields": ["title"],
            },
        )
        assert wait_for_export(client, export["id"])["status"] == "completed"
    async with httpx.AsyncClient(timeout=30) as http:
        for key in ("api", "worker", "janitor"):
            assert (await http.get(_base(system, key) + "/healthz")).status_code == 200
            assert (await http.get(_base(system, key) + "/readyz")).json()["status"] == "ready"
        api_metrics = (await http.get(system.api_url + "/metrics")).text
        assert 'exports_created_total{format="csv",result="accepted",type="series"}' in api_metrics
        assert "exports_http_request_duration_seconds_bucket" in api_metrics
        worker_metrics = (await http.get(_base(system, "worker") + "/metrics")).text
        assert (
            'exports_finished_total{format="csv",status="completed",type="series"}'
            in worker_metrics
        )
        assert "exports_nats_" in worker_metrics

        restartable.stop_s3()
        try:
            for key in ("api", "worker", "janitor"):
                response = await http.get(_base(system, key) + "/readyz", timeout=10)
                assert response.status_code == 503, key
                assert response.json()["failing"] == ["object store"], key
                assert (await http.get(_base(system, key) + "/healthz")).status_code == 200
        finally:
            restartable.start_s3()
    wait_until(
        lambda: httpx.get(_base(system, "worker") + "/readyz", timeout=10).status_code == 200,
        timeout=30,
    )
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(system.api_url + URL)).status_code == 401


def _get(system: System, key: str, path: str) -> int | None:
    try:
        return httpx.get(_base(system, key) + path, timeout=2).status_code
    except httpx.HTTPError:
        return None
