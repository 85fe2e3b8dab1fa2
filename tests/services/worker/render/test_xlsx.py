"""``services.worker.render.xlsx``: scratch directories a dead worker left are removed at start,
live ones are kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.worker.render import xlsx


def _scratch(root: Path, name: str, age_seconds: float) -> Path:
    folder = root / f"{xlsx.SCRATCH_PREFIX}{name}"
    folder.mkdir()
    rows = folder / "tmp-rows"
    rows.write_text("<row/>")
    then = time.time() - age_seconds
    for path in (rows, folder):
        os.utime(path, (then, then))
    return folder


def test_only_abandoned_scratch_directories_are_removed(tmp_path: Path) -> None:
    dead = _scratch(tmp_path, "dead", 7200)
    live = _scratch(tmp_path, "live", 10)
    # An old directory whose export still writes (a fresh file in it) is live too.
    busy = _scratch(tmp_path, "busy", 7200)
    (busy / "export.xlsx").write_bytes(b"PK")
    other = tmp_path / "someone-elses-dir"
    other.mkdir()
    os.utime(other, (0, 0))

    assert xlsx.remove_abandoned(3600, root=tmp_path) == 1
    assert not dead.exists()
    assert live.exists() and busy.exists() and other.exists()
    assert xlsx.remove_abandoned(3600, root=tmp_path) == 0
