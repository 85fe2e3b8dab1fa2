"""``shared.logs``: JSON lines, and no download-link token in any of them, whoever logs it."""

from __future__ import annotations

import json
import logging

from shared.logs import REDACTED, JsonFormatter, redact

TOKEN = "cxd1.AAECAwQFBgcICQoLDA0ODw.s3cr3t-MAC_value"


def _line(name: str, msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    text = JsonFormatter().format(record)
    assert "s3cr3t" not in text and "AAECAwQF" not in text
    parsed: dict[str, object] = json.loads(text)  # still one JSON object
    return parsed


def test_uvicorns_access_line_has_its_query_token_redacted() -> None:
    # uvicorn.access's own format and arguments, should its access log be turned on.
    entry = _line(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5555",
        "GET",
        f"/api/v1/user/exports/series/x/download?token={TOKEN}&a=1",
        "1.1",
        200,
    )
    assert entry["message"] == (
        '127.0.0.1:5555 - "GET /api/v1/user/exports/series/x/download'
        f'?token={REDACTED}&a=1 HTTP/1.1" 200'
    )


def test_a_token_anywhere_in_a_line_is_redacted() -> None:
    entry = _line("services.api", "failed on %s", f"/series/{TOKEN}/x", path=f"/p?token={TOKEN}")
    assert entry["message"] == f"failed on /series/{REDACTED}/x"
    assert entry["path"] == f"/p?token={REDACTED}"


def test_redact_keeps_everything_else() -> None:
    assert (
        redact("GET /api/v1/user/exports/series?x=1 200")
        == "GET /api/v1/user/exports/series?x=1 200"
    )
    assert redact("/d?TOKEN=abc&b=2") == f"/d?TOKEN={REDACTED}&b=2"
    assert redact("/d?a=1&token%3Dabc") == f"/d?a=1&token%3D{REDACTED}"
    assert redact('"/d?token=abc"') == f'"/d?token={REDACTED}"'
