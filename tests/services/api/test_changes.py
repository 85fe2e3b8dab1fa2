"""The comparison of two exports (``services.api.changes``) on hand-built row streams and files.

The walk is checked against a naive reference (both files whole in dicts) on random edits,
with a pending limit small enough that rows spill to disk, so the constant-memory path gives
exactly what holding everything would.
"""

from __future__ import annotations

import gzip
import io
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.api.changes import (
    BOOKS,
    NOT_COMPARABLE,
    SERIES,
    Changes,
    Pending,
    UnreadableFile,
    _Waiting,
    comparable,
    compare_files,
    compared_keys,
    diff_section,
    read_rows,
)
from shared.formats import Compression, ExportFormat, ExportStatus, ExportType
from shared.repository import ExportRow

SERIES_KEYS = frozenset({"series_name", "series_id", "title", "genres", "year"})


def series(sid: str, name: str, **values: Any) -> dict[str, Any]:
    return {"series_name": name, "series_id": sid, **values}


def run(
    older: list[dict[str, Any]],
    newer: list[dict[str, Any]],
    *,
    keys: frozenset[str] = SERIES_KEYS,
    limit: int = 5000,
    max_items: int = 1000,
) -> Changes:
    changes = Changes(max_items=max_items)
    diff_section(SERIES, older, newer, keys, changes, pending_limit=limit)
    return changes


def summary(changes: Changes) -> list[tuple[str, str, list[str]]]:
    return [(i["change"], i["id"], i["fields"]) for i in changes.items()]


def test_identical_files_have_no_changes() -> None:
    rows = [series(f"s{i}", f"Name {i}", title=f"T{i}") for i in range(50)]
    changes = run(rows, [dict(r) for r in rows])
    assert changes.public("x") == {
        "since": "x",
        "series": {"added": 0, "removed": 0, "changed": 0},
        "books": {"added": 0, "removed": 0, "changed": 0},
        "items": [],
    }


def test_added_removed_and_changed_in_order_with_their_fields() -> None:
    older = [
        series("a", "Alpha", title="Alpha", genres=["Action"]),
        series("b", "Beta", title="Beta"),
        series("c", "Gamma", title="Gamma", year=2001),
        series("d", "Delta", title="Delta"),
    ]
    newer = [
        series("a", "Alpha", title="Alpha", genres=["Action", "Drama"]),
        series("n", "New", title="New"),
        series("c", "Gamma", title="Gamma"),
        series("d", "Delta", title="Delta"),
    ]
    changes = run(older, newer)
    assert changes.counts["series"].public() == {"added": 1, "removed": 1, "changed": 2}
    assert changes.items() == [
        {"kind": "series", "change": "changed", "id": "a", "name": "Alpha", "fields": ["genres"]},
        {"kind": "series", "change": "removed", "id": "b", "name": "Beta", "fields": []},
        {"kind": "series", "change": "added", "id": "n", "name": "New", "fields": []},
        # a field with no data any more (left out of the row) is a change too
        {"kind": "series", "change": "changed", "id": "c", "name": "Gamma", "fields": ["year"]},
    ]


def test_a_row_that_moved_is_changed_not_removed_and_added() -> None:
    # A new title moves the series from first to last (SPEC §5 orders by title).
    older = [series("m", "Moved", title="Aardvark")] + [
        series(f"s{i}", f"S{i}", title=f"B{i:03}") for i in range(100)
    ]
    newer = [series(f"s{i}", f"S{i}", title=f"B{i:03}") for i in range(100)] + [
        series("m", "Moved", title="Zebra")
    ]
    changes = run(older, newer)
    assert summary(changes) == [("changed", "m", ["title"])]
    assert changes.counts["series"].public() == {"added": 0, "removed": 0, "changed": 1}


def test_fields_outside_the_compared_keys_are_ignored() -> None:
    older = [series("a", "A", title="x", summary="old")]
    newer = [series("a", "A", title="x", summary="new")]
    assert summary(run(older, newer)) == []
    assert summary(run(older, newer, keys=SERIES_KEYS | {"summary"})) == [
        ("changed", "a", ["summary"])
    ]


def test_the_anchor_is_compared_and_names_come_from_the_newer_row() -> None:
    changes = run([series("a", "Old name")], [series("a", "New name")])
    assert changes.items() == [
        {
            "kind": "series",
            "change": "changed",
            "id": "a",
            "name": "New name",
            "fields": ["series_name"],
        }
    ]


def test_items_are_capped_but_counts_are_full() -> None:
    older = [series(f"s{i:03}", f"S{i}") for i in range(200)]
    newer = [series(f"s{i:03}", f"S{i}", title="t") for i in range(200)]
    changes = run(older, newer, max_items=3)
    assert changes.counts["series"].changed == 200
    assert [i["id"] for i in changes.items()] == ["s000", "s001", "s002"]


