"""``shared.settings``: a production secret is required, dev mode makes one; the api refusing a
weak secret at start is in ``tests/integration/security/test_jwt.py``."""

from __future__ import annotations

import pytest

from shared.settings import Settings


def test_dev_mode_generates_a_secret_instead() -> None:
    settings = Settings(dev_mode=True, jwt_secret="")
    settings.require_production_secrets()
    assert len(settings.jwt_secret.get_secret_value()) >= 32
    with pytest.raises(ValueError, match="EXPORTS_JWT_SECRET"):
        Settings(dev_mode=False, jwt_secret="changeme").require_production_secrets()


def test_the_catalog_is_read_on_the_primary_unless_a_catalog_database_is_set() -> None:
    primary = "postgresql://exports@primary:5432/codex"
    replica = "postgresql://exports:hunter2pw@replica:5432/codex"
    same = Settings(database_url=primary)
    assert (same.catalog_url, same.catalog_is_separate) == (primary, False)
    apart = Settings(database_url=primary, catalog_database_url=replica)
    assert (apart.catalog_url, apart.catalog_is_separate) == (replica, True)
    # It holds a password: never shown in the settings' repr (and so in no log of them).
    assert "hunter2pw" not in repr(apart)
