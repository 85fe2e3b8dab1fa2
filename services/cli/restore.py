"""``codex-exports catalog restore FILE --as-user NAME``: a backup export back into a catalog.

FILE is a "Backup my catalog" export (SPEC §9 example 2: type both, JSON, preset all), or the
same as JSON Lines (``.jsonl``: one row per line, tagged with its section), either of them
gzip-compressed (``.json.gz``, ``.jsonl.gz``: unpacked as it is read); the file's name says
which. It is
loaded into an EMPTY catalog (no libraries, series, books, genres, tags, collections, read lists
or sharing tags; users may exist) in one transaction, so a failure leaves the catalog empty. The
goal is exactness: exporting again with the same request, as the restored user, gives a file that
is byte-identical to FILE. How each value comes back:

- Ids are preserved: ``library_id``, ``series_id``, ``book_id`` are in the file. Libraries get
  their exported name. Genres, tags, collections and read lists get new ids (the file has only
  their names, which are unique in Codex). Rows are written the way Codex writes them
  (``shared.codex_tables`` fills ids, timestamps, normalized names).
- The export's owner becomes user NAME: their rating and notes of a series (``user_rating``,
  ``user_notes``) and their read progress of a book (``current_page``, ``completed``,
  ``completed_at``, and a ``progress_percentage`` when the page position alone does not give the
  exported ``progress``). NAME is created when missing, with role ``--role`` (reader) and an
  unusable password hash (``!``): sign in with a token (``codex-exports token NAME``) or give the
  user a password in Codex. An existing NAME is used as it is.
- ``community_avg_rating`` averages every user's rating, but the file holds only the average and
  the owner's own rating. The other ratings are recreated as the fewest whole ratings (1-100)
  that, with the owner's, give exactly the exported average under PostgreSQL's
  ``round(avg(rating), 2)``; each comes from a placeholder user ``restore-rater-0001``, … (role
  reader, unusable password). Their ratings are the only thing they hold.
- Counts and progress are not stored: they follow from the books and the read progress. The
  restore checks that every series' ``actual_book_count`` and ``unread_book_count`` come out as
  exported and refuses the file otherwise.
- Order: the file has no ``title_sort``. Series are first stored with ``title_sort`` NULL, so the
  worker orders them by title, then name, then id; when that reproduces the file's order, that is
  kept. Otherwise every ``title_sort`` is set to the series' position in the file, zero-padded
  (``0000000001``, …), the only key that reproduces an arbitrary original order under the
  worker's rule (``shared.catalog_rules.series_order``, the one the worker uses). Books
  then follow: their order is their series' order, then number, name and id, all restored.
- A missing value is stored as NULL (or ``''`` where the column is NOT NULL: a series without a
  title, a path, a file name, a book format), which the worker leaves out of a row exactly as
  before.
- What the file cannot carry is not restored: deleted books, empty collections and read lists,
  smart collections, libraries without visible series, series hidden from the owner, other users'
  progress, sharing tags and library access.

Memory: the file is parsed as a stream — one row at a time with the standard library's
``json.JSONDecoder.raw_decode`` over a 1 MiB window — and rows go to the database in batches of
``BATCH_ROWS`` with COPY, so memory stays flat whatever the size, apart from the name → id maps
of genres, tags, collections, read lists and libraries. A single row larger than 64 MiB is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from shared.catalog_rules import series_order
from shared.codex_tables import complete, insert_rows
from shared.fields import BOOKS_BY_KEY, SERIES_BY_KEY

BATCH_ROWS = 1000
UNUSABLE_PASSWORD = "!"  # noqa: S105 - not an argon2 hash: password sign-in always fails
RATER_PREFIX = "restore-rater-"
MAX_OTHER_RATERS = 2000
CATALOG_TABLES = (
    "libraries",
    "series",
    "books",
    "genres",
    "tags",
    "collections",
    "read_lists",
    "sharing_tags",
)
SERIES_REQUIRED = (
    "series_name",
    "series_id",
    "library_id",
    "created_at",
    "updated_at",
    "actual_book_count",
    "unread_book_count",
    "progress",
)
BOOKS_REQUIRED = (
    "book_name",
    "book_id",
    "series_id",
    "library_id",
    "file_size",
    "page_count",
    "created_at",
    "updated_at",
    "progress",
)
_CENT = Decimal("0.01")


class RestoreError(Exception):
    """Why the file cannot be restored, for people."""


# ---------------------------------------------------------------------------------------------
# Streaming JSON: {"series": [row, …], "books": [row, …]}

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class JsonStream:
    """Values of a JSON text read piece by piece (standard library, bounded memory)."""

    def __init__(
        self, handle: TextIO, *, chunk_chars: int = 1 << 20, max_value_chars: int = 64 << 20
    ) -> None:
        self._handle = handle
        self._chunk = chunk_chars
        self._max = max_value_chars
        self._buf = ""
        self._pos = 0
        self._offset = 0  # characters dropped before _buf
        self._eof = False

    def where(self) -> str:
        return f"character {self._offset + self._pos}"

    def _more(self) -> bool:
        if self._eof:
            return False
        data = self._handle.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._offset += self._pos
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def peek(self) -> str:
        """The next non-blank character ('' at the end) without consuming it."""
        while True:
            match = _WS.match(self._buf, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                return ""

    def take(self, char: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "the end of the file"
            raise RestoreError(f"Expected {char!r} at {self.where()}, found {shown}")
        self._pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as err:
                if len(self._buf) - self._pos > self._max:
                    raise RestoreError(
                        f"A value at {self.where()} is larger than {self._max:,} characters"
                    ) from None
                if self._more():
                    continue
                raise RestoreError(
                    f"Not valid JSON at character {self._offset + err.pos}: {err.msg}"
                ) from None
            if end == len(self._buf) and self._more():
                continue  # a number could go on in the next piece: decode again
            self._pos = end
            return value


def export_rows(
    handle: TextIO, *, chunk_chars: int = 1 << 20
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(section, n, row)`` for every row of a type-both JSON export, series first."""
    stream = JsonStream(handle, chunk_chars=chunk_chars)
    first = stream.peek()
    if first == "[":
        raise RestoreError(
            "This is a single-type export; restore needs a 'Both' JSON export with every field "
            "(codex-exports export create --type both --format json --all-libraries --preset all)"
        )
    if first != "{":
        raise RestoreError("Not a JSON export (it does not start with '{')")
    stream.take("{")
    seen: list[str] = []
    while stream.peek() != "}":
        if seen:
            stream.take(",")
        key = stream.value()
        if key not in ("series", "books") or key in seen:
            raise RestoreError(f"Unexpected key {key!r} at {stream.where()}: not a 'Both' export")
        if key == "books" and "series" not in seen:
            raise RestoreError("The books come before the series: not an export of this product")
        stream.take(":")
        stream.take("[")
        n = 0
        while stream.peek() != "]":
            if n:
                stream.take(",")
            row = stream.value()
            n += 1
            if not isinstance(row, dict):
                raise RestoreError(f"{key} row {n} is not an object")
            yield key, n, row
        stream.take("]")
        seen.append(key)
    stream.take("}")
    if stream.peek() != "":
        raise RestoreError(f"Unexpected data after the export at {stream.where()}")
    if seen != ["series", "books"]:
        raise RestoreError("The file has no 'books' part: not a 'Both' export")


