"""``codex-exports export schedule create|list|delete|run`` as a subprocess against the demo
system (SPEC §12)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.conftest import new_user
from tests.integration.cli.conftest import cli
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration


async def test_schedule_create_list_run_delete(
    demo_system: System, demo_database: str, tmp_path: Path
) -> None:
    user: uuid.UUID = await new_user(demo_database)
    auth = ["--api", demo_system.api_url, "--token", demo_system.token(user)]
    empty = cli("export", "schedule", "list", *auth, home=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert "No schedules yet" in empty.stdout
    made = cli(
        "export",
        "schedule",
        "create",
        "--all-libraries",
        "--fields",
        "title",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Europe/Paris",
        "--keep",
        "3",
        "--json",
        *auth,
        home=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    schedule = json.loads(made.stdout)
    assert (schedule["cron"], schedule["timezone"], schedule["keep"]) == (
        "0 3 * * *",
        "Europe/Paris",
        3,
    )
    assert schedule["request"]["fields"] == ["title"]
    listed = cli("export", "schedule", "list", *auth, home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert schedule["id"] in listed.stdout and "Europe/Paris" in listed.stdout

    run = cli("export", "schedule", "run", schedule["id"], "--json", *auth, home=tmp_path)
    assert run.returncode == 0, run.stderr
    export = json.loads(run.stdout)
    assert export["scheduleId"] == schedule["id"]
    with demo_system.client(user) as client:
        assert wait_for_export(client, export["id"])["status"] == "completed"

    bad = cli(
        "export",
        "schedule",
        "create",
        "--all-libraries",
        "--preset",
        "llm",
        "--cron",
        "every day",
        *auth,
        home=tmp_path,
    )
    assert bad.returncode != 0
    assert "error: Invalid cron expression: every day" in bad.stderr

    gone = cli("export", "schedule", "delete", schedule["id"], *auth, home=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert f"Deleted schedule {schedule['id']}" in gone.stdout
    again = cli("export", "schedule", "delete", schedule["id"], *auth, home=tmp_path)
    assert again.returncode != 0
    assert "Schedule not found" in again.stderr
    usage = cli("export", "schedule", "run", "not-an-id", *auth, home=tmp_path)
    assert usage.returncode != 0
    assert "Not a schedule id" in usage.stderr
