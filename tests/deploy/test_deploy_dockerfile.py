"""deploy/Dockerfile: one multi-stage image, non-root, the CLI as its entry point."""

from __future__ import annotations

import json
import re

from tests.deploy.loading import DOCKERFILE


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_multi_stage_build_on_python_3_11_slim() -> None:
    steps = _instructions()
    stages = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(stages) >= 2
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in steps
    assert stages[-1].startswith("${PYTHON_IMAGE}")
    assert any(keyword == "COPY" and rest.startswith("--from=builder") for keyword, rest in steps)


def test_installs_production_dependencies_only() -> None:
    runs = " ".join(rest for keyword, rest in _instructions() if keyword == "RUN")
    assert "pip install --no-deps ." in runs
    assert "[dev]" not in runs
    assert "optional-dependencies" not in runs


def test_runs_as_a_non_root_numeric_user() -> None:
    users = [rest for keyword, rest in _instructions() if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0


def test_entrypoint_is_the_cli_and_api_is_the_default_command() -> None:
    steps = dict(_instructions())
    assert json.loads(steps["ENTRYPOINT"]) == ["codex-exports"]
    assert json.loads(steps["CMD"]) == ["api"]
    assert set(steps["EXPOSE"].split()) == {"8080", "9100"}


def test_no_secret_is_baked_in() -> None:
    for keyword, rest in _instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|ACCESS_KEY|DATABASE_URL", rest), rest
