"""``codex-exports``: the command line and composition root."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from shared.settings import Settings


def _settings() -> Settings:
    from services.cli.devstate import apply_dev_environment
    from shared.settings import Settings

    apply_dev_environment()
    return Settings()


async def _migrate(catalog: bool) -> None:
    from shared.migrate import apply_migrations

    conn = await asyncpg.connect(_settings().database_url)
    try:
        applied = await apply_migrations(conn, catalog=catalog)
    finally:
        await conn.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


async def _demo_seed(seed: int) -> None:
    from services.cli.demo_seed import seed_demo

    conn = await asyncpg.connect(_settings().database_url)
    try:
        result = await seed_demo(conn, seed=seed)
    finally:
        await conn.close()
    print(
        f"demo catalog: {result.libraries} libraries, {result.series} series, {result.books} books"
    )


async def _token(username: str) -> int:
    from shared.tokens import issue_token

    settings = _settings()
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        print(
            "EXPORTS_JWT_SECRET is not set and no running `codex-exports dev` was found",
            file=sys.stderr,
        )
        return 2
    conn = await asyncpg.connect(settings.database_url)
    try:
        record = await conn.fetchrow(
            "SELECT id, username, role FROM users WHERE username = $1", username
        )
    finally:
        await conn.close()
    if record is None:
        print(f"no such user: {username}", file=sys.stderr)
        return 1
    token, _ = issue_token(
        record["id"], record["username"], record["role"], secret, settings.jwt_ttl_seconds
    )
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="codex-exports", description="Data Exports for Codex")
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="start the whole system on 127.0.0.1 (embedded servers)")
    dev.add_argument("--api-port", type=int, default=None)
    dev.add_argument("--data-dir", default=None, help="keep data here between runs")
    dev.add_argument("--no-demo", action="store_true", help="empty catalog, no users")
    dev.add_argument(
        "--cluster",
        action="store_true",
        help="3 NATS servers, replicated SeaweedFS, 2 api, 3 workers, 2 janitors",
    )
    migrate = sub.add_parser("migrate", help="apply migrations to EXPORTS_DATABASE_URL")
    migrate.add_argument("--catalog", action="store_true", help="also create the catalog tables")
    seed = sub.add_parser("demo-seed", help="load the demo catalog")
    seed.add_argument("--seed", type=int, default=42)
    token = sub.add_parser("token", help="print a token for a user")
    token.add_argument("username")
    for name in ("api", "worker", "janitor"):
        sub.add_parser(name, help=f"run the {name} service")
    from services.cli import client, grant, restore

    client.register(sub)  # export …, login
    restore.register(sub)  # catalog restore
    grant.register(sub)  # grant (least privilege per service)
    args = parser.parse_args(argv)

    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))

    if args.command == "dev":
        from services.cli.dev import run_dev

        return run_dev(args.api_port, args.data_dir, demo=not args.no_demo, cluster=args.cluster)
    if args.command == "migrate":
        asyncio.run(_migrate(args.catalog))
        return 0
    if args.command == "demo-seed":
        asyncio.run(_demo_seed(args.seed))
        return 0
    if args.command == "token":
        return asyncio.run(_token(args.username))
    # The service commands (one container image, three commands) become the service process.
    os.execv(sys.executable, [sys.executable, "-m", f"services.{args.command}"])  # noqa: S606


if __name__ == "__main__":
    raise SystemExit(main())
