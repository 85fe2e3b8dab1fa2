"""``python -m services.janitor``: run the janitor."""

from __future__ import annotations

import asyncio

from shared.bus import service_settings


def main() -> None:
    settings = service_settings()
    from services.janitor.app import create_app

    asyncio.run(create_app(settings).run())


if __name__ == "__main__":
    main()
