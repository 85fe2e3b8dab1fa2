"""Object-store credentials per service, on SeaweedFS identities restricted to one bucket.

SeaweedFS grants actions per identity in its ``s3.json`` (``Read``, ``Write``, ``List``,
``Admin``, each optionally ``:bucket``). Here the api and the worker get Read and Write on the
exports bucket, the janitor also List (its sweep lists orphans), and nobody but an operator's
identity has Admin: no service can create or delete buckets or change their lifecycle, or
touch another bucket. An export runs end to end, the worker evicts over the cap and the janitor
removes an orphan, each with its own key; then the refusals are checked one by one.
"""

from __future__ import annotations

import io
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from minio import Minio
from minio.error import S3Error

from services.cli import servers
from services.cli.synthetic import build_synthetic
from tests.conftest import Servers, new_user, seeded_database
from tests.integration.security.conftest import URL, SystemFactory
from tests.system import System, wait_for_export

pytestmark = pytest.mark.integration
BUCKET = "codex-exports"
OTHER = "someone-else"
ACTIONS = {
    "operator": ["Admin", "Read", "List", "Tagging", "Write"],
    "api": [f"Read:{BUCKET}", f"Write:{BUCKET}"],
    "worker": [f"Read:{BUCKET}", f"Write:{BUCKET}"],
    "janitor": [f"Read:{BUCKET}", f"Write:{BUCKET}", f"List:{BUCKET}"],
}


@dataclass
class Identities:
    endpoint: str
    keys: dict[str, tuple[str, str]]  # name → (access key, secret key)

    def client(self, name: str) -> Minio:
        access, secret = self.keys[name]
        return Minio(
            self.endpoint, access_key=access, secret_key=secret, secure=False, region="us-east-1"
        )


@pytest.fixture(scope="module")
def identities(servers_dir: Path) -> Iterator[Identities]:
    keys = {name: (f"{name}-{secrets.token_hex(3)}", secrets.token_urlsafe(24)) for name in ACTIONS}
    config = {
        "identities": [
            {
                "name": name,
                "credentials": [{"accessKey": a, "secretKey": s}],
                "actions": ACTIONS[name],
            }
            for name, (a, s) in keys.items()
        ]
    }
    # start_s3 writes a one-identity s3.json from _s3_config; this test needs four.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(servers, "_s3_config", lambda _a, _s: json.dumps(config))
        server = servers.start_s3(servers_dir / f"s3-ids-{uuid.uuid4().hex[:6]}", *keys["operator"])
    try:
        found = Identities(server.endpoint, keys)
        operator = found.client("operator")
        operator.make_bucket(BUCKET)  # the operator's job: no service may create buckets
        operator.make_bucket(OTHER)
        operator.put_object(OTHER, "private.txt", io.BytesIO(b"not yours"), 9)
        yield found
    finally:
        server.stop()


@dataclass
class Stack:
    system: System
    database_url: str
    library: str
    user: uuid.UUID


@pytest.fixture(scope="module")
async def stack(
    real_servers: Servers, private_systems: SystemFactory, identities: Identities
) -> Stack:
    url, catalog = await seeded_database(
        real_servers, lambda c: build_synthetic(c, series=20, books=200)
    )
    system = private_systems(
        url,
        start=False,
        EXPORTS_S3_ENDPOINT=identities.endpoint,
        EXPORTS_S3_BUCKET=BUCKET,
        EXPORTS_MAX_COMPLETED_PER_USER="1",
        EXPORTS_SWEEP_INTERVAL_SECONDS="1",
        EXPORTS_ORPHAN_AGE_SECONDS="0",
    )
    for service in ("api", "worker", "janitor"):
        access, secret = identities.keys[service]
        system.start_one(service, EXPORTS_S3_ACCESS_KEY=access, EXPORTS_S3_SECRET_KEY=secret)
    system.wait_ready()
    return Stack(system, url, str(catalog.library_id), await new_user(url))


def test_each_service_works_with_its_own_object_store_key(
    stack: Stack, identities: Identities
) -> None:
    operator = identities.client("operator")
    body = {"format": "json", "exportType": "both", "libraryIds": [stack.library], "preset": "all"}
    with stack.system.client(stack.user) as client:
        first = client.post(URL, json=body).json()
        assert wait_for_export(client, first["id"])["status"] == "completed"
        assert client.get(f"{URL}/{first['id']}/download").status_code == 200  # api: Read
        second = client.post(URL, json={**body, "format": "md"}).json()
        assert wait_for_export(client, second["id"])["status"] == "completed"  # worker: Write
        # The worker's key evicted the first file over the cap of one.
        assert [e["id"] for e in client.get(URL).json()["exports"]] == [second["id"]]
        keys = [
            o.object_name for o in operator.list_objects(BUCKET, prefix="exports/", recursive=True)
        ]
        assert len(keys) == 1 and second["id"] in keys[0]
        assert client.delete(f"{URL}/{second['id']}").status_code == 204  # api: Write (delete)

    # An object no export row knows: the janitor's sweep (List + Write) removes it.
    operator.put_object(BUCKET, "exports/orphan/orphan/x.json", io.BytesIO(b"{}"), 2)
    deadline = time.monotonic() + 30
    while (
        list(operator.list_objects(BUCKET, prefix="exports/", recursive=True))
        and time.monotonic() < deadline
    ):
        time.sleep(0.3)
    assert list(operator.list_objects(BUCKET, prefix="exports/", recursive=True)) == []
    for service in ("api", "worker", "janitor"):
        assert stack.system.processes[service].poll() is None, stack.system.log(service)[-2000:]
        assert "AccessDenied" not in stack.system.log(service)


def _denied(action: Callable[[], Any]) -> bool:
    """True when the store refuses ``action`` (listings are lazy: drain them)."""
    try:
        result = action()
        if isinstance(result, Iterator):
            list(result)
    except S3Error as err:
        return err.code == "AccessDenied"
    return False


@pytest.mark.parametrize("service", ["api", "worker", "janitor"])
def test_no_service_can_administer_or_reach_another_bucket(
    identities: Identities, service: str
) -> None:
    client = identities.client(service)
    assert _denied(lambda: client.make_bucket("made-by-" + service))
    assert _denied(lambda: client.remove_bucket(BUCKET))
    assert _denied(lambda: client.stat_object(OTHER, "private.txt"))
    assert _denied(lambda: client.put_object(OTHER, "x", io.BytesIO(b"x"), 1))
    assert _denied(lambda: client.list_objects(OTHER, recursive=True))
    if not _denied(lambda: client.list_buckets()):
        assert OTHER not in [b.name for b in client.list_buckets()]  # SeaweedFS shows only its own


@pytest.mark.parametrize("service", ["api", "worker"])
def test_only_the_janitor_may_list_the_exports_bucket(identities: Identities, service: str) -> None:
    assert _denied(
        lambda: identities.client(service).list_objects(BUCKET, prefix="exports/", recursive=True)
    )
    assert not _denied(
        lambda: identities.client("janitor").list_objects(BUCKET, prefix="exports/", recursive=True)
    )