MAX_LINE_CHARS = 64 << 20


def jsonl_rows(
    handle: TextIO, *, max_line_chars: int = MAX_LINE_CHARS
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(section, n, row)`` for every line of a type-both JSON Lines export, series first.

    Each line is one row object whose ``"type"`` says its section (SPEC §10); the rest of the
    object is the JSON export's row, so both backups load the same way. Read line by line.
    """
    counts = {"series": 0, "books": 0}
    line_number = 0
    while line := handle.readline(max_line_chars + 1):
        line_number += 1
        if len(line) > max_line_chars:
            raise RestoreError(f"Line {line_number} is larger than {max_line_chars:,} characters")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RestoreError(f"Line {line_number} is not valid JSON: {err.msg}") from None
        if not isinstance(row, dict):
            raise RestoreError(f"Line {line_number} is not an object")
        section = row.pop("type", None)
        if section is None:
            raise RestoreError(
                "This is a single-type export; restore needs a 'Both' export with every field "
                "(codex-exports export create --type both --format jsonl --all-libraries "
                "--preset all)"
            )
        if section not in counts:
            raise RestoreError(f"Line {line_number} has an unknown type {section!r}")
        if section == "series" and counts["books"]:
            raise RestoreError(f"Line {line_number}: a series after the books")
        counts[section] += 1
        yield section, counts[section], row
    if not line_number:
        raise RestoreError("The file is empty: not a 'Both' export")


def _is_jsonl(path: Path) -> bool:
    return path.name.removesuffix(".gz").endswith(".jsonl")


def _open_backup(path: Path) -> TextIO:
    """The backup as text: ``.gz`` files (``--gzip`` exports) are unpacked as they are read."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Values the worker derives, solved backwards


def _round2(value: Decimal) -> Decimal:
    """PostgreSQL's ``round(numeric, 2)``: half away from zero (values here are positive)."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def _decimal(value: int | float) -> Decimal:
    """The exact decimal a JSON number stands for (the shortest repr of a float)."""
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def other_ratings(
    average: int | float, own: int | None, *, limit: int = MAX_OTHER_RATERS
) -> list[int]:
    """The fewest other ratings (1-100) with ``round(avg(own + others), 2) == average``.

    Spread as evenly as possible, larger first. Raises RestoreError when no such set exists
    within ``limit`` other ratings.
    """
    target = _decimal(average)
    mine = 0 if own is None else own
    if own is not None and _round2(Decimal(own)) == target:
        return []
    for k in range(1, limit + 1):
        n = k + (0 if own is None else 1)
        low = int(((target - Decimal("0.005")) * n).to_integral_value(rounding=ROUND_FLOOR))
        high = int(((target + Decimal("0.005")) * n).to_integral_value(rounding=ROUND_CEILING))
        for total in range(max(low, mine + k), min(high, mine + 100 * k) + 1):
            if _round2(Decimal(total) / Decimal(n)) == target:
                base, extra = divmod(total - mine, k)
                return [base + 1] * extra + [base] * (k - extra)
    raise RestoreError(f"No {limit} ratings of 1-100 average to {average} with the owner's {own}")


def _float8_numeric(value: float) -> Decimal:
    """PostgreSQL's ``float8::numeric`` (15 significant digits)."""
    return Decimal(f"{value:.15g}")


def progress_percentage(progress: int | float, current_page: int, page_count: int) -> float | None:
    """``read_progress.progress_percentage`` that makes the worker compute ``progress`` again.

    None when the page position already gives it (``current_page / page_count``, or 0 for a
    book without pages) — the worker's rule for an incomplete book (SPEC §4).
    """
    wanted = _decimal(progress)
    if page_count > 0:
        page = min(max(current_page, 0), page_count)
        natural = _round2(Decimal(page) * 100 / Decimal(page_count))
    else:
        natural = Decimal(0)
    if natural == wanted:
        return None
    fraction = float(wanted / 100)
    if _round2(_float8_numeric(min(max(fraction, 0.0), 1.0) * 100)) != wanted:
        raise RestoreError(f"Cannot reproduce a book progress of {progress}")
    return fraction


# ---------------------------------------------------------------------------------------------
# Reading one row


def _need(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise RestoreError(
            f"{where} has no {', '.join(missing)}: restore needs a 'Both' JSON export with every "
            "field (--preset all)"
        )


def _uuid(row: dict[str, Any], key: str, where: str) -> UUID:
    try:
        return UUID(str(row[key]))
    except ValueError:
        raise RestoreError(f"{where}: {key} is not an id: {row[key]!r}") from None


def _time(value: Any, key: str, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise RestoreError(f"{where}: {key} is not a time: {value!r}") from None
    if moment.tzinfo is None:
        raise RestoreError(f"{where}: {key} has no time zone: {value!r}")
    return moment


def _int(value: Any, key: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RestoreError(f"{where}: {key} is not a whole number: {value!r}")
    return value


def _number(value: Any, key: str, where: str) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RestoreError(f"{where}: {key} is not a number: {value!r}")
    return value


def _names(row: dict[str, Any], key: str, where: str) -> list[str]:
    values = row.get(key) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RestoreError(f"{where}: {key} is not a list of names")
    return values


def _authors_json(row: dict[str, Any], where: str) -> str | None:
    authors = row.get("authors")
    if authors is None:
        return None
    if not isinstance(authors, list) or not all(
        isinstance(a, dict) and isinstance(a.get("name"), str) for a in authors
    ):
        raise RestoreError(f"{where}: authors is not a list of {{name, role}}")
    return json.dumps(
        [{k: a[k] for k in ("name", "role") if k in a} for a in authors], ensure_ascii=False
    )


def _unknown_keys(row: dict[str, Any], known: dict[str, Any], where: str) -> None:
    unknown = sorted(set(row) - set(known))
    if unknown:
        raise RestoreError(f"{where} has unknown fields: {', '.join(unknown)}")


# ---------------------------------------------------------------------------------------------
# Loading


class _Named:
    """A table of named things (genres, tags, collections, read lists): name → ids."""

    def __init__(self, table: str, *, unique: bool) -> None:
        self.table = table
        self.unique = unique
        self.ids: dict[str, list[UUID]] = {}
        self.wanted: dict[str, int] = {}

    def refs(self, names: list[str]) -> list[tuple[str, int]]:
        """(name, which row of that name) for one row's list; records what must exist."""
        if self.unique:
            names = list(dict.fromkeys(names))
        seen: Counter[str] = Counter()
        refs: list[tuple[str, int]] = []
        for name in names:
            index = seen[name]
            seen[name] += 1
            self.wanted[name] = max(self.wanted.get(name, 0), index + 1)
            refs.append((name, index))
        return refs

    async def flush(self, conn: asyncpg.Connection) -> None:
        missing = [
            name
            for name, count in self.wanted.items()
            for _ in range(count - len(self.ids.get(name, ())))
        ]
        if not missing:
            return
        rows = [complete(self.table, {"id": uuid4(), "name": name}) for name in missing]
        await insert_rows(conn, self.table, rows)
        for row in rows:
            self.ids.setdefault(row["name"], []).append(row["id"])

    def id(self, ref: tuple[str, int]) -> UUID:
        return self.ids[ref[0]][ref[1]]


@dataclass
class RestoreResult:
    file: str
    user: str
    user_created: bool
    libraries: int = 0
    series: int = 0
    books: int = 0
    raters: int = 0
    title_sort: str = "natural"

    def public(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "user": self.user,
            "userCreated": self.user_created,
            "libraries": self.libraries,
            "series": self.series,
            "books": self.books,
            "placeholderRaters": self.raters,
            "titleSort": self.title_sort,
        }


# The restore's own temporary table (not one of Codex's, so its columns are named here): each
# series' position in the file and the book counts the file gives it, checked after loading.
_RESTORE_SERIES = (
    "CREATE TEMP TABLE restore_series (pos bigint PRIMARY KEY, id uuid NOT NULL,"
    " actual bigint NOT NULL, unread bigint NOT NULL) ON COMMIT DROP"
)
_RESTORE_SERIES_COLUMNS = ("pos", "id", "actual", "unread")
_Position = tuple[int, UUID, int | None, int | None]


@dataclass(frozen=True)
class _Link:
    """A row of a link table (``series_genres``, …) whose named end gets its id at the flush."""

    table: str
    owner: dict[str, UUID]  # {"series_id": …} or {"book_id": …}
    column: str  # the named end's column: "genre_id", …
    named: _Named
    ref: tuple[str, int]


@dataclass
class _Batch:
    # Codex's tables: a row a dict of the columns the file gives (shared.codex_tables fills
    # the rest). A placeholder rater's rating holds the rater's number as its user_id until
    # the raters exist.
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    links: list[_Link] = field(default_factory=list)
    positions: list[_Position] = field(default_factory=list)

    def add(self, table: str, **row: Any) -> None:
        self.rows.setdefault(table, []).append(row)


@contextmanager
def _loading(table: str) -> Iterator[None]:
    """The database's refusal of a table's rows, as a RestoreError that says why."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError as err:
        detail = getattr(err, "detail", "") or ""
        raise RestoreError(f"Rows of {table} refer to something not in the file: {detail}") from err
    except asyncpg.UniqueViolationError as err:
        detail = getattr(err, "detail", "") or ""
        raise RestoreError(f"The file repeats a row of {table}: {detail}") from err
    except asyncpg.PostgresError as err:
        raise RestoreError(f"Could not load {table}: {err}") from err


class _Loader:
    def __init__(self, conn: asyncpg.Connection, user_id: UUID, result: RestoreResult) -> None:
        self.conn = conn
        self.user_id = user_id
        self.result = result
        self.genres = _Named("genres", unique=True)
        self.tags = _Named("tags", unique=True)
        self.collections = _Named("collections", unique=True)
        self.read_lists = _Named("read_lists", unique=True)
        self.libraries: dict[UUID, str] = {}
        self.new_libraries: list[tuple[UUID, str]] = []
        self.raters: list[UUID] = []
        self.raters_wanted = 0
        self.batch = _Batch()
        self.pending = 0

    # --- shared ------------------------------------------------------------------------------

    def library(self, row: dict[str, Any], where: str) -> UUID:
        library_id = _uuid(row, "library_id", where)
        name = str(row.get("library_name") or "")
        known = self.libraries.get(library_id)
        if known is None:
            self.libraries[library_id] = name
            self.new_libraries.append((library_id, name))
        elif known != name and "library_name" in row:
            raise RestoreError(
                f"{where}: library {library_id} is named both {known!r} and {name!r}"
            )
        return library_id

    async def copy(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            with _loading(table):
                await insert_rows(self.conn, table, rows)

    async def copy_positions(self, positions: list[_Position]) -> None:
        if positions:
            with _loading("restore_series"):
                await self.conn.copy_records_to_table(
                    "restore_series", records=positions, columns=_RESTORE_SERIES_COLUMNS
                )

    async def flush_libraries(self) -> None:
        if self.new_libraries:
            await insert_rows(
                self.conn,
                "libraries",
                ({"id": library_id, "name": name} for library_id, name in self.new_libraries),
            )
            self.result.libraries += len(self.new_libraries)
            self.new_libraries = []

    async def flush_links(self) -> None:
        for named in (self.genres, self.tags, self.collections, self.read_lists):
            await named.flush(self.conn)
        grouped: dict[str, list[dict[str, UUID]]] = {}
        for link in self.batch.links:
            row = {**link.owner, link.column: link.named.id(link.ref)}
            grouped.setdefault(link.table, []).append(row)
        for table, rows in grouped.items():
            try:
                await insert_rows(self.conn, table, rows)
            except asyncpg.PostgresError as err:
                raise RestoreError(f"Could not load {table}: {err}") from err

    async def ensure_raters(self) -> None:
        while len(self.raters) < self.raters_wanted:
            name = f"{RATER_PREFIX}{len(self.raters) + 1:04d}"
            rater, _ = await _ensure_user(self.conn, name, "reader")
            self.raters.append(rater)
        self.result.raters = len(self.raters)

    async def flush(self) -> None:
        batch = self.batch
        await self.flush_libraries()
        for table in ("series", "series_metadata", "books", "book_metadata"):
            await self.copy(table, batch.rows.get(table, []))
        await self.flush_links()
        await self.ensure_raters()
        ratings = [
            {**row, "user_id": self.raters[row["user_id"]]}
            if isinstance(row["user_id"], int)
            else row
            for row in batch.rows.get("user_series_ratings", [])
        ]
        for table in ("series_alternate_titles", "series_external_ratings", "read_progress"):
            await self.copy(table, batch.rows.get(table, []))
        await self.copy_positions(batch.positions)
        await self.copy("user_series_ratings", ratings)
        self.batch = _Batch()
        self.pending = 0

    async def add(self, section: str, n: int, row: dict[str, Any]) -> None:
        if section == "series":
            self.series(n, row)
            self.result.series += 1
        else:
            if self.result.books == 0 and self.pending:
                await self.flush()  # every series is in before the first book
            self.book(n, row)
            self.result.books += 1
        self.pending += 1
        if self.pending >= BATCH_ROWS:
            await self.flush()

    # --- series ------------------------------------------------------------------------------

    def series(self, n: int, row: dict[str, Any]) -> None:
        where = f"series row {n}"
        _unknown_keys(row, SERIES_BY_KEY, where)
        _need(row, SERIES_REQUIRED, where)
        batch = self.batch
        series_id = _uuid(row, "series_id", where)
        batch.add(
            "series",
            id=series_id,
            library_id=self.library(row, where),
            path=str(row.get("path") or ""),
            name=str(row["series_name"]),
            created_at=_time(row["created_at"], "created_at", where),
            updated_at=_time(row["updated_at"], "updated_at", where),
        )
        chapters = _number(row.get("expected_chapter_count"), "expected_chapter_count", where)
        batch.add(
            "series_metadata",
            series_id=series_id,
            title=str(row.get("title") or ""),  # NOT NULL; '' reads back as "no title"
            title_sort=None,  # see the module docstring
            summary=row.get("summary"),
            publisher=row.get("publisher"),
            status=row.get("status"),
            language=row.get("language"),
            year=_int(row.get("year"), "year", where),
            total_volume_count=_int(row.get("expected_book_count"), "expected_book_count", where),
            total_chapter_count=None if chapters is None else float(chapters),
            authors_json=_authors_json(row, where),
        )
        self.link(
            row,
            where,
            {"series_id": series_id},
            (self.genres, "genres", "series_genres", "genre_id"),
            (self.tags, "tags", "series_tags", "tag_id"),
            (self.collections, "collections", "collection_series", "collection_id"),
        )
        for item in row.get("alternate_titles") or []:
            batch.add(
                "series_alternate_titles",
                series_id=series_id,
                label=item["label"],
                title=item["title"],
            )
        for item in row.get("external_ratings") or []:
            if "rating" not in item:
                raise RestoreError(f"{where}: an external rating has no rating")
            rating = _number(item["rating"], "external rating", where) or 0
            batch.add(
                "series_external_ratings",
                series_id=series_id,
                source_name=item["source"],
                rating=_decimal(rating),
                vote_count=item.get("votes"),
            )
        own = _int(row.get("user_rating"), "user_rating", where)
        if own is not None:
            self.rating(self.user_id, series_id, own, row.get("user_notes"))
        elif row.get("user_notes"):
            raise RestoreError(f"{where}: user_notes without a user_rating")
        average = _number(row.get("community_avg_rating"), "community_avg_rating", where)
        if average is None and own is not None:
            raise RestoreError(f"{where}: a user_rating but no community_avg_rating")
        if average is not None:
            others = other_ratings(average, own)
            self.raters_wanted = max(self.raters_wanted, len(others))
            for i, rating in enumerate(others):
                self.rating(i, series_id, rating, None)
        batch.positions.append(
            (
                self.result.series + 1,
                series_id,
                _int(row["actual_book_count"], "actual_book_count", where),
                _int(row["unread_book_count"], "unread_book_count", where),
            )
        )

    def rating(self, user: UUID | int, series_id: UUID, rating: int, notes: Any) -> None:
        """A user_series_ratings row; ``user`` is the owner's id, or a placeholder's number."""
        self.batch.add(
            "user_series_ratings", user_id=user, series_id=series_id, rating=rating, notes=notes
        )

    def link(
        self,
        row: dict[str, Any],
        where: str,
        owner: dict[str, UUID],
        *targets: tuple[_Named, str, str, str],
    ) -> None:
        """The link rows of a series or book: (names, the row's key, link table, its column)."""
        for named, key, table, column in targets:
            for ref in named.refs(_names(row, key, where)):
                self.batch.links.append(_Link(table, owner, column, named, ref))

    # --- books -------------------------------------------------------------------------------

    def book(self, n: int, row: dict[str, Any]) -> None:
        where = f"book row {n}"
        _unknown_keys(row, BOOKS_BY_KEY, where)
        _need(row, BOOKS_REQUIRED, where)
        batch = self.batch
        book_id = _uuid(row, "book_id", where)
        title = row.get("title")
        # book_name = the title, else the file name: without a title the name IS the file name.
        file_name = str(row.get("file_name") or "") if title else str(row["book_name"])
        page_count = _int(row["page_count"], "page_count", where) or 0
        batch.add(
            "books",
            id=book_id,
            series_id=_uuid(row, "series_id", where),
            library_id=self.library(row, where),
            path=str(row.get("file_path") or ""),
            file_name=file_name,
            file_size=_int(row["file_size"], "file_size", where),
            format=row.get("book_format") or "",  # NOT NULL; '' reads back as "no format"
            page_count=page_count,
            created_at=_time(row["created_at"], "created_at", where),
            updated_at=_time(row["updated_at"], "updated_at", where),
        )
        meta_keys = ("title", "number", "summary", "publisher", "language", "year", "authors")
        if any(k in row for k in meta_keys):
            number = _number(row.get("number"), "number", where)
            batch.add(
                "book_metadata",
                book_id=book_id,
                title=title,
                number=None if number is None else _decimal(number),
                summary=row.get("summary"),
                publisher=row.get("publisher"),
                language_iso=row.get("language"),
                year=_int(row.get("year"), "year", where),
                authors_json=_authors_json(row, where),
            )
        self.link(
            row,
            where,
            {"book_id": book_id},
            (self.genres, "genres", "book_genres", "genre_id"),
            (self.tags, "tags", "book_tags", "tag_id"),
            (self.read_lists, "read_lists", "read_list_books", "read_list_id"),
        )
        progress = _number(row["progress"], "progress", where) or 0
        if "completed" in row or "current_page" in row:
            completed = bool(row.get("completed", False))
            page = _int(row.get("current_page", 0), "current_page", where) or 0
            batch.add(
                "read_progress",
                user_id=self.user_id,
                book_id=book_id,
                current_page=page,
                progress_percentage=(
                    None if completed else progress_percentage(progress, page, page_count)
                ),
                completed=completed,
                completed_at=_time(row.get("completed_at"), "completed_at", where),
            )
        elif progress != 0:
            raise RestoreError(f"{where}: a progress of {progress} without read progress")

    # --- after the last row ------------------------------------------------------------------

    async def check_counts(self) -> None:
        wrong = await self.conn.fetch(
            """
            SELECT o.pos, o.id, o.actual, o.unread, c.actual AS found, c.unread AS found_unread
            FROM restore_series o
            CROSS JOIN LATERAL (
                SELECT count(*) AS actual,
                       count(*) FILTER (WHERE rp.completed IS NOT TRUE) AS unread
                FROM books b
                LEFT JOIN read_progress rp ON rp.book_id = b.id AND rp.user_id = $1
                WHERE b.series_id = o.id AND NOT b.deleted
            ) c
            WHERE o.actual <> c.actual OR o.unread <> c.unread
            ORDER BY o.pos
            LIMIT 3
            """,
            self.user_id,
        )
        if wrong:
            first = wrong[0]
            raise RestoreError(
                f"Series {first['id']} (series row {first['pos']}) says {first['actual']} books, "
                f"{first['unread']} unread, but the file holds {first['found']} books, "
                f"{first['found_unread']} unread: the file is not a complete 'Both' export"
            )

    async def settle_order(self) -> None:
        """Keep title_sort NULL when that gives the file's order, else store the position."""
        misplaced = await self.conn.fetchval(
            f"""
            SELECT count(*) FROM (
                SELECT o.pos, row_number() OVER (ORDER BY {series_order("s", "m")}) AS rn
                FROM series s
                JOIN restore_series o ON o.id = s.id
                LEFT JOIN series_metadata m ON m.series_id = s.id
            ) x
            WHERE x.pos <> x.rn
            """  # noqa: S608 - constant SQL, no input
        )
        if misplaced:
            await self.conn.execute(
                "UPDATE series_metadata m SET title_sort = lpad(o.pos::text, 10, '0')"
                " FROM restore_series o WHERE o.id = m.series_id"
            )
            self.result.title_sort = "position"


async def _ensure_user(conn: asyncpg.Connection, username: str, role: str) -> tuple[UUID, bool]:
    found = await conn.fetchval("SELECT id FROM users WHERE username = $1", username)
    if found is not None:
        return found, False
    created = uuid4()
    await insert_rows(
        conn,
        "users",
        [{"id": created, "username": username, "password_hash": UNUSABLE_PASSWORD, "role": role}],
    )
    return created, True


async def check_empty(conn: asyncpg.Connection) -> None:
    filled: list[str] = []
    for table in CATALOG_TABLES:
        try:
            count = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - constants
        except asyncpg.UndefinedTableError:
            raise RestoreError(
                f"The database has no catalog table {table!r}: "
                "run `codex-exports migrate --catalog` first"
            ) from None
        if count:
            filled.append(f"{table}: {count:,}")
    if filled:
        raise RestoreError(
            "The catalog is not empty (" + ", ".join(filled) + "); restore only loads into an "
            "empty catalog: use a new database (`codex-exports migrate --catalog` creates one)"
        )


async def restore_file(
    conn: asyncpg.Connection, path: Path, username: str, *, role: str = "reader"
) -> RestoreResult:
    """Load the export at ``path`` into the empty catalog of ``conn`` for ``username``."""
    if not username.strip():
        raise RestoreError("--as-user needs a user name")
    try:
        handle = _open_backup(path)
    except OSError as err:
        raise RestoreError(f"Cannot read {path}: {err.strerror or err}") from err
    with handle:
        async with conn.transaction():
            await conn.execute("LOCK TABLE libraries, series, books IN EXCLUSIVE MODE")
            await check_empty(conn)
            user_id, created = await _ensure_user(conn, username, role)
            result = RestoreResult(str(path), username, created)
            await conn.execute(_RESTORE_SERIES)
            loader = _Loader(conn, user_id, result)
            try:
                rows = jsonl_rows(handle) if _is_jsonl(path) else export_rows(handle)
                for section, n, row in rows:
                    await loader.add(section, n, row)
            except UnicodeDecodeError as err:
                raise RestoreError(f"{path} is not UTF-8 text: {err}") from err
            except (gzip.BadGzipFile, EOFError, zlib.error) as err:
                raise RestoreError(f"{path} is not a complete gzip file: {err}") from err
            except (KeyError, TypeError, AttributeError) as err:
                raise RestoreError(f"A row has an unexpected shape ({err!r})") from err
            await loader.flush()
            await loader.check_counts()
            await loader.settle_order()
    return result


# ---------------------------------------------------------------------------------------------
# Command line


def _database_label(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


async def _run(args: argparse.Namespace) -> RestoreResult:
    from services.cli.devstate import apply_dev_environment
    from shared.settings import Settings

    apply_dev_environment()
    url = os.environ.get("EXPORTS_DATABASE_URL") or Settings().database_url
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as err:
        raise RestoreError(
            f"Cannot connect to the database at {_database_label(url)} ({err}): set "
            "EXPORTS_DATABASE_URL or start `codex-exports dev`"
        ) from err
    try:
        return await restore_file(conn, Path(args.file), args.as_user, role=args.role)
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(_run(args))
    except RestoreError as err:
        if args.json:
            sys.stderr.write(json.dumps({"error": "RestoreFailed", "message": str(err)}) + "\n")
        else:
            sys.stderr.write(f"error: {err}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(result.public(), indent=2) + "\n")
        return 0
    who = f"{result.user} (created; no password: `codex-exports token {result.user}` signs in)"
    if not result.user_created:
        who = f"{result.user} (existing user)"
    lines = [
        f"Restored {result.file}: {result.libraries:,} libraries, {result.series:,} series, "
        f"{result.books:,} books",
        f"Ratings and read progress belong to {who}",
    ]
    if result.raters:
        lines.append(
            f"{result.raters} placeholder users ({RATER_PREFIX}0001…) hold the other ratings, "
            "so community averages are exact"
        )
    if result.title_sort == "position":
        lines.append("Series order kept with title_sort = position in the file")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def register(sub: Any) -> None:
    """Add ``catalog restore`` to the top-level subparsers."""
    catalog = sub.add_parser("catalog", help="catalog maintenance")
    actions = catalog.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    restore = actions.add_parser(
        "restore",
        help="load a 'Both, JSON (or JSON Lines), Select all' export into an empty catalog",
        description=(
            "Load a backup export (type both, JSON or JSON Lines, --preset all; .gz too) into "
            "the empty catalog of "
            "EXPORTS_DATABASE_URL (or a running `codex-exports dev`). Exporting again as the "
            "same user gives a byte-identical file."
        ),
    )
    restore.add_argument("file", metavar="FILE")
    restore.add_argument(
        "--as-user", required=True, metavar="NAME", help="owner of the ratings and progress"
    )
    restore.add_argument(
        "--role",
        choices=("reader", "maintainer", "admin"),
        default="reader",
        help="role of NAME when it has to be created (default: reader)",
    )
    restore.add_argument("--json", action="store_true", help="print JSON for scripts")
    restore.set_defaults(handler=run)
