"""``services.worker.render.xlsx``: scratch directories a dead worker left are removed at start,
live ones are kept; a row's shortcut for plain text writes what the escaping cell writer does."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.worker.render import xlsx
from shared.fields import BOOK_FIELDS, columns
from tests.services.worker.render.samples import HOSTILE


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


class _Sink:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


@pytest.mark.parametrize(
    "text", [*HOSTILE, "plain", "a ", " a", "_x0041_", "a_xb", "\ufffe", "é&", "x" * 40_000]
)
def test_a_row_writes_every_text_as_the_escaping_cell_writer_does(text: str) -> None:
    # row() writes most texts by a shortcut; each must give the bytes _string_cell gives.
    encoder = xlsx.XlsxEncoder(both=False)
    encoder.start()
    try:
        encoder.start_section("books", columns(["title"], BOOK_FIELDS))
        sink = _Sink()
        encoder._out = sink
        encoder.row({"book_name": "x", "title": text})
        expected = xlsx._string_cell("B2", text[: xlsx.MAX_CELL_CHARS])
        assert "".join(sink.parts) == f'<row r="2">{xlsx._string_cell("A2", "x")}{expected}</row>'
    finally:
        encoder.discard()
