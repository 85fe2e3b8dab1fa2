"""``tests/codex.py``, the validator of Codex's schemas the contract tests rely on."""

from __future__ import annotations

import uuid

from tests.codex import schema_errors

DTO = "SeriesExportDto"


def test_the_validator_refuses_what_codex_would_not_read() -> None:
    """Not a vacuous check: required keys, JSON types, nullability and formats are asserted."""
    good = {
        "id": str(uuid.uuid4()),
        "format": "json",
        "exportType": "series",
        "status": "completed",
        "libraryIds": [str(uuid.uuid4())],
        "fields": ["title"],
        "bookFields": [],
        "createdAt": "2026-01-01T00:00:00Z",
        "expiresAt": "2026-01-08T00:00:00Z",
        "rowCount": 2**31 - 1,
        "fileSizeBytes": 2**40,
        "error": None,
        "extraField": "additions are allowed",
    }
    assert schema_errors(DTO, good) == []
    missing = {k: v for k, v in good.items() if k != "expiresAt"}
    assert schema_errors(DTO, missing) == ["<body>: 'expiresAt' is a required property"]
    for key, bad in [
        ("id", "not-a-uuid"),
        ("libraryIds", ["not-a-uuid"]),
        ("rowCount", 2**31),
        ("rowCount", "12"),
        ("fileSizeBytes", 2**63),
        ("fileSizeBytes", 1.5),
        ("error", 5),
        ("createdAt", None),
        ("bookFields", None),
    ]:
        assert schema_errors(DTO, {**good, key: bad}), (key, bad)
    assert schema_errors("SeriesExportListResponse", {"exports": [missing]})
    assert schema_errors("ExportFieldCatalogResponse", {"fields": [], "bookFields": []})
