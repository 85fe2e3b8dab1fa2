"""Codex's own OpenAPI document for the export endpoints, and validators for its schemas.

The document is the export part of the real Codex 2.2.0 server's ``docs/api/openapi.json``, the one
Codex's web front end is generated from. It is not part of this repository: it sits in the folder
``shared`` beside the repository root (``../shared/codex/openapi-exports.json``; CI has it there
too), not in the repository's own ``shared/`` package.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CODEX_DOCUMENT = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "codex" / "openapi-exports.json"
).resolve()
# The document's own URI inside the registry, so "#/components/schemas/X" resolves against it.
_URI = "urn:codex:openapi-exports"


@functools.cache
def codex_document() -> dict[str, Any]:
    """The parsed document; a clear error when it is not beside the repository."""
    if not CODEX_DOCUMENT.is_file():
        raise FileNotFoundError(
            f"Codex's OpenAPI document is missing: expected {CODEX_DOCUMENT} "
            "(../shared/codex/openapi-exports.json beside the repository root)"
        )
    document: dict[str, Any] = json.loads(CODEX_DOCUMENT.read_text(encoding="utf-8"))
    return document


def _int_range(bits: int) -> Any:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(instance: object) -> bool:
        # A format only constrains the type it is about; the "type" keyword checks the rest.
        if isinstance(instance, bool) or not isinstance(instance, int):
            return True
        return low <= instance <= high

    return check


def _format_checker() -> jsonschema.FormatChecker:
    """JSON Schema's formats (``uuid`` among them) plus OpenAPI's ``int32`` and ``int64``, which
    a JSON Schema validator does not know and would otherwise ignore."""
    checker = jsonschema.FormatChecker()
    checker.checks("int32")(_int_range(32))
    checker.checks("int64")(_int_range(64))
    return checker


@functools.cache
def validator(schema_name: str) -> jsonschema.protocols.Validator:
    """A draft 2020-12 validator (OpenAPI 3.1's dialect) for ``components.schemas[schema_name]``,
    with every ``$ref`` resolved in the document and formats asserted, not just annotated."""
    document = codex_document()
    if schema_name not in document["components"]["schemas"]:
        raise KeyError(f"Codex's document has no schema {schema_name!r}")
    registry: Registry[Any] = Registry().with_resource(
        _URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"{_URI}#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(
        schema, registry=registry, format_checker=_format_checker()
    )


def schema_errors(schema_name: str, instance: Any) -> list[str]:
    """Every way ``instance`` departs from Codex's schema, one readable line each (none: fits)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<body>'}: {error.message}"
        for error in validator(schema_name).iter_errors(instance)
    ]


def declared_properties(schema_name: str) -> set[str]:
    """The property names Codex's schema declares (required or not)."""
    return set(codex_document()["components"]["schemas"][schema_name]["properties"])
