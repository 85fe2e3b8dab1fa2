"""``python -m services.janitor``: run the janitor."""

from __future__ import annotations

import asyncio

from shared.logs import configure_logging
from shared.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    from services.janitor.app import create_app

    asyncio.run(create_app(settings).run())


if __name__ == "__main__":
    main()
