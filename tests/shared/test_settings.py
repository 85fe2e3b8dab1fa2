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
