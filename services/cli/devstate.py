"""Where a running ``codex-exports dev`` leaves its coordinates for the other commands.

The file holds the dev JWT secret, so it is private to the user (mode 600) and removed at exit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "codex-exports" / "dev.json"


def write_state(env: dict[str, str]) -> Path:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({**env, "pid": os.getpid()}, out)
    tmp.replace(path)
    return path


def read_state() -> dict[str, str] | None:
    """The running stack's settings, or None when no live dev stack is found."""
    path = state_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = int(data.pop("pid", 0))
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return {k: str(v) for k, v in data.items()}


def clear_state() -> None:
    path = state_path()
    try:
        data = json.loads(path.read_text())
        if int(data.get("pid", 0)) == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def apply_dev_environment() -> bool:
    """Fill ``EXPORTS_*`` from a running dev stack when neither database nor secret is set."""
    if os.environ.get("EXPORTS_DATABASE_URL") or os.environ.get("EXPORTS_JWT_SECRET"):
        return False
    state = read_state()
    if state is None:
        return False
    for key, value in state.items():
        os.environ.setdefault(key, value)
    return True
