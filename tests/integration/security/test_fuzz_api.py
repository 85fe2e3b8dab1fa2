"""Schemathesis against the api's own OpenAPI document, signed in: no 5xx, and every answer
conforms to what the document declares (status codes, content types, bodies).

Schemathesis' pytest plugin does not run under pytest 9 (it reads ``Function._nodeid``), so
each operation is one test here that drives Hypothesis with the operation's strategy.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import new_user
from tests.deploy.regenerate_docs import openapi_document
from tests.system import System

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operation labels ("GET /api/v1/…") from the same app the api serves, known at collection time.
OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in openapi_document()["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)


@pytest.fixture(scope="module")
async def fuzzer(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.fixture(scope="module")
def live_schema(demo_system: System) -> Any:
    """The document the running api serves, fetched over HTTP as any client would."""
    return schemathesis.openapi.from_url(demo_system.api_url + "/openapi.json")


def fuzz(live_schema: Any, label: str, system: System, user: uuid.UUID, examples: int) -> None:
    operation = live_schema.find_operation_by_label(label)
    headers = {"Authorization": f"Bearer {system.token(user)}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # no .hypothesis folder in the work tree; a failure prints its example
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=system.api_url, headers=headers, checks=CHECKS, timeout=30)

    run()


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_to_the_schema(
    live_schema: Any, demo_system: System, fuzzer: uuid.UUID, label: str
) -> None:
    fuzz(live_schema, label, demo_system, fuzzer, examples=25)


@pytest.mark.slow
@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_to_the_schema_long(
    live_schema: Any, demo_system: System, fuzzer: uuid.UUID, label: str
) -> None:
    fuzz(live_schema, label, demo_system, fuzzer, examples=1000)
