"""``services.cli.servers`` before any server starts: free ports, the data directory checks. The
servers themselves are started in ``tests/integration/cli/test_servers.py``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.servers import ServerError, free_port, start_postgres


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A fresh world-traversable directory (PostgreSQL runs as ``nobody`` when we are root)."""
    path = Path(tempfile.mkdtemp(prefix="servers-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535


@pytest.mark.skipif(os.geteuid() != 0, reason="the traversal check only applies as root")
def test_postgres_as_root_rejects_untraversable_parent(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(ServerError, match="world-traversable"):
        start_postgres(private / "pg")
