"""Estimates (SPEC §11): the rows an export would have and about how many bytes, before it runs.

Counts are exact, from the worker's own visibility CTEs (``catalog_query.COUNT_BOTH``). Bytes are
counts times what a row costs in the chosen format, measured on a sample, in three steps:

1. **Sample.** ``catalog_query.raw_query(section, fields, sample=…)``: the export's own columns
   (the same joins and values as the file) over at most :data:`SAMPLE_SERIES` visible series and
   :data:`SAMPLE_BOOKS` of their books, picked by a hash of their ids — spread over the whole
   scope, and the same rows every time, so the figure does not jitter as choices go back and
   forth. A catalog smaller than the sample is measured whole.
2. **Measures.** Per field, format-neutral sums over the sample (:class:`FieldStats`): how many
   values are present, the bytes of their JSON text, of their plain text (multi-values joined by
   a two-byte separator, which "; " and ", " both are), and what CSV quoting and Markdown
   escaping add. They are computed in SQL with the value rules' own functions
   (``exports.json_string``, ``exports.json_number``, ``exports.float_text``,
   ``exports.author_json``… in migration ``exports/0004``), except where those would refuse a
   value (``exports.declined``): timestamps are counted by their fixed widths and
   ``authors_json`` is read only when PostgreSQL can parse it. No value leaves the database.
3. **Models.** A :class:`SizeModel` per format (:data:`SIZE_MODELS`) turns one section's
   averages and row count into bytes: the format's framing, per row, per present field (keys,
   labels, separators) and which measure its values take.

Adding a format adds its entry to :data:`SIZE_MODELS` (a unit test checks every format has
one): a :class:`SizeModel`, or ``None`` with its reason in :data:`NO_MODEL`, and then its
estimate has exact counts and ``bytes: null``. Where things stand:

- JSON Lines (:class:`JsonLinesSize`) is a model over the same measures: a row is the JSON row
  object plus ``\\n``, and for ``both`` a leading ``"type":"series",`` / ``"type":"books",``.
- XLSX and Parquet have ``bytes: null``. Their size is what their writer does per value: XLSX
  is per-cell XML (its tags, the shared-strings table, number formats) then deflate, Parquet
  typed column encodings, dictionaries and compression per row group. A faithful figure comes
  from writing the sample with the real writer (the worker's: neither the api nor shared/ may
  import it) and scaling by the row count, or from a per-format ratio over the text measures,
  calibrated on real catalogs and stated here; neither is built yet, and a figure that is not
  within ±25% is not given.
- ``compression: gzip`` has ``bytes: null`` for every format (:data:`NO_MODEL_COMPRESSED`);
  the uncompressed size is never given for a compressed export, it would be off by the whole
  ratio. Tried (branch ``estimates``, commit b9bde44, reverted): the measure query returned
  the sample's rows rendered as the file's text, deflated at the worker's level 6 in the api,
  and the uncompressed estimate scaled by that ratio. On the demo catalog (measured whole) it
  was within 0.82-1.14 of the real file for every text format x type x preset; on the 100k
  synthetic catalog within 0.84-0.99 for json both llm, csv books all, md series all, but
  6.9x for jsonl books title (the real file deflates to 0.6%: neighbouring rows repeat, which
  a sample spread by hash over the catalog loses). A sound figure needs a sample of
  *contiguous* runs of rows in the file's order (a few blocks of consecutive series with their
  books), deflated per block; not built yet.

The estimate's cost is bounded: the counts scan the scope once (as the export's own count
does), the sample is at most a few thousand rows, and the caller runs both under a
``statement_timeout`` (``services/api/estimate.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, assert_never

import asyncpg

from shared.catalog_query import COUNT_BOTH, Kind, RawColumn, Scope, args, raw_query
from shared.fields import BOOK_FIELDS, SERIES_FIELDS, Field
from shared.formats import Compression, ExportFormat, ExportType

SectionKind = Literal["series", "books"]

SAMPLE_SERIES = 400
"""At most this many series are measured (and their books, up to :data:`SAMPLE_BOOKS`)."""
SAMPLE_BOOKS = 2000
"""At most this many books are measured."""


@dataclass(frozen=True, slots=True)
class FieldStats:
    """One field's sums over a section's sample (absent values count zero everywhere)."""

    field: Field
    present: int  # values present (a row has the field)
    json: int  # bytes of their JSON text (strings quoted and escaped, arrays as JSON)
    text: int  # bytes of their text (CSV, Markdown: items joined by a 2-byte separator)
    csv_extra: int  # what CSV adds: quotes around values that need them, doubled quotes, guard
    md_extra: int  # what Markdown adds: "<" as "&lt;", two spaces per continuation line


@dataclass(frozen=True, slots=True)
class SectionStats:
    """A section as a model sees it: its exact row count and its sample's measures."""

    kind: SectionKind
    rows: int  # rows in the export (exact)
    sampled: int  # rows measured
    with_values: int  # measured rows with at least one field besides the anchor
    fields: tuple[FieldStats, ...]  # anchor first, then catalog order

    def average(self, total: int) -> float:
        """A per-row average of a sum over the sample."""
        return total / self.sampled if self.sampled else 0.0


