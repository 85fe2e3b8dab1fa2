"""What changed between two JSON / JSON Lines exports (SPEC §12, ``GET /{id}/changes``).

The one home of the comparison: which exports can be compared, how their files are read, and
the merge of two row streams into counts and items. The route only looks the exports up.

**Which rows are "the same".** A row is identified by its id (``series_id``, ``book_id``), which
both exports must hold. Two rows with one id are *changed* when a compared field differs;
the compared fields are the anchor and the fields BOTH exports asked for (a field only one of
them has would make every row look changed). ``fields`` lists the changed keys in catalog
order; a field that has data in one row and none in the other (left out of a JSON row) is a
change too.

**Why not a plain merge join on the sort key.** Both files are in SPEC §5 order, but that order
cannot be rebuilt from the exported fields: series sort by ``title_sort`` first, which no export
carries, and books by their series' position (``shared.catalog_rules``). And a merge on the
order key would see a renamed series (which moves) as one removal plus one addition. So the
files are walked in step, by position, joined on the id:

- in the usual case the rows at the same position have the same id and are compared at once;
- a row whose id does not match waits in a *pending* map of its side until the other side
  reaches that id (a row that moved, or rows shifted by an addition or a removal) or the files
  end (then it was added or removed). Pending maps hold only rows out of step, so few edits
  mean a few rows held;
- past ``PENDING_IN_MEMORY`` rows a pending map spills its oldest rows to a private temporary
  SQLite file (deleted when the comparison ends), so memory stays flat whatever the sizes and
  however many rows were added, removed or moved; only disk grows then.

**Order of the items** (SPEC §5, capped at ``MAX_ITEMS``; the counts are always full): series
before books; added and changed rows where the newer export has them; a removed row right
after the row that preceded it in the older export, at that row's place in the newer one, and
removed neighbours in their older order. (When that preceding row was itself removed, the
removed row takes the place its predecessor had when it was read: exact for runs of removed
rows that follow a kept row, the common case.) The first ``MAX_ITEMS`` are kept in a bounded
heap while the walk runs.

**Reading.** JSON with ``ijson`` (its C backend, yajl2_c): one row object at a time, numbers as
Python ``int`` / ``float`` exactly as ``orjson`` reads a JSON Lines row, so a JSON export compares
with a JSON Lines one. Type both is read once per section: the series pass of a JSON file
builds its rows from the parser's events and stops where the series array ends; the books pass
skips the series in C, building nothing. JSON Lines line by line (``orjson``), the ``type`` tag
dropped; a series pass stops at the first book line, a books pass skips series lines without
parsing them. gzip files are unpacked as they stream. The store is read through
``shared.object_store.open_object``; all of it is blocking code, run in a thread of its own by
:func:`compare`.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

import ijson  # type: ignore[import-untyped, unused-ignore]
import orjson
from ijson.common import ObjectBuilder  # type: ignore[import-untyped, unused-ignore]
from minio import Minio

from shared import object_store
from shared.fields import BOOK_FIELDS, SERIES_FIELDS, Field
from shared.formats import Compression, ExportFormat, ExportType
from shared.repository import ExportRow

MAX_ITEMS = 1000
PENDING_IN_MEMORY = 2000  # rows per side held before spilling to disk
NOT_COMPARABLE = (
    "Exports can be compared only when both are JSON or JSON Lines of the same type "
    "and include their IDs"
)
COMPARABLE_FORMATS = (ExportFormat.JSON, ExportFormat.JSONL)
STOP_CHECK_ROWS = 1024  # rows between two looks at the stop flag


class Stopped(Exception):
    """The caller went away: the comparison stopped early."""


class UnreadableFile(Exception):
    """An export's file is not the JSON it should be."""


@dataclass(frozen=True, slots=True)
class Section:
    kind: str  # "series" | "books", as in the answer and in a JSON Lines "type"
    id_key: str
    anchor: str
    catalog: tuple[Field, ...]