def test_removed_rows_stand_after_their_predecessor() -> None:
    older = [series(x, x.upper()) for x in ("r0", "r1", "r2", "r3", "a")]
    newer = [series("a", "A"), series("x", "X")]
    # r0-r3 have no predecessor: they come first; x is after a.
    assert [(c, i) for c, i, _ in summary(run(older, newer))] == [
        ("removed", "r0"),
        ("removed", "r1"),
        ("removed", "r2"),
        ("removed", "r3"),
        ("added", "x"),
    ]
    older = [series(x, x) for x in ("a", "b", "c", "gone", "d")]
    newer = [series(x, x) for x in ("n1", "n2", "n3", "a", "b", "c", "d")]
    assert [i for _, i, _ in summary(run(older, newer))] == ["n1", "n2", "n3", "gone"]


def test_pending_spills_to_disk_and_gives_rows_back() -> None:
    pending = Pending(limit=4)
    for i in range(20):
        pending.put(f"k{i}", _Waiting(i, i - 1, {"series_id": f"k{i}", "n": i}))
    assert pending.spilled > 0 and len(pending) == 20
    got = pending.pop("k0")  # the oldest: on disk
    assert got is not None and got.row == {"series_id": "k0", "n": 0} and got.after == -1
    assert pending.pop("k0") is None and pending.pop("absent") is None
    assert sorted(w.pos for w in pending.drain()) == list(range(1, 20))
    assert len(pending) == 0


def _naive(
    older: list[dict[str, Any]], newer: list[dict[str, Any]], keys: frozenset[str]
) -> tuple[set[str], set[str], dict[str, list[str]]]:
    old = {r["series_id"]: r for r in older}
    new = {r["series_id"]: r for r in newer}
    changed = {}
    for sid in old.keys() & new.keys():
        differ = [k for k in keys if old[sid].get(k, "<none>") != new[sid].get(k, "<none>")]
        if differ:
            changed[sid] = sorted(differ)
    return set(new) - set(old), set(old) - set(new), changed


@pytest.mark.parametrize("seed", range(12))
def test_random_edits_match_a_whole_in_memory_comparison(seed: int) -> None:
    rng = random.Random(seed)
    older = [
        series(
            f"s{i}", f"N{i}", title=f"T{rng.randrange(10_000):05}", year=rng.randrange(1990, 2025)
        )
        for i in range(rng.randrange(0, 400))
    ]
    newer = [dict(r) for r in older if rng.random() > 0.1]  # removals
    for row in newer:
        if rng.random() < 0.15:
            row["title"] = f"T{rng.randrange(10_000):05}"  # moves it
        if rng.random() < 0.1:
            row.pop("year")
    newer += [
        series(f"new{i}", f"M{i}", title=f"T{rng.randrange(10_000):05}")
        for i in range(rng.randrange(0, 150))
    ]
    older.sort(key=lambda r: (r["title"], r["series_id"]))
    newer.sort(key=lambda r: (r["title"], r["series_id"]))
    if seed % 3 == 0:
        rng.shuffle(newer)  # no shared order at all: still exact, only more rows wait
    added, removed, changed = _naive(older, newer, SERIES_KEYS)
    for limit in (3, 5000):
        changes = run(older, newer, limit=limit, max_items=10_000)
        items = changes.items()
        assert {i["id"] for i in items if i["change"] == "added"} == added
        assert {i["id"] for i in items if i["change"] == "removed"} == removed
        assert {i["id"]: sorted(i["fields"]) for i in items if i["change"] == "changed"} == changed
        counts = changes.counts["series"]
        assert (counts.added, counts.removed, counts.changed) == (
            len(added),
            len(removed),
            len(changed),
        )
        # Added and changed items follow the newer file's order.
        position = {r["series_id"]: n for n, r in enumerate(newer)}
        placed = [position[i["id"]] for i in items if i["change"] != "removed"]
        assert placed == sorted(placed)


# ---------------------------------------------------------------------------------------------
# Files


ROWS = [
    {"series_name": "Ä", "series_id": "1", "year": 2001, "rating": 7.25, "genres": ["x"]},
    {"series_name": "B", "series_id": "2", "progress": 0.1},
]
BOOK_ROWS = [{"book_name": "b1", "book_id": "10", "number": 1.5}]


def _json(rows: Any) -> bytes:
    return orjson.dumps(rows)


def _jsonl(rows: list[dict[str, Any]], kind: str | None = None) -> bytes:
    lines = b""
    for row in rows:
        body = orjson.dumps(row)
        if kind is not None:
            body = b'{"type":' + orjson.dumps(kind) + b"," + body[1:]
        lines += body + b"\n"
    return lines


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.GZIP])
@pytest.mark.parametrize(
    ("fmt", "export_type", "data"),
    [
        (ExportFormat.JSON, ExportType.SERIES, _json(ROWS)),
        (ExportFormat.JSONL, ExportType.SERIES, _jsonl(ROWS)),
        (ExportFormat.JSON, ExportType.BOTH, _json({"series": ROWS, "books": BOOK_ROWS})),
        (
            ExportFormat.JSONL,
            ExportType.BOTH,
            _jsonl(ROWS, "series") + _jsonl(BOOK_ROWS, "books"),
        ),
    ],
)
def test_files_are_read_as_the_same_rows(
    fmt: ExportFormat, export_type: ExportType, data: bytes, compression: Compression
) -> None:
    raw = gzip.compress(data) if compression == Compression.GZIP else data
    got = list(read_rows(io.BytesIO(raw), fmt, compression, export_type, "series"))
    assert got == ROWS
    assert all(type(got[0][k]) is type(ROWS[0][k]) for k in ROWS[0])  # numbers stay int/float
    if export_type == ExportType.BOTH:
        books = list(read_rows(io.BytesIO(raw), fmt, compression, export_type, "books"))
        assert books == BOOK_ROWS


