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


def test_nats_url_takes_a_comma_separated_list_of_servers() -> None:
    settings = Settings(nats_url=" nats://a:4222, nats://b:4223 ,,127.0.0.1:4224,nats://a:4222")
    assert settings.nats_servers == ["nats://a:4222", "nats://b:4223", "nats://127.0.0.1:4224"]
    assert Settings(nats_url="nats://one:4222").nats_servers == ["nats://one:4222"]
    assert Settings().nats_servers == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize("value", ["", " , ", "http://a:4222", "nats://a:4222,nats://"])
def test_a_nats_url_that_names_no_server_is_refused_with_the_setting_named(value: str) -> None:
    with pytest.raises(ValueError, match="EXPORTS_NATS_URL"):
        Settings(nats_url=value)


def test_stream_replicas_default_to_one_and_stay_within_what_jetstream_allows() -> None:
    assert Settings().stream_replicas == 1
    assert Settings(stream_replicas=3).stream_replicas == 3
    for wrong in (0, 6):
        with pytest.raises(ValueError, match="stream_replicas"):
            Settings(stream_replicas=wrong)
