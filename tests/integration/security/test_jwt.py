"""Bearer tokens: every bad one is the same 401; a weak secret stops the api at start."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from services.cli import servers
from tests.conftest import new_user
from tests.system import JWT_SECRET, System

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"
SAME_401 = {"error": "Unauthorized", "message": "Invalid or expired credentials"}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(subject: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "username": "user",
        "role": "reader",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(claims: dict[str, Any], secret: str = JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _by_hand(claims: dict[str, Any], algorithm: str = "HS256", secret: str = JWT_SECRET) -> str:
    """Signed without PyJWT, which refuses odd claims and warns about short HS512 secrets."""
    signing_input = _b64({"alg": algorithm, "typ": "JWT"}) + "." + _b64(claims)
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[algorithm]
    mac = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _bad_tokens(user: uuid.UUID) -> dict[str, str]:
    sub = str(user)
    now = int(datetime.now(UTC).timestamp())
    return {
        "wrong-signature": _sign(_claims(sub), "another-secret-" + "y" * 40),
        "alg-none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims(sub)) + ".",
        "alg-none-with-signature": _b64({"alg": "none", "typ": "JWT"})
        + "."
        + _b64(_claims(sub))
        + ".c2ln",
        "hs512-same-secret": _by_hand(_claims(sub), "HS512"),
        "expired": _sign(_claims(sub, iat=now - 7200, exp=now - 3600)),
        "not-yet-valid": _sign(_claims(sub, nbf=now + 3600)),
        "issued-in-the-future": _sign(_claims(sub, iat=now + 3600, exp=now + 7200)),
        "missing-sub": _sign(_claims(sub, sub=None)),
        "missing-exp": _sign(_claims(sub, exp=None)),
        "non-uuid-sub": _sign(_claims("alice")),
        "numeric-sub": _by_hand({**_claims(sub), "sub": 42}),
        "sql-sub": _sign(_claims("' OR '1'='1")),
        "unknown-user": _sign(_claims(str(uuid.uuid4()))),
        "garbage": "not.a.jwt",
        "tampered-payload": (
            lambda t: (
                t.split(".")[0] + "." + _b64(_claims(str(uuid.uuid4()))) + "." + t.split(".")[2]
            )
        )(_sign(_claims(sub))),
    }


CASES = [
    "wrong-signature",
    "alg-none",
    "alg-none-with-signature",
    "hs512-same-secret",
    "expired",
    "not-yet-valid",
    "issued-in-the-future",
    "missing-sub",
    "missing-exp",
    "non-uuid-sub",
    "numeric-sub",
    "sql-sub",
    "unknown-user",
    "garbage",
    "tampered-payload",
]


@pytest.fixture(scope="module")
async def caller(demo_database: str) -> uuid.UUID:
    return await new_user(demo_database)


@pytest.mark.parametrize("case", CASES)
def test_every_bad_token_gets_the_same_401(
    demo_system: System, caller: uuid.UUID, case: str
) -> None:
    token = _bad_tokens(caller)[case]
    for path in (URL, "/api/v1/auth/me", f"{URL}/{uuid.uuid4()}", "/api/v1/user/api-keys"):
        response = httpx.get(
            demo_system.api_url + path, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, (case, path, response.text)
        assert response.json() == SAME_401
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_same_claims_signed_right_are_accepted(demo_system: System, caller: uuid.UUID) -> None:
    """The control: only the defect in each case above is what gets it refused."""
    token = _sign(_claims(str(caller)))
    response = httpx.get(
        demo_system.api_url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200 and response.json()["id"] == str(caller)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}, {"X-API-Key": ""}],
    ids=["none", "basic", "bare-bearer", "empty-key"],
)
def test_missing_credentials_are_401(demo_system: System, headers: dict[str, str]) -> None:
    response = httpx.get(demo_system.api_url + URL, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": "Unauthorized",
        "message": "Authentication required: sign in or send a valid token",
    }


@pytest.mark.parametrize(
    "secret",
    [
        "changeme",
        "short-but-not-placeholder",
        "",
        "secret",
        "INSECURE_DEFAULT_SECRET_CHANGE_IN_PRODUCTION",
    ],
)
def test_a_placeholder_or_short_secret_stops_the_api_at_start(secret: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
    env.update(
        {
            "EXPORTS_JWT_SECRET": secret,
            "EXPORTS_API_PORT": str(servers.free_port()),
            # Nothing listens there: the api must refuse before it tries to connect anywhere.
            "EXPORTS_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            "EXPORTS_NATS_URL": "nats://127.0.0.1:1",
        }
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "services.api"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 15
    output = (result.stdout + result.stderr).decode()
    assert "EXPORTS_JWT_SECRET must be set to a random value of at least 32 characters" in output
