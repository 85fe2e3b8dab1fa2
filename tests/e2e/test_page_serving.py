"""The page's server side: how it is served, and the usage figures shown above the table."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.helpers import PAGE, insert_export, make_account
from tests.system import System

pytestmark = pytest.mark.e2e
USAGE = "/api/v1/user/exports/usage"


def test_root_redirects_to_the_page(demo_system: System) -> None:
    response = httpx.get(demo_system.api_url + "/", follow_redirects=False)
    assert response.status_code in (302, 307)
    assert response.headers["location"] == PAGE


@pytest.mark.parametrize("path", [PAGE, PAGE + "/"])
def test_page_needs_no_auth_and_has_a_strict_csp(demo_system: System, path: str) -> None:
    response = httpx.get(demo_system.api_url + path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    html = response.text
    assert '<h1 id="page-title">Data Exports</h1>' in html
    # No inline script and nothing fetched from another origin.
    assert "<script>" not in html
    assert '<script type="module">' not in html
    assert "http://" not in html
    assert "https://" not in html


def test_assets_are_served_and_confined(demo_system: System) -> None:
    base = demo_system.api_url + PAGE + "/assets/"
    for name, kind in [
        ("app.js", "javascript"),
        ("app.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ]:
        response = httpx.get(base + name)
        assert response.status_code == 200, name
        assert kind in response.headers["content-type"]
        assert "content-security-policy" in response.headers
        assert "etag" in response.headers
    assert httpx.get(base + "missing.js").status_code == 404
    assert httpx.get(base + "..%2Froutes%2Fpage.py").status_code == 404
    assert httpx.get(base + "%2e%2e/app.py").status_code == 404


def test_usage_needs_authentication(demo_system: System) -> None:
    response = httpx.get(demo_system.api_url + USAGE)
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


def test_usage_counts_only_the_callers_exports(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    me, other = make_account(demo_database), make_account(demo_database)
    with demo_system.client(me.id) as client:
        fresh = client.get(USAGE)
        assert fresh.status_code == 200
        assert fresh.json() == {
            "usedBytes": 0,
            "completedExports": 0,
            "activeExports": 0,
            "maxConcurrent": 3,
            "maxCompleted": 10,
            "retentionSeconds": 604800,
            "storageCapBytes": 2 * 1024**3,
        }
        lib = libraries[0]
        insert_export(
            demo_database, me.id, lib, status="completed", row_count=5, file_size_bytes=1000
        )
        insert_export(
            demo_database, me.id, lib, status="completed", row_count=7, file_size_bytes=2500
        )
        insert_export(demo_database, me.id, lib, status="pending")
        insert_export(demo_database, me.id, lib, status="running", rows_total=10)
        insert_export(demo_database, me.id, lib, status="failed", error="boom")
        insert_export(
            demo_database, other.id, lib, status="completed", row_count=1, file_size_bytes=99_999
        )
        insert_export(demo_database, other.id, lib, status="pending")
        body = client.get(USAGE).json()
    assert body["usedBytes"] == 3500
    assert body["completedExports"] == 2
    assert body["activeExports"] == 2
