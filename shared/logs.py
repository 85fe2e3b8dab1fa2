"""Structured JSON logs, one line per event, with download-link tokens redacted.

Every line goes through :func:`redact` last, whatever logger wrote it (ours, uvicorn's access
and error logs, FastStream's): a ``token=`` query parameter's value, and anything shaped like a
download-link token (``cxd1.…``, ``services/api/links.py``), become ``[redacted]``. A link is a
credential for its short life, and log lines outlive it and travel further.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_EXTRA_KEYS = (
    "export_id",
    "user_id",
    "request_id",
    "worker_id",
    "attempt",
    "lane",
    "subject",
    "method",
    "path",
    "status",
    "duration_ms",
)

LINK_TOKEN_PREFIX = "cxd1."  # noqa: S105 (a prefix, no secret)
"""How every download-link token starts (the api signs them; this module redacts them)."""
REDACTED = "[redacted]"
# The value of a token-ish query parameter (raw or percent-encoded "="), and a link token
# wherever it appears (a path, an exception text, a header echoed in a message).
_SECRET_PARAMETER = re.compile(
    r"(?i)([?&;](?:token|access_token|api_key|key)(?:=|%3D))[^&#\s\\\"'<>]*"
)
_LINK_TOKEN = re.compile(re.escape(LINK_TOKEN_PREFIX) + r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)?")


def redact(text: str) -> str:
    """``text`` with query-string tokens and download-link tokens replaced by ``[redacted]``."""
    text = _SECRET_PARAMETER.sub(lambda m: m.group(1) + REDACTED, text)
    return _LINK_TOKEN.sub(REDACTED, text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, ensure_ascii=False))


def configure_logging(level: str = "INFO") -> None:
    """Route every logger (ours, uvicorn's, FastStream's) to JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn and FastStream attach their own (coloured, plain-text) handlers: route them to ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream", "faststream.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
