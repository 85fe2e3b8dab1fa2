"""Schemathesis driven by Codex's own OpenAPI document (``tests/codex.py``), against the running
api, signed in: no 5xx, every body in Codex's shapes, and no status Codex does not document
beyond the one extra listed below (SPEC §13: Codex's front end works unchanged).

Statuses. ``status_code_conformance`` is not used as is: it would refuse statuses SPEC §6 gives
on purpose. ``codex_status_conformance`` below accepts what Codex documents for the operation
plus, per operation, only these extras:

- ``GET /{id}/download`` may answer 410 for an export whose file is gone (SPEC §6). Codex
  documents 404 "Export not found or file missing" there; this product keeps 410 (the spec wins),
  and Codex's front end treats both as a failed download.

Not accepted, because this run cannot cause them honestly: 400 outside create (Codex documents
``{id}`` as a uuid, and the generated ids are uuids, so our 400 for a malformed id never
applies), 401 (every request carries a valid token; our api answers 401 without one, which
Codex's document leaves unsaid), 416 (no generated request sends ``Range``).

Each operation first makes the calls Codex's front end makes (a create body exactly as its
create form posts it, reads and a download of an export the caller owns, a delete), so the
success bodies are checked by Schemathesis too; then ``EXAMPLES`` generated cases, derandomized
so a run is repeatable. As in ``test_fuzz_api.py``, each operation is one test that drives
Hypothesis with the operation's strategy (Schemathesis' pytest plugin does not run under
pytest 9).
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from tests.codex import codex_document
from tests.conftest import first_library, new_user
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration

URL = "/api/v1/user/exports/series"
EXAMPLES = 25
EXTRA_STATUSES: dict[str, set[int]] = {
    f"GET {URL}/{{id}}/download": {410},
}
# Operation labels ("GET /api/v1/…") from Codex's document, known at collection time.
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in codex_document()["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)


class UndocumentedStatus(AssertionError):
    pass


def codex_status_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """The status is one Codex documents for the operation, or one of its listed extras."""
    documented = {int(code) for code in case.operation.responses.status_codes}
    allowed = documented | EXTRA_STATUSES.get(case.operation.label, set())
    if response.status_code not in allowed:
        raise UndocumentedStatus(
            f"{case.operation.label} answered {response.status_code}; "
            f"Codex documents {sorted(documented)}, extras allowed {sorted(allowed - documented)}"
        )
    return None


CHECKS = [
    not_a_server_error,
    codex_status_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
async def caller(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
def codex_schema() -> Any:
    return schemathesis.openapi.from_dict(codex_document())


@pytest.fixture(scope="module")
async def library_id(demo_database: str) -> str:
    """A library the caller may read, as Codex's front end lists it for the create form."""
    return await first_library(demo_database)


def front_end_body(library_id: str) -> dict[str, Any]:
    """All five keys, as Codex's create form always posts them."""
    return {
        "format": "json",
        "exportType": "series",
        "libraryIds": [library_id],
        "fields": ["title", "year", "genres"],
        "bookFields": [],
    }


def completed_export(client: httpx.Client, library_id: str) -> str:
    response = client.post(URL, json=front_end_body(library_id))
    assert response.status_code == 202, response.text
    export_id: str = response.json()["id"]
    assert wait_for_export(client, export_id)["status"] == "completed"
    return export_id


def front_end_call(operation: Any, client: httpx.Client, library_id: str) -> tuple[Any, int]:
    """The call Codex's front end makes for this operation, and the status it must get."""
    method, path = operation.label.split(" ", 1)
    if method == "POST":
        body = front_end_body(library_id)
        return operation.Case(body=body, media_type="application/json"), 202
    if "{id}" not in path:
        return operation.Case(), 200
    export_id = completed_export(client, library_id)
    return operation.Case(path_parameters={"id": export_id}), 204 if method == "DELETE" else 200


def fuzz(
    codex_schema: Any,
    label: str,
    system: System,
    user: uuid.UUID,
    library_id: str,
    examples: int,
) -> None:
    operation = codex_schema.find_operation_by_label(label)
    headers = {"Authorization": f"Bearer {system.token(user)}"}

    with system.client(user) as client:
        case, status = front_end_call(operation, client, library_id)
    response = case.call_and_validate(
        base_url=system.api_url, headers=headers, checks=CHECKS, timeout=30
    )
    assert response.status_code == status, (label, response.status_code, response.text)

    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no .hypothesis folder in the work tree; a failure prints its example
        derandomize=True,  # the same cases on every run
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=system.api_url, headers=headers, checks=CHECKS, timeout=30)

    run()


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_to_codex(
    codex_schema: Any, demo_system: System, caller: uuid.UUID, library_id: str, label: str
) -> None:
    fuzz(codex_schema, label, demo_system, caller, library_id, examples=EXAMPLES)
