"""``python -m services.api``: serve the api with uvicorn."""

from __future__ import annotations

import uvicorn

from shared.logs import configure_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    from services.api.app import create_app

    try:
        app = create_app(settings)
    except ValueError as err:  # a refused setting, e.g. a placeholder JWT secret
        raise SystemExit(f"codex-exports api: {err}") from None
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # X-Forwarded-For names the client (the rate limits' anonymous bucket) only from these.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


if __name__ == "__main__":
    main()