@pytest.mark.parametrize(
    ("fmt", "data"),
    [(ExportFormat.JSON, b'[{"series_id": "1"'), (ExportFormat.JSONL, b'{"series_id": \n')],
)
def test_a_broken_file_is_unreadable(fmt: ExportFormat, data: bytes) -> None:
    with pytest.raises(UnreadableFile):
        list(read_rows(io.BytesIO(data), fmt, Compression.NONE, ExportType.SERIES, "series"))


# ---------------------------------------------------------------------------------------------
# Which exports compare


def export(
    fmt: ExportFormat = ExportFormat.JSON,
    export_type: ExportType = ExportType.SERIES,
    fields: tuple[str, ...] = ("series_id", "title"),
    book_fields: tuple[str, ...] = ("book_id", "title"),
    compression: Compression = Compression.NONE,
) -> ExportRow:
    now = datetime.now(UTC)
    return ExportRow(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        format=fmt,
        export_type=export_type,
        library_ids=[],
        library_names=[],
        fields=list(fields),
        book_fields=list(book_fields),
        status=ExportStatus.COMPLETED,
        rows_total=None,
        rows_written=0,
        row_count=None,
        file_size_bytes=None,
        sha256=None,
        file_name="x.json",
        object_key="k",
        error=None,
        attempt=0,
        worker_id=None,
        heartbeat_at=None,
        request_id=None,
        created_at=now,
        started_at=None,
        completed_at=None,
        expires_at=now,
        published_at=None,
        compression=compression,
    )


def test_which_exports_compare() -> None:
    assert NOT_COMPARABLE.startswith("Exports can be compared only when")
    assert comparable(export(), export(ExportFormat.JSONL, compression=Compression.GZIP))
    assert not comparable(export(), export(ExportFormat.CSV))
    assert not comparable(export(ExportFormat.MD), export())
    assert not comparable(export(), export(export_type=ExportType.BOOKS))
    assert not comparable(export(), export(fields=("title",)))
    assert comparable(export(export_type=ExportType.BOOKS), export(export_type=ExportType.BOOKS))
    assert not comparable(
        export(export_type=ExportType.BOOKS, book_fields=("title",)),
        export(export_type=ExportType.BOOKS),
    )
    both = ExportType.BOTH
    assert comparable(export(export_type=both), export(export_type=both))
    assert not comparable(export(export_type=both, fields=("title",)), export(export_type=both))


def test_compared_keys_are_the_anchor_and_the_shared_fields() -> None:
    older = export(fields=("series_id", "title", "summary"))
    newer = export(fields=("series_id", "title", "genres"))
    assert compared_keys(older, newer, SERIES) == {"series_name", "series_id", "title"}
    assert compared_keys(older, newer, BOOKS) == {"book_name", "book_id", "title"}


def test_compare_files_reads_both_sections_series_first() -> None:
    older_doc = _json({"series": ROWS, "books": BOOK_ROWS})
    newer_rows = [dict(ROWS[0], series_name="Renamed"), ROWS[1]]
    newer_doc = _jsonl(newer_rows, "series")  # JSON Lines against JSON: the same rows
    older = export(export_type=ExportType.BOTH, fields=("series_id",), book_fields=("book_id",))
    newer = export(
        ExportFormat.JSONL,
        export_type=ExportType.BOTH,
        fields=("series_id",),
        book_fields=("book_id",),
    )
    files = {older.id: older_doc, newer.id: newer_doc}

    def opener(row: ExportRow) -> Any:
        return io.BytesIO(files[row.id])

    changes = compare_files(older, newer, opener)
    assert summary(changes) == [("changed", "1", ["series_name"]), ("removed", "10", [])]
    assert changes.items()[1]["kind"] == "books"
    assert changes.counts["books"].removed == 1


def test_the_series_of_a_both_json_file_are_read_without_its_books() -> None:
    # The series pass stops where the series array ends: what follows is never parsed.
    data = _json({"series": ROWS, "books": []})[:-3] + b"not json at all"
    got = list(
        read_rows(io.BytesIO(data), ExportFormat.JSON, Compression.NONE, ExportType.BOTH, "series")
    )
    assert got == ROWS
    with pytest.raises(UnreadableFile):
        list(
            read_rows(
                io.BytesIO(data), ExportFormat.JSON, Compression.NONE, ExportType.BOTH, "books"
            )
        )