SERIES = Section("series", "series_id", SERIES_FIELDS[0].key, SERIES_FIELDS)
BOOKS = Section("books", "book_id", BOOK_FIELDS[0].key, BOOK_FIELDS)


def sections_of(export_type: ExportType) -> tuple[Section, ...]:
    if export_type == ExportType.SERIES:
        return (SERIES,)
    if export_type == ExportType.BOOKS:
        return (BOOKS,)
    return (SERIES, BOOKS)


def requested_keys(export: ExportRow, section: Section) -> list[str]:
    return list(export.fields if section is SERIES else export.book_fields)


def comparable(older: ExportRow, newer: ExportRow) -> bool:
    """SPEC §12: both JSON or JSON Lines (any compression), one type, and their ids exported."""
    if older.format not in COMPARABLE_FORMATS or newer.format not in COMPARABLE_FORMATS:
        return False
    if older.export_type != newer.export_type:
        return False
    return all(
        section.id_key in requested_keys(export, section)
        for export in (older, newer)
        for section in sections_of(newer.export_type)
    )


def compared_keys(older: ExportRow, newer: ExportRow, section: Section) -> frozenset[str]:
    """The anchor and the fields both exports asked for."""
    both = set(requested_keys(older, section)) & set(requested_keys(newer, section))
    return frozenset({section.anchor, *both})


# ---------------------------------------------------------------------------------------------
# The answer


@dataclass(slots=True)
class Counts:
    added: int = 0
    removed: int = 0
    changed: int = 0

    def public(self) -> dict[str, int]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


@dataclass(slots=True)
class Changes:
    """Full counts per section and the first ``max_items`` items in answer order."""

    max_items: int = MAX_ITEMS
    counts: dict[str, Counts] = field(
        default_factory=lambda: {SERIES.kind: Counts(), BOOKS.kind: Counts()}
    )
    # A max-heap of the kept items by their place (keys negated): the last one is dropped first.
    _heap: list[tuple[tuple[int, ...], int, dict[str, Any]]] = field(default_factory=list)
    _seq: int = 0

    def add(self, place: tuple[int, ...], item: dict[str, Any]) -> None:
        counts = self.counts[item["kind"]]
        setattr(counts, item["change"], getattr(counts, item["change"]) + 1)
        if self.max_items <= 0:
            return
        key = tuple(-k for k in place)
        self._seq += 1
        entry = (key, -self._seq, item)
        if len(self._heap) < self.max_items:
            heapq.heappush(self._heap, entry)
        elif entry > self._heap[0]:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[dict[str, Any]]:
        return [item for _, _, item in sorted(self._heap, reverse=True)]

    def public(self, since: str) -> dict[str, Any]:
        return {
            "since": since,
            "series": self.counts[SERIES.kind].public(),
            "books": self.counts[BOOKS.kind].public(),
            "items": self.items(),
        }


# ---------------------------------------------------------------------------------------------
# Rows waiting for their partner


@dataclass(slots=True)
class _Waiting:
    pos: int  # position in its own file
    after: int  # older side: the newer position of the in-step row before it (-1: none)
    row: dict[str, Any]