class SizeModel(Protocol):
    """How many bytes a file of one format takes, from its sections' stats."""

    def file_bytes(self, sections: Sequence[SectionStats], both: bool) -> float:
        """The whole file: every section, with the format's framing."""
        ...


def _key_bytes(field: Field) -> int:
    return len(field.key.encode("utf-8"))


def _label_bytes(field: Field) -> int:
    return len(field.label.encode("utf-8"))


class JsonSize:
    """``[`` rows as ``{"key":value,...}`` one per line, ``,\\n`` between them ``]``; for
    ``both`` an object of two such arrays (``services/worker/render/json.py``)."""

    def file_bytes(self, sections: Sequence[SectionStats], both: bool) -> float:
        total = 0.0
        for index, section in enumerate(sections):
            # '"series": [' (and ",\n" before the second), or "["; then "\n]" (or "]" empty).
            opening = len(f'"{section.kind}": [') + (2 if index else 0) if both else 1
            total += opening + (2 if section.rows else 0) + section.rows * self.row_bytes(section)
        return total + (len("{\n") + len("\n}\n") if both else 1)

    def row_bytes(self, section: SectionStats) -> float:
        # "\n" or ",\n" before the row, its braces, then per present field '"key":' and a comma
        # (one comma fewer than fields), and its value's JSON.
        row = 2.0 + 2.0 - 1.0
        for stats in section.fields:
            row += section.average(stats.present) * (_key_bytes(stats.field) + 4)
            row += section.average(stats.json)
        return row


class JsonLinesSize:
    """One row object per line, ``{"key":value,...}\\n``, nothing around them; for ``both``
    each object opens with ``"type":"series",`` or ``"type":"books",``
    (``services/worker/render/jsonl.py``). Exact over the measures, as :class:`JsonSize` is."""

    def file_bytes(self, sections: Sequence[SectionStats], both: bool) -> float:
        return sum(section.rows * self.row_bytes(section, both) for section in sections)

    def row_bytes(self, section: SectionStats, both: bool) -> float:
        # Its braces and "\n", per present field '"key":' and a comma (one fewer than fields),
        # and its value's JSON; for both the type key and its comma.
        row = 2.0 + 1.0 - 1.0 + (len(f'"type":"{section.kind}",') if both else 0)
        for stats in section.fields:
            row += section.average(stats.present) * (_key_bytes(stats.field) + 4)
            row += section.average(stats.json)
        return row


class CsvSize:
    """A header row of keys, then one record per row, CRLF after each (``render/csv.py``)."""

    def file_bytes(self, sections: Sequence[SectionStats], both: bool) -> float:
        total = 0.0
        for section in sections:
            keys = [stats.field for stats in section.fields]
            total += sum(_key_bytes(f) for f in keys) + len(keys) - 1 + 2
            # Every cell is written, present or not: commas between them, CRLF after.
            row = len(keys) - 1 + 2.0
            for stats in section.fields:
                row += section.average(stats.text) + section.average(stats.csv_extra)
            total += section.rows * row
        return total


class MarkdownSize:
    """``## <anchor>``, a blank line, ``- **Label:** value`` bullets per row, a blank line
    between rows; for ``both`` a ``# Series`` and a ``# Books`` part (``render/markdown.py``)."""

    def file_bytes(self, sections: Sequence[SectionStats], both: bool) -> float:
        total = 0.0
        for section in sections:
            title = "Series" if section.kind == "series" else "Books"
            total += (len(f"# {title}\n") + 1) if both else 0  # the part's heading, a blank
            if not section.rows:
                total += len(f"_No {title.lower()}._\n") + 1
                continue
            anchor, *bullets = section.fields
            # "## " heading "\n", the blank line when there are bullets, "\n" between rows.
            row = 3 + section.average(anchor.text) + 1 + 1
            row += section.average(section.with_values)
            for stats in bullets:
                row += section.average(stats.present) * (
                    len("- **:** \n") + _label_bytes(stats.field)
                )
                row += section.average(stats.text) + section.average(stats.md_extra)
            total += section.rows * row
        return max(0.0, total - 1)  # no separator before the first block


NO_MODEL_BINARY = (
    "a binary format: its size is what its writer (the worker's) makes of each value, which "
    "neither the api nor shared/ may run; no per-format ratio over the text measures has been "
    "calibrated to within ±25% yet"
)

