"""``codex-exports grant`` (``services.cli.grant``): the statements that give each service only
its tables; the services running on such roles are in
``tests/integration/security/test_privileges.py``."""

from __future__ import annotations

from services.cli import grant as privileges


def test_each_service_gets_only_its_tables() -> None:
    statements = privileges.grant_statements(privileges.Roles("a", "w", "j"))
    grants = [s for s in statements if s.startswith("GRANT")]
    janitor = [s for s in grants if s.endswith('TO "j"')]
    assert janitor == [
        'GRANT USAGE ON SCHEMA "exports" TO "j"',
        'GRANT SELECT, INSERT, DELETE ON "exports"."deletions" TO "j"',
        'GRANT SELECT, UPDATE, DELETE ON "exports"."exports" TO "j"',
        # It fires the schedules: reads and updates them, records each run once; never deletes.
        'GRANT SELECT, UPDATE ON "exports"."schedules" TO "j"',
        'GRANT SELECT, INSERT, UPDATE ON "exports"."schedule_runs" TO "j"',
    ]
    worker = [s for s in grants if s.endswith('TO "w"')]
    # The only table the worker inserts into: the tombstones of the exports it evicts.
    assert [s for s in worker if "INSERT" in s] == [
        'GRANT SELECT, INSERT, DELETE ON "exports"."deletions" TO "w"'
    ]
    # The worker only reads the schedules (each one's keep), and nothing of their runs.
    assert [s for s in worker if "schedule" in s] == [
        'GRANT SELECT ON "exports"."schedules" TO "w"'
    ]
    api = [s for s in grants if s.endswith('TO "a"')]
    assert 'GRANT SELECT, INSERT, DELETE ON "exports"."deletions" TO "a"' in api
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON "exports"."schedules" TO "a"' in api
    assert not any('"users"' in s or "api_keys" in s or "idempotency" in s for s in worker)
    assert all(s.startswith("GRANT SELECT ON") for s in worker if '"public".' in s)
    api = [s for s in grants if s.endswith('TO "a"')]
    worker_tables = {s.split(" ON ")[1].split(" TO ")[0] for s in worker if '"public".' in s}
    # The api reads users and keys, and what an export reads (the estimate), only reading.
    assert sorted(s.split(" ON ")[1].split(" TO ")[0] for s in api if '"public".' in s) == sorted(
        {'"public"."api_keys"', '"public"."users"', *worker_tables}
    )
    assert '"public"."libraries"' in worker_tables
    assert all(s.startswith("GRANT SELECT ON") for s in api if '"public".' in s)
    assert any('"exports"."user_library_access"' in s for s in api)
    # Every revoke comes first, so a role shared by two services keeps both grants.
    first_grant = next(i for i, s in enumerate(statements) if s.startswith("GRANT"))
    assert all(s.startswith("GRANT") for s in statements[first_grant:])
    assert privileges.quote_ident('we"ird') == '"we""ird"'