class Pending:
    """Rows of one side waiting for the other, by id: a dict, spilling to SQLite past a limit."""

    def __init__(self, limit: int = PENDING_IN_MEMORY) -> None:
        self._limit = max(1, limit)
        self._memory: dict[str, _Waiting] = {}
        self._disk: sqlite3.Connection | None = None
        self.spilled = 0  # rows on disk now

    def __len__(self) -> int:
        return len(self._memory) + self.spilled

    def __contains__(self, key: str) -> bool:
        return key in self._memory or self._on_disk(key) is not None

    def _on_disk(self, key: str) -> tuple[int, int, bytes] | None:
        if not self.spilled or self._disk is None:
            return None
        found: tuple[int, int, bytes] | None = self._disk.execute(
            "SELECT pos, after, row FROM waiting WHERE id = ?", (key,)
        ).fetchone()
        return found

    def after_of(self, key: str) -> int:
        waiting = self._memory.get(key)
        if waiting is not None:
            return waiting.after
        found = self._on_disk(key)
        return -1 if found is None else found[1]

    def set_after(self, key: str, after: int) -> None:
        """Place a waiting row (when it still waits) after newer position ``after``."""
        waiting = self._memory.get(key)
        if waiting is not None:
            waiting.after = after
        elif self.spilled and self._disk is not None:
            self._disk.execute("UPDATE waiting SET after = ? WHERE id = ?", (after, key))

    def put(self, key: str, waiting: _Waiting) -> None:
        self._memory[key] = waiting
        if len(self._memory) > self._limit:
            self._spill()

    def _spill(self) -> None:
        if self._disk is None:
            # "" = a private temporary database on disk, removed when it is closed.
            self._disk = sqlite3.connect("", check_same_thread=False)
            self._disk.execute("PRAGMA journal_mode = OFF")
            self._disk.execute("PRAGMA synchronous = OFF")
            self._disk.execute(
                "CREATE TABLE waiting (id TEXT PRIMARY KEY, pos INTEGER, after INTEGER, row BLOB)"
            )
        # The oldest half: dicts keep insertion order.
        count = len(self._memory) // 2
        moved = []
        for key in list(self._memory)[:count]:
            waiting = self._memory.pop(key)
            moved.append((key, waiting.pos, waiting.after, orjson.dumps(waiting.row)))
        with self._disk:
            self._disk.executemany("INSERT OR REPLACE INTO waiting VALUES (?, ?, ?, ?)", moved)
        self.spilled += len(moved)

    def pop(self, key: str) -> _Waiting | None:
        waiting = self._memory.pop(key, None)
        if waiting is not None:
            return waiting
        found = self._on_disk(key)
        if found is None or self._disk is None:
            return None
        self._disk.execute("DELETE FROM waiting WHERE id = ?", (key,))
        self.spilled -= 1
        return _Waiting(found[0], found[1], orjson.loads(found[2]))

    def drain(self) -> Iterator[_Waiting]:
        """Every row still waiting (in no particular order); the map is empty afterwards."""
        yield from self._memory.values()
        self._memory.clear()
        if self._disk is not None and self.spilled:
            for pos, after, row in self._disk.execute("SELECT pos, after, row FROM waiting"):
                yield _Waiting(pos, after, orjson.loads(row))
        self.close()

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        self.spilled = 0


# ---------------------------------------------------------------------------------------------
# The walk


def _changed_fields(
    old: dict[str, Any], new: dict[str, Any], keys: frozenset[str], order: dict[str, int]
) -> list[str]:
    if old == new:  # the usual case, compared in C; rows with extra keys fall through
        return []
    differ = [k for k in keys if (k in old) != (k in new) or (k in old and old[k] != new[k])]
    return sorted(differ, key=lambda k: order.get(k, len(order)))


