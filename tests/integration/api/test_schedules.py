"""The schedules API of SPEC §12 on the real stack: create, validation in order, list, get,
the per-user limit, isolation, run now, delete."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import new_user
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/schedules"


def _body(libraries: list[dict[str, str]], **patch: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request": {"format": "json", "libraryIds": [libraries[0]["id"]], "fields": ["title"]},
        "cron": "0 3 * * *",
        "timezone": "Europe/Paris",
        "keep": 3,
    }
    body.update(patch)
    return body


async def test_create_list_get_delete(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    user = await new_user(demo_database)
    with demo_system.client(user) as client:
        created = client.post(URL, json=_body(libraries))
        assert created.status_code == 201, created.text
        schedule = created.json()
        assert set(schedule) == {
            "id",
            "request",
            "cron",
            "timezone",
            "keep",
            "nextRunAt",
            "lastRunAt",
            "lastExportId",
            "createdAt",
        }
        assert schedule["cron"] == "0 3 * * *"
        assert schedule["timezone"] == "Europe/Paris"
        assert schedule["keep"] == 3
        assert schedule["lastRunAt"] is None and schedule["lastExportId"] is None
        assert schedule["request"]["format"] == "json"
        next_run = datetime.fromisoformat(schedule["nextRunAt"])
        # 03:00 in Paris is 01:00 or 02:00 UTC, depending on the season.
        assert next_run.utcoffset() is not None
        assert (next_run.hour, next_run.minute) in ((1, 0), (2, 0))

        defaults = client.post(
            URL, json={"request": _body(libraries)["request"], "cron": "0 * * * *"}
        )
        assert defaults.status_code == 201, defaults.text
        assert defaults.json()["timezone"] == "UTC"
        assert defaults.json()["keep"] == 7

        listed = client.get(URL).json()["schedules"]
        assert [s["id"] for s in listed] == [schedule["id"], defaults.json()["id"]]
        assert client.get(f"{URL}/{schedule['id']}").json() == schedule

        assert client.delete(f"{URL}/{schedule['id']}").status_code == 204
        gone = client.get(f"{URL}/{schedule['id']}")
        assert gone.status_code == 404
        assert gone.json() == {"error": "NotFound", "message": "Schedule not found"}
        assert client.delete(f"{URL}/{schedule['id']}").status_code == 404
        assert [s["id"] for s in client.get(URL).json()["schedules"]] == [defaults.json()["id"]]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"request": {"format": "xml"}}, "Format must be"),
        ({"request": "json"}, "Request must be an export's create body (an object)"),
        ({"cron": "every day"}, "Invalid cron expression: every day"),
        ({"cron": "61 * * * *"}, "Invalid cron expression: 61 * * * *"),
        ({"cron": 5}, "Invalid cron expression: 5"),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone: Mars/Olympus"),
        ({"timezone": "../../etc/passwd"}, "Unknown time zone: ../../etc/passwd"),
        ({"keep": 0}, "Keep must be between 1 and 30"),
        ({"keep": 31}, "Keep must be between 1 and 30"),
        ({"keep": "7"}, "Keep must be between 1 and 30"),
        (
            {"cron": "*/5 * * * *"},
            "Schedule runs too often: at most once every hour (this cron runs every 5 minutes)",
        ),
        # First failure wins: the request before the cron before the zone.
        ({"request": {"format": "xml"}, "cron": "x", "timezone": "y"}, "Format must be"),
        ({"cron": "x", "timezone": "y", "keep": 0}, "Invalid cron expression: x"),
    ],
)
async def test_validation(
    demo_system: System,
    owner: uuid.UUID,
    libraries: list[dict[str, str]],
    patch: dict[str, Any],
    message: str,
) -> None:
    with demo_system.client(owner) as client:
        response = client.post(URL, json=_body(libraries, **patch))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "ValidationError"
    assert response.json()["message"].startswith(message)


async def test_at_most_ten_per_user(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    user = await new_user(demo_database)
    with demo_system.client(user) as client:
        for _ in range(10):
            assert client.post(URL, json=_body(libraries)).status_code == 201
        eleventh = client.post(URL, json=_body(libraries))
    assert eleventh.status_code == 409
    assert eleventh.json() == {
        "error": "Conflict",
        "message": "You already have 10 schedules (limit: 10)",
    }


async def test_another_users_schedule_is_missing(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    alice, bob = await new_user(demo_database), await new_user(demo_database)
    with demo_system.client(alice) as client:
        schedule = client.post(URL, json=_body(libraries)).json()
    with demo_system.client(bob) as client:
        assert client.get(URL).json() == {"schedules": []}
        for response in (
            client.get(f"{URL}/{schedule['id']}"),
            client.delete(f"{URL}/{schedule['id']}"),
            client.post(f"{URL}/{schedule['id']}/run"),
        ):
            assert response.status_code == 404
            assert response.json()["message"] == "Schedule not found"
    with demo_system.client(alice) as client:
        assert client.get(f"{URL}/{schedule['id']}").status_code == 200


async def test_run_now_makes_a_scheduled_export(
    demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    user = await new_user(demo_database)
    with demo_system.client(user) as client:
        schedule = client.post(URL, json=_body(libraries)).json()
        run = client.post(f"{URL}/{schedule['id']}/run")
        assert run.status_code == 202, run.text
        export = run.json()
        assert export["scheduleId"] == schedule["id"]
        done = wait_for_export(client, export["id"])
        assert done["status"] == "completed", done
        assert done["scheduleId"] == schedule["id"]
        after = client.get(f"{URL}/{schedule['id']}").json()
        assert after["lastExportId"] == export["id"]
        assert after["lastRunAt"] is not None
        # An interactive export carries no schedule.
        plain = client.post("/api/v1/user/exports/series", json=_body(libraries)["request"])
        assert plain.json()["scheduleId"] is None
        # Deleting the schedule leaves its runs.
        assert client.delete(f"{URL}/{schedule['id']}").status_code == 204
        kept = client.get(f"/api/v1/user/exports/series/{export['id']}")
        assert kept.status_code == 200
        assert kept.json()["scheduleId"] == schedule["id"]
