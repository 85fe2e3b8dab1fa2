"""Least privilege in PostgreSQL: exactly what each service's database role may do.

``codex-exports grant --api-role R --worker-role R --janitor-role R`` (run as the owner of the
tables, after ``migrate``) first revokes every table privilege the roles hold in the exports
and catalog schemas, then grants:

- api: SELECT on the catalog tables it reads (libraries, users, Codex's api_keys, and the
  tables an export reads, which ``POST /estimate`` counts and samples), SELECT, INSERT, UPDATE,
  DELETE on the exports schema's tables (exports, idempotency keys, its own API
  keys, schedules and their runs) and SELECT on its library access rules.
- worker: SELECT on the catalog tables an export reads (never ``users`` or ``api_keys``) and on
  ``exports.user_library_access``, and SELECT, UPDATE, DELETE on ``exports.exports`` — UPDATE to
  claim, beat and complete a run, DELETE because it evicts the exports over a cap right after a
  completion (the janitor's sweep does the same), and SELECT on ``exports.schedules`` (each
  schedule's keep).
- janitor: SELECT, UPDATE, DELETE on ``exports.exports``; SELECT, UPDATE on
  ``exports.schedules`` and SELECT, INSERT, UPDATE on ``exports.schedule_runs`` (it fires the
  schedules); nothing in the catalog.
- all three: SELECT, INSERT, DELETE on ``exports.deletions``, the tombstones each deletion of a
  row leaves until its file is gone (``shared.retention``).

Nobody but the owner may write a catalog table, create objects, or read the migrations table.
The table lists are ``shared.codex_tables``'s. A role that owns a catalog table (Codex's own
role) is refused: revoking its privileges would take them from Codex.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared import codex_tables

EXPORTS_SCHEMA = "exports"
DEFAULT_CATALOG_SCHEMA = "public"

API_CATALOG_TABLES = codex_tables.API_TABLES
WORKER_CATALOG_TABLES = codex_tables.WORKER_TABLES
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
API_EXPORTS_TABLES = ("exports", "idempotency_keys", "api_keys", "schedules", "schedule_runs")
# Scheduled exports (SPEC §12): the worker reads each schedule's keep when it evicts right after
# a completion; the janitor fires them (reads, locks FOR SHARE and updates a schedule, records
# each run once).
WORKER_SCHEDULE_PRIVILEGES = {"schedules": ("SELECT",)}
JANITOR_SCHEDULE_PRIVILEGES = {
    "schedules": ("SELECT", "UPDATE"),
    "schedule_runs": ("SELECT", "INSERT", "UPDATE"),
}
# Library access rules are read by the api and the worker, never written by a service.
READ_ONLY_EXPORTS_TABLES = ("user_library_access",)
RUNNER_EXPORTS_PRIVILEGES = ("SELECT", "UPDATE", "DELETE")
# Every service deletes rows, so every one writes and finishes tombstones.
DELETIONS_PRIVILEGES = ("SELECT", "INSERT", "DELETE")


@dataclass(frozen=True, slots=True)
class Roles:
    """The database role of each service; None leaves that service's role untouched."""

    api: str | None = None
    worker: str | None = None
    janitor: str | None = None


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted (role names come from the command line)."""
    if not name or "\x00" in name:
        raise ValueError(f"not a valid role name: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def grant_statements(roles: Roles, *, catalog_schema: str = DEFAULT_CATALOG_SCHEMA) -> list[str]:
    """The SQL that gives each role exactly its service's privileges.

    Every revoke comes before every grant, so one role serving two services keeps the union.
    """
    exports = quote_ident(EXPORTS_SCHEMA)
    catalog = quote_ident(catalog_schema)

    def table(schema: str, name: str) -> str:
        return f"{schema}.{quote_ident(name)}"

    revokes: list[str] = []
    grants: list[str] = []
    named = [(service, role) for service, role in _by_service(roles) if role is not None]
    for _, role in named:
        who = quote_ident(role)
        revokes += [
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {exports} FROM {who}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {catalog} FROM {who}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {exports} FROM {who}",
            f"REVOKE ALL ON SCHEMA {exports} FROM {who}",
        ]
    for service, role in named:
        who = quote_ident(role)
        grants.append(f"GRANT USAGE ON SCHEMA {exports} TO {who}")
        grants.append(
            f"GRANT {', '.join(DELETIONS_PRIVILEGES)} ON {table(exports, 'deletions')} TO {who}"
        )
        if service == "api":
            grants.append(f"GRANT USAGE ON SCHEMA {catalog} TO {who}")
            grants += [f"GRANT SELECT ON {table(catalog, t)} TO {who}" for t in API_CATALOG_TABLES]
            grants += [
                f"GRANT {', '.join(DML)} ON {table(exports, t)} TO {who}"
                for t in API_EXPORTS_TABLES
            ]
            grants += [
                f"GRANT SELECT ON {table(exports, t)} TO {who}" for t in READ_ONLY_EXPORTS_TABLES
            ]
        elif service == "worker":
            grants.append(f"GRANT USAGE ON SCHEMA {catalog} TO {who}")
            grants += [
                f"GRANT SELECT ON {table(catalog, t)} TO {who}" for t in WORKER_CATALOG_TABLES
            ]
            grants += [
                f"GRANT SELECT ON {table(exports, t)} TO {who}" for t in READ_ONLY_EXPORTS_TABLES
            ]
            grants.append(
                f"GRANT {', '.join(RUNNER_EXPORTS_PRIVILEGES)}"
                f" ON {table(exports, 'exports')} TO {who}"
            )
            grants += [
                f"GRANT {', '.join(p)} ON {table(exports, t)} TO {who}"
                for t, p in WORKER_SCHEDULE_PRIVILEGES.items()
            ]
        else:
            grants.append(
                f"GRANT {', '.join(RUNNER_EXPORTS_PRIVILEGES)}"
                f" ON {table(exports, 'exports')} TO {who}"
            )
            grants += [
                f"GRANT {', '.join(p)} ON {table(exports, t)} TO {who}"
                for t, p in JANITOR_SCHEDULE_PRIVILEGES.items()
            ]
    return revokes + grants


def _by_service(roles: Roles) -> list[tuple[str, str | None]]:
    return [("api", roles.api), ("worker", roles.worker), ("janitor", roles.janitor)]


async def apply_grants(
    conn: asyncpg.Connection, roles: Roles, *, catalog_schema: str = DEFAULT_CATALOG_SCHEMA
) -> list[str]:
    """Run :func:`grant_statements` in one transaction; return the statements run.

    Raises ValueError, before anything runs, when a role owns a table of the catalog schema.
    """
    statements = grant_statements(roles, catalog_schema=catalog_schema)
    named = [role for _, role in _by_service(roles) if role is not None]
    owners = await conn.fetch(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm')"
        " AND pg_get_userbyid(c.relowner) = ANY($2::text[])",
        catalog_schema,
        named,
    )
    if owners:
        raise ValueError(
            f"role {owners[0]['owner']} owns tables of schema {catalog_schema} (Codex's own role?):"
            " give each service a role of its own"
        )
    async with conn.transaction():
        for statement in statements:
            await conn.execute(statement)
    return statements


# --- command line (registered by services/cli/main.py) ---------------------------------------


def register(sub: Any) -> None:
    """Add ``grant`` to the top-level subparsers of ``codex-exports``."""
    parser = sub.add_parser(
        "grant",
        help="give each service's database role exactly the privileges it needs",
        description=(
            "Revoke, then grant, table privileges for the api, worker and janitor roles (which "
            "must exist). Run it as the owner of the tables, after `migrate`."
        ),
    )
    parser.add_argument("--api-role", metavar="ROLE")
    parser.add_argument("--worker-role", metavar="ROLE")
    parser.add_argument("--janitor-role", metavar="ROLE")
    parser.add_argument(
        "--catalog-schema",
        default=DEFAULT_CATALOG_SCHEMA,
        metavar="SCHEMA",
        help="schema of the Codex catalog tables (default: public)",
    )
    parser.add_argument("--database-url", metavar="URL", help="default: EXPORTS_DATABASE_URL")
    parser.add_argument(
        "--print", dest="print_only", action="store_true", help="print the SQL, run nothing"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    roles = Roles(api=args.api_role, worker=args.worker_role, janitor=args.janitor_role)
    if roles == Roles():
        print("name at least one of --api-role, --worker-role, --janitor-role", file=sys.stderr)
        return 2
    if args.print_only:
        for statement in grant_statements(roles, catalog_schema=args.catalog_schema):
            print(statement + ";")
        return 0
    url = args.database_url
    if url is None:
        from shared.settings import Settings

        url = Settings().database_url
    try:
        statements = asyncio.run(_grant(url, roles, args.catalog_schema))
    except (OSError, ValueError, asyncpg.PostgresError) as err:
        print(f"grant failed: {err}", file=sys.stderr)
        return 1
    print(f"granted: {len(statements)} statements applied")
    return 0


async def _grant(url: str, roles: Roles, catalog_schema: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await apply_grants(conn, roles, catalog_schema=catalog_schema)
    finally:
        await conn.close()