def diff_section(
    section: Section,
    older: Iterable[dict[str, Any]],
    newer: Iterable[dict[str, Any]],
    keys: frozenset[str],
    changes: Changes,
    *,
    kind_rank: int = 0,
    pending_limit: int = PENDING_IN_MEMORY,
    stop: threading.Event | None = None,
) -> None:
    """Walk one section of both files in step and record what was added, removed or changed.

    ``older`` and ``newer`` yield row objects in their file's order; ``keys`` are the fields
    compared (:func:`compared_keys`). Items are placed by ``(kind_rank, newer position, …)``.
    """
    order = {f.key: i for i, f in enumerate(section.catalog)}
    id_key, anchor, kind = section.id_key, section.anchor, section.kind
    waiting_old, waiting_new = Pending(pending_limit), Pending(pending_limit)
    old_rows, new_rows = iter(older), iter(newer)
    old_pos = new_pos = 0
    # Where a removed row goes: after the newer place of the older row before it. That row's
    # place is known when it matched on arrival; when it was waiting itself, the row after it
    # is registered here (its id -> the waiting row's id) and placed when it matches.
    prev_old_id: str | None = None
    prev_old_place = -1
    followers: dict[str, str] = {}

    def matched(old: dict[str, Any], new: dict[str, Any], old_id: str, pos_new: int) -> None:
        follower = followers.pop(old_id, None)
        if follower is not None:
            waiting_old.set_after(follower, pos_new)
        differ = _changed_fields(old, new, keys, order)
        if differ:
            item = {
                "kind": kind,
                "change": "changed",
                "id": str(new[id_key]),
                "name": _name(new, anchor),
                "fields": differ,
            }
            changes.add((kind_rank, pos_new, 0, 0), item)

    try:
        old_row: dict[str, Any] | None = next(old_rows, None)
        new_row: dict[str, Any] | None = next(new_rows, None)
        while old_row is not None or new_row is not None:
            if stop is not None and (old_pos + new_pos) % STOP_CHECK_ROWS == 0 and stop.is_set():
                raise Stopped
            old_id = None if old_row is None else str(old_row.get(id_key))
            new_id = None if new_row is None else str(new_row.get(id_key))
            if (
                old_row is not None
                and new_row is not None
                and new_id is not None
                and old_id == new_id
            ):
                matched(old_row, new_row, new_id, new_pos)
                prev_old_id, prev_old_place = old_id, new_pos
            else:
                if old_row is not None and old_id is not None:
                    partner = waiting_new.pop(old_id)
                    if partner is not None:
                        matched(old_row, partner.row, old_id, partner.pos)
                        place = partner.pos
                    else:
                        after = prev_old_place
                        if prev_old_id is not None and prev_old_id in waiting_old:
                            # Placed after its waiting predecessor's place once that is known.
                            after = waiting_old.after_of(prev_old_id)
                            if len(followers) < pending_limit:
                                followers[prev_old_id] = old_id
                        waiting_old.put(old_id, _Waiting(old_pos, after, old_row))
                        place = after
                    prev_old_id, prev_old_place = old_id, place
                if new_row is not None and new_id is not None:
                    early = waiting_old.pop(new_id)
                    if early is not None:
                        matched(early.row, new_row, new_id, new_pos)
                    else:
                        waiting_new.put(new_id, _Waiting(new_pos, -1, new_row))
            if old_row is not None:
                old_pos += 1
                old_row = next(old_rows, None)
            if new_row is not None:
                new_pos += 1
                new_row = next(new_rows, None)

        for gone in waiting_old.drain():
            item = {
                "kind": kind,
                "change": "removed",
                "id": str(gone.row.get(id_key)),
                "name": _name(gone.row, anchor),
                "fields": [],
            }
            changes.add((kind_rank, gone.after, 1, gone.pos), item)
        for new in waiting_new.drain():
            item = {
                "kind": kind,
                "change": "added",
                "id": str(new.row.get(id_key)),
                "name": _name(new.row, anchor),
                "fields": [],
            }
            changes.add((kind_rank, new.pos, 0, 0), item)
    finally:
        waiting_old.close()
        waiting_new.close()


def _name(row: dict[str, Any], anchor: str) -> str:
    value = row.get(anchor)
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------
# Reading an export's file


