"""``services.worker.errors``: a catalog replica down or behind is retried, with a message."""

from __future__ import annotations

from services.worker.errors import describe, is_retryable
from shared.catalog_db import CatalogBehind, CatalogUnavailable


def test_a_catalog_replica_down_or_behind_is_retried_with_a_message() -> None:
    down = CatalogUnavailable("connection refused")
    behind = CatalogBehind(2.5, "0/3000148", "0/3000100")
    assert is_retryable(down) and is_retryable(behind)
    assert str(down) == "catalog database unavailable: connection refused"
    assert describe(down) == "the catalog database (read replica) was unavailable"
    assert describe(behind) == (
        "the catalog read replica was more than 2.5 s behind the primary database"
    )
    assert "0/3000148" in str(behind) and "0/3000100" in str(behind)