SIZE_MODELS: Mapping[ExportFormat, SizeModel | None] = {
    ExportFormat.JSON: JsonSize(),
    ExportFormat.CSV: CsvSize(),
    ExportFormat.MD: MarkdownSize(),
    ExportFormat.JSONL: JsonLinesSize(),
    ExportFormat.XLSX: None,
    ExportFormat.PARQUET: None,
}
"""Every format's size model, or ``None`` where no sound one exists yet (:data:`NO_MODEL`
says why); tests check that no format is missing."""

NO_MODEL: Mapping[ExportFormat, str] = {
    ExportFormat.XLSX: NO_MODEL_BINARY,
    ExportFormat.PARQUET: NO_MODEL_BINARY,
}
"""Why a format's estimate has ``bytes: null``."""

NO_MODEL_COMPRESSED = (
    "the compressed size depends on how repetitive the file's neighbouring rows are, which a "
    "sample spread over the catalog does not show (deflating it was tried: within 0.82-1.14 on "
    "the demo catalog, but 6.9x the real file for a 100k-book titles-only export)"
)
"""Why a compressed export's estimate has ``bytes: null`` (whatever its format)."""


# ---------------------------------------------------------------------------------------------
# Measures in SQL

_SEPARATOR = "'; '"  # two bytes, as CSV's "; " and Markdown's ", " are

# authors_json as jsonb when PostgreSQL can read it as an array (never raising), else NULL.
_AUTHORS = (
    "CASE WHEN pg_input_is_valid({v}, 'jsonb') THEN"
    " CASE WHEN jsonb_typeof(({v})::jsonb) = 'array' THEN ({v})::jsonb END END"
)


def _texts(kind: Kind, values: Sequence[str]) -> tuple[str, str]:
    """(the value's JSON text, its plain text) as SQL, NULL when the value is absent.

    Where a rule's function could refuse a value (``exports.declined``), a text of the same
    length stands in: timestamps are 20 characters, 27 with microseconds.
    """
    v = values[0]
    match kind:
        case "text":
            return f"exports.json_string({v})", v
        case "id":
            return f"'\"' || {v} || '\"'", v
        case "int":
            return f"({v})::text", f"({v})::text"
        case "float":
            return f"exports.json_number({v})", f"exports.float_text({v})"
        case "bool":
            text = f"CASE WHEN {v} THEN 'true' WHEN NOT {v} THEN 'false' END"
            return text, text
        case "time":
            width = f"CASE WHEN {v} = date_trunc('second', {v}) THEN 20 ELSE 27 END"
            return f"repeat('0', {width} + 2)", f"repeat('0', {width})"
        case "names":
            return f"array_to_json({v})::text", f"array_to_string({v}, {_SEPARATOR})"
        case "authors":
            elements = f"jsonb_array_elements({_AUTHORS.format(v=v)}) e(a)"
            return (
                f"(SELECT '[' || string_agg(exports.author_json(e.a), ',') || ']'"
                f" FROM {elements} WHERE exports.is_author(e.a))",
                f"(SELECT string_agg(exports.author_text(e.a), {_SEPARATOR})"
                f" FROM {elements} WHERE exports.is_author(e.a))",
            )
        case "alternate_titles":
            both = ", ".join(values)
            return (
                f"(SELECT x FROM exports.alternate_titles_as_json({both}) x)",
                f"(SELECT x FROM exports.alternate_titles_as_text({both}, {_SEPARATOR}) x)",
            )
        case "external_ratings":
            all_three = ", ".join(values)
            return (
                f"(SELECT x FROM exports.external_ratings_as_json({all_three}) x)",
                f"(SELECT x FROM exports.external_ratings_as_text({all_three}, {_SEPARATOR}) x)",
            )
        case _:
            assert_never(kind)


_TEXT_KINDS = frozenset({"text", "names", "authors", "alternate_titles", "external_ratings"})


_QUOTE, _LESS_THAN, _NEWLINE = "'\"'", "'<'", "E'\\n'"


def _count(text: str, literal: str) -> str:
    """How many times the one-character SQL ``literal`` occurs in ``text``."""
    return f"(length({text}) - length(replace({text}, {literal}, '')))"


def _csv_extra(kind: Kind, t: str) -> str:
    """Quotes around a cell holding a quote, comma, CR or LF, its quotes doubled, and the
    formula guard's apostrophe (text only: ``-2`` stays a number)."""
    if kind not in _TEXT_KINDS:
        return "0"
    quotes = _count(t, _QUOTE)
    quoted = f"CASE WHEN {t} ~ '[\",\\r\\n]' THEN 2 + {quotes} ELSE 0 END"
    guard = f"CASE WHEN ascii({t}) IN (61, 43, 45, 64, 9, 13) THEN 1 ELSE 0 END"
    return f"{quoted} + {guard}"


