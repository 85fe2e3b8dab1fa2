"""What the CLI's integration tests share: running ``codex-exports`` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(
    *args: str,
    home: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``codex-exports`` with a private config/state home (no dev stack, no saved token)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTS_")}
    base.update({"XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state")})
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
