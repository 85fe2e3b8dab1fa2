"""deploy/compose.yaml: one image, four commands, real servers, secrets only from .env."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from shared.settings import PLACEHOLDER_SECRETS, Settings
from tests.deploy.loading import (
    COMPOSE,
    ENV_EXAMPLE,
    REQUIRED_SETTINGS,
    SERVICE_COMMANDS,
    compose,
    compose_environment,
    dotenv,
)


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def test_every_command_runs_the_image_built_from_deploy_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    for command in SERVICE_COMMANDS:
        service = services[command]
        assert service["command"][0] == command
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["build"]["context"] == ".."
    assert services["migrate"]["command"] == ["migrate", "--catalog"]
    images = {services[c]["image"] for c in SERVICE_COMMANDS}
    assert len(images) == 1, "one image for every command"


def test_the_servers_are_minio_nats_with_jetstream_and_postgres_16_or_later(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["minio"]["image"].startswith("minio/minio")
    nats = services["nats"]
    assert "--jetstream" in nats["command"] or "-js" in nats["command"]
    assert any(v.endswith(":/data") for v in nats["volumes"])
    postgres_major = int(services["postgres"]["image"].split(":")[1].split(".")[0].split("-")[0])
    assert postgres_major >= 16


def test_services_wait_for_migrations_and_healthy_servers(
    services: dict[str, dict[str, Any]],
) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "janitor"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        for server in ("postgres", "nats", "minio"):
            assert depends[server]["condition"] == "service_healthy"


def test_two_workers(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"]["deploy"]["replicas"] == 2


def test_health_checks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("postgres", "nats", "minio", "api", "worker", "janitor"):
        assert services[name]["healthcheck"]["test"], name
    assert any("8080/readyz" in part for part in services["api"]["healthcheck"]["test"])
    for name in ("worker", "janitor"):
        assert any("9100/readyz" in part for part in services[name]["healthcheck"]["test"])


def test_required_settings_reach_every_service(services: dict[str, dict[str, Any]]) -> None:
    for command in SERVICE_COMMANDS:
        missing = set(REQUIRED_SETTINGS) - set(compose_environment(services[command]))
        assert not missing, f"{command} lacks {sorted(missing)}"


def test_secrets_come_only_from_the_env_file() -> None:
    raw = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    for name in ("migrate", "api", "worker", "janitor"):
        env = raw["services"][name]["environment"]
        assert env["EXPORTS_JWT_SECRET"].startswith("${")
        assert env["EXPORTS_S3_SECRET_KEY"].startswith("${")
        assert "${POSTGRES_PASSWORD" in env["EXPORTS_DATABASE_URL"]
    assert raw["services"]["minio"]["environment"]["MINIO_ROOT_PASSWORD"].startswith("${")
    assert raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")


def test_env_example_placeholders_are_refused_outside_dev_mode() -> None:
    values = dotenv(ENV_EXAMPLE)
    assert set(values) == {
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "EXPORTS_JWT_SECRET",
    }
    for key, value in values.items():
        assert value.lower() in PLACEHOLDER_SECRETS, f"{key} must be an obvious placeholder"
    with pytest.raises(ValueError, match="EXPORTS_JWT_SECRET"):
        Settings(
            jwt_secret=values["EXPORTS_JWT_SECRET"], dev_mode=False
        ).require_production_secrets()