def _md_extra(kind: Kind, t: str, values: Sequence[str]) -> str:
    """``<`` written as ``&lt;``, two spaces before each continuation line; ``Yes``/``No``
    where the text is ``true``/``false``."""
    if kind == "bool":
        return f"CASE WHEN {values[0]} THEN -1 WHEN NOT {values[0]} THEN -3 ELSE 0 END"
    if kind not in _TEXT_KINDS:
        return "0"
    return f"3 * {_count(t, _LESS_THAN)} + 2 * {_count(t, _NEWLINE)}"


@dataclass(frozen=True, slots=True)
class _Measured:
    sql: str
    fields: tuple[Field, ...]


def measure_query(kind: SectionKind, fields: list[str]) -> _Measured:
    """One statement: the sums of :class:`FieldStats` for every column of a sample of the
    section ($1 = owner, $2 = libraries), plus the sample's size and its rows with values."""
    raw = raw_query(kind, fields, sample=(SAMPLE_SERIES, SAMPLE_BOOKS))
    catalog = SERIES_FIELDS if kind == "series" else BOOK_FIELDS
    by_key = {f.key: f for f in catalog}
    laterals: list[str] = []
    sums = ["count(*) AS n"]
    presence: list[str] = []
    column: RawColumn
    for i, column in enumerate(raw.columns):
        values = tuple(f"t.{name}" for name in column.names)
        json, text = _texts(column.kind, values)
        laterals.append(f"CROSS JOIN LATERAL (SELECT {json} AS j, {text} AS t) f{i}")
        f = f"f{i}"
        sums += [
            f"count({f}.j) AS p{i}",
            f"coalesce(sum(octet_length({f}.j)), 0) AS j{i}",
            f"coalesce(sum(octet_length({f}.t)), 0) AS t{i}",
            f"coalesce(sum({_csv_extra(column.kind, f + '.t')}), 0) AS q{i}",
            f"coalesce(sum({_md_extra(column.kind, f + '.t', values)}), 0) AS m{i}",
        ]
        if i:
            presence.append(f"{f}.j")
    with_values = (
        f"count(*) FILTER (WHERE num_nonnulls({', '.join(presence)}) > 0)" if presence else "0"
    )
    sums.append(f"{with_values} AS w")
    sql = "SELECT " + ",\n    ".join(sums) + f"\nFROM (\n{raw.sql}\n) t\n" + "\n".join(laterals)
    return _Measured(sql, tuple(by_key[c.key] for c in raw.columns))


async def _section(
    conn: asyncpg.Connection, scope: Scope, kind: SectionKind, fields: list[str], rows: int
) -> SectionStats:
    measured = measure_query(kind, fields)
    if rows == 0:
        zero = tuple(FieldStats(f, 0, 0, 0, 0, 0) for f in measured.fields)
        return SectionStats(kind, 0, 0, 0, zero)
    record = await conn.fetchrow(measured.sql, *args(scope))
    stats = tuple(
        FieldStats(
            field,
            int(record[f"p{i}"]),
            int(record[f"j{i}"]),
            int(record[f"t{i}"]),
            int(record[f"q{i}"]),
            int(record[f"m{i}"]),
        )
        for i, field in enumerate(measured.fields)
    )
    return SectionStats(kind, rows, int(record["n"]), int(record["w"]), stats)


@dataclass(frozen=True, slots=True)
class Estimate:
    series: int
    books: int
    bytes: int | None  # None: no sound size model yet (NO_MODEL, NO_MODEL_COMPRESSED)


async def estimate(
    conn: asyncpg.Connection,
    scope: Scope,
    fmt: ExportFormat,
    export_type: ExportType,
    fields: list[str],
    book_fields: list[str],
    compression: Compression = Compression.NONE,
) -> Estimate:
    """The counts of the export's sections (exact; a type's other section is 0) and its size.

    Run it inside one transaction (a snapshot, and the caller's ``statement_timeout``).
    ``fields`` and ``book_fields`` are field keys (ValueError for an unknown one).
    """
    counts = await conn.fetchrow(COUNT_BOTH, *args(scope))
    wanted: list[tuple[SectionKind, list[str], int]] = []
    series = int(counts["series"]) if export_type != ExportType.BOOKS else 0
    books = int(counts["books"]) if export_type != ExportType.SERIES else 0
    if export_type != ExportType.BOOKS:
        wanted.append(("series", fields, series))
    if export_type != ExportType.SERIES:
        wanted.append(("books", book_fields, books))
    model = SIZE_MODELS.get(fmt)
    if model is None or compression != Compression.NONE:
        return Estimate(series, books, None)
    sections = [await _section(conn, scope, kind, keys, rows) for kind, keys, rows in wanted]
    size = model.file_bytes(sections, export_type == ExportType.BOTH)
    return Estimate(series, books, max(0, round(size)))
