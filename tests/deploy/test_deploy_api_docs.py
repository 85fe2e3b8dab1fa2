"""docs/openapi.json and docs/asyncapi.json match what the services declare today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.deploy.regenerate_docs import ASYNCAPI, COMMAND, OPENAPI, ROOT, documents


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return documents()


@pytest.mark.parametrize("path", [OPENAPI, ASYNCAPI], ids=["openapi", "asyncapi"])
def test_committed_document_is_up_to_date(generated: dict[Path, str], path: Path) -> None:
    committed = path.read_text(encoding="utf-8") if path.exists() else ""
    if committed != generated[path]:
        pytest.fail(
            f"{path.relative_to(ROOT)} is out of date with the code; regenerate it with\n"
            f"    {COMMAND}\nand commit the result.",
            pytrace=False,
        )


def test_documents_describe_the_http_api_and_the_bus(generated: dict[Path, str]) -> None:
    openapi = json.loads(generated[OPENAPI])
    assert "/api/v1/user/exports/series" in openapi["paths"]
    assert "/readyz" in openapi["paths"]
    asyncapi = json.loads(generated[ASYNCAPI])
    assert asyncapi["asyncapi"].startswith("3.")
    subjects = {
        "export.submit",
        "export.requested",
        "export.requested.small",
        "export.cancel.*",
        "export.timer.fired.>",
    }
    assert subjects <= set(asyncapi["channels"])
