"""Generate ``docs/openapi.json`` and ``docs/asyncapi.json`` from the services themselves.

    python -m tests.deploy.regenerate_docs          # rewrite both files
    python -m tests.deploy.regenerate_docs --check  # exit 1 if either is out of date

The OpenAPI document comes from the api's FastAPI app; the AsyncAPI document from the NATS
brokers of the api, the worker and the janitor together (FastStream's ``AsyncAPI`` factory),
so every subject any of them serves is in one file. Nothing connects to a server: building the
apps declares routes and subscribers only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "docs" / "openapi.json"
ASYNCAPI = ROOT / "docs" / "asyncapi.json"
COMMAND = "python -m tests.deploy.regenerate_docs"
# The documents name the NATS server as it is called in deploy/compose.yaml.
DOC_NATS_URL = "nats://nats:4222"


def doc_settings() -> Any:
    """Settings independent of the environment (``model_construct`` reads no variable)."""
    from shared.settings import Settings

    return Settings.model_construct(
        jwt_secret=SecretStr("documentation-only-secret-" + "x" * 32),
        nats_url=DOC_NATS_URL,
        dev_mode=False,
    )


def openapi_document() -> dict[str, Any]:
    from services.api.app import create_app

    document: dict[str, Any] = create_app(doc_settings()).openapi()
    return document


def asyncapi_document() -> dict[str, Any]:
    from faststream.specification import AsyncAPI

    from services.api.app import create_app as create_api
    from services.janitor.app import create_app as create_janitor
    from services.worker.app import create_app as create_worker

    settings = doc_settings()
    brokers = (
        create_api(settings).state.broker,
        create_worker(settings).broker,
        create_janitor(settings).broker,
    )
    spec = AsyncAPI(
        *brokers,
        title="codex-exports",
        version="1",
        description=(
            "NATS subjects served by the codex-exports api (export.submit), worker "
            "(export.requested and export.requested.small: the large and small fairness "
            "lanes; export.cancel.*) and janitor (export.timer.fired.>, among them "
            "the schedules' timers; it publishes export.schedule.ran)."
        ),
    ).to_specification()
    document: dict[str, Any] = json.loads(spec.to_json())
    return document


def render(document: dict[str, Any], *, sort_keys: bool = False) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n"


def documents() -> dict[Path, str]:
    # FastStream lists subscribers in no stable order: sort the AsyncAPI keys so that the file
    # only changes when the subjects do. FastAPI's OpenAPI order is stable and kept as written.
    return {
        OPENAPI: render(openapi_document()),
        ASYNCAPI: render(asyncapi_document(), sort_keys=True),
    }


def stale() -> list[Path]:
    """The committed documents that differ from what the code generates now."""
    return [
        path
        for path, text in documents().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale documents")
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale()
        for path in outdated:
            print(f"{path.relative_to(ROOT)} is out of date; run: {COMMAND}")
        return 1 if outdated else 0
    for path, text in documents().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