def read_rows(
    raw: IO[bytes], fmt: ExportFormat, compression: Compression, export_type: ExportType, kind: str
) -> Iterator[dict[str, Any]]:
    """The row objects of one section of an export file, as they stream from ``raw``."""
    stream: IO[bytes] = raw
    if compression == Compression.GZIP:
        stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    both = export_type == ExportType.BOTH
    try:
        if fmt == ExportFormat.JSONL:
            yield from _jsonl_rows(stream, kind if both else None)
        elif both and kind == SERIES.kind:
            yield from _leading_section(stream, kind)
        else:
            prefix = f"{kind}.item" if both else "item"
            for row in ijson.items(stream, prefix, use_float=True):
                if not isinstance(row, dict):
                    raise UnreadableFile("a row is not a JSON object")
                yield row
    except (ijson.JSONError, orjson.JSONDecodeError, gzip.BadGzipFile, EOFError) as err:
        raise UnreadableFile(str(err) or type(err).__name__) from err


def _leading_section(stream: IO[bytes], kind: str) -> Iterator[dict[str, Any]]:
    """The rows of ``{"<kind>": [...], ...}``'s first array, from parser events, ending where
    that array ends: a type both file's series are read without parsing its (many) books."""
    item = f"{kind}.item"
    builder: ObjectBuilder | None = None
    for prefix, event, value in ijson.parse(stream, use_float=True):
        if builder is not None:
            builder.event(event, value)
            if prefix == item and event == "end_map":
                row = builder.value
                builder = None
                yield row
        elif prefix == item:
            if event != "start_map":
                raise UnreadableFile("a row is not a JSON object")
            builder = ObjectBuilder()
            builder.event(event, value)
        elif prefix == kind and event == "end_array":
            return


def _jsonl_rows(stream: IO[bytes], kind: str | None) -> Iterator[dict[str, Any]]:
    tag = None if kind is None else b'{"type":' + orjson.dumps(kind) + b","
    seen = False
    for line in stream:
        if not line.strip():
            continue
        if tag is not None:
            if not line.startswith(tag):
                if seen:
                    return  # series lines come first: the section is over
                continue
            seen = True
        row = orjson.loads(line)
        if not isinstance(row, dict):
            raise UnreadableFile("a line is not a JSON object")
        row.pop("type", None)
        yield row


# ---------------------------------------------------------------------------------------------
# Two exports


Opener = Callable[[ExportRow], Any]  # a context manager giving the stored bytes, file-like


def compare_files(
    older: ExportRow,
    newer: ExportRow,
    open_file: Opener,
    *,
    max_items: int = MAX_ITEMS,
    pending_limit: int = PENDING_IN_MEMORY,
    stop: threading.Event | None = None,
) -> Changes:
    """Blocking: read both exports' files section by section and compare them."""
    changes = Changes(max_items=max_items)
    for rank, section in enumerate(sections_of(newer.export_type)):
        with ExitStack() as files:
            streams = [
                read_rows(
                    files.enter_context(open_file(export)),
                    export.format,
                    export.compression,
                    export.export_type,
                    section.kind,
                )
                for export in (older, newer)
            ]
            diff_section(
                section,
                streams[0],
                streams[1],
                compared_keys(older, newer, section),
                changes,
                kind_rank=rank,
                pending_limit=pending_limit,
                stop=stop,
            )
    return changes


def store_opener(store: Minio, bucket: str) -> Opener:
    def _open(export: ExportRow) -> Any:
        return object_store.open_object(store, bucket, export.object_key)

    return _open


async def compare(
    store: Minio, bucket: str, older: ExportRow, newer: ExportRow, *, max_items: int = MAX_ITEMS
) -> Changes:
    """Compare two comparable exports in a thread of its own (a long CPU-bound read must hold
    none of the loop's executor threads); stops soon after the caller is cancelled."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Changes] = loop.create_future()
    stop = threading.Event()

    def _settle(result: Changes | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def _run() -> None:
        try:
            result = compare_files(
                older, newer, store_opener(store, bucket), max_items=max_items, stop=stop
            )
        except BaseException as err:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, None, err)
        else:
            loop.call_soon_threadsafe(_settle, result, None)

    threading.Thread(target=_run, name=f"changes {newer.id}", daemon=True).start()
    try:
        return await done  # cancelled with the caller; the thread then stops at its next look
    finally:
        stop.set()
