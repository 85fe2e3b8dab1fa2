"""Apply the plain-SQL migrations in order, recording each in ``exports.schema_migrations``."""

from __future__ import annotations

from importlib import resources

import asyncpg

# The catalog's tables are Codex's own in production: only standalone installs create them.
CATALOG = "catalog"
EXPORTS = "exports"


def _scripts(part: str) -> list[tuple[str, str]]:
    folder = resources.files("shared").joinpath("migrations", part)
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(f"{part}/{p.name}", p.read_text(encoding="utf-8")) for p in files]


async def apply_migrations(conn: asyncpg.Connection, *, catalog: bool = False) -> list[str]:
    """Apply pending migrations (the catalog's first when ``catalog``); return those applied."""
    await conn.execute(
        "CREATE SCHEMA IF NOT EXISTS exports;"
        "CREATE TABLE IF NOT EXISTS exports.schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    parts = [CATALOG, EXPORTS] if catalog else [EXPORTS]
    applied: list[str] = []
    for part in parts:
        for name, sql in _scripts(part):
            async with conn.transaction():
                # Serialise concurrent migrators (several pods starting at once).
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('codex-exports-migrate'))"
                )
                done = await conn.fetchval(
                    "SELECT 1 FROM exports.schema_migrations WHERE name = $1", name
                )
                if done:
                    continue
                await conn.execute(sql)
                await conn.execute("INSERT INTO exports.schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
    return applied


async def create_migrated_database(server_url: str, name: str, *, catalog: bool = False) -> str:
    """Create database ``name`` on the server of ``server_url`` and migrate it; return its URL.

    For tests, benchmarks and development servers (``name`` is ours, never user input).
    """
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, catalog=catalog)
    finally:
        await conn.close()
    return url
