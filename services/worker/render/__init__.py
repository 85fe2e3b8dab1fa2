"""Rendering: catalog rows → the export file's bytes, one module per format (SPEC §5).

``RENDERERS`` maps every format of ``shared.formats`` to how it renders; a format is one module
here (``json``, ``csv``, ``markdown``, ``jsonl``, ``xlsx``, ``parquet``) and one entry in each of
the two registries. A text format's module holds both of its renderers, which write the same
bytes:

- its Python encoder (``JsonEncoder``, ``CsvEncoder``, ``MarkdownEncoder``,
  ``JsonLinesEncoder``), fed the typed rows of ``services.worker.catalog``;
- its rendering inside ``COPY`` (``COPY``, a ``copy.CopyRendering``): the SQL columns that make
  PostgreSQL write those bytes in ``COPY ... TO STDOUT``, and the framing of the stream. The
  values are rendered by named SQL functions (``exports.float_text``, ``exports.md_bullet``...,
  migration ``exports/0004_render_functions.sql``), which ``sql`` names. JSON Lines reuses
  JSON's columns and frames them per line.

The binary formats (``XlsxEncoder``, ``ParquetEncoder``) have no ``COPY`` rendering
(``Renderer.database`` is None): their libraries write them from the typed rows, on the Python
path whatever the setting. An encoder whose library writes a file on disk (XLSX) is
``encoder.Spooled``: the worker streams the file after the last row (``spool``) and removes it
however the export ends (``discard``). Compression is not a format: ``compression`` is a
stage between any encoder and the upload.

Which runs in production, and why
---------------------------------
For every text format (JSON, CSV, Markdown, JSON Lines) PostgreSQL renders by default
(``EXPORTS_RENDER_IN_DATABASE=true``): the worker only frames ``COPY``'s chunks, with no work
per row, and the section is done sooner (measured in one process on 100,000 books, every field,
written nowhere: the encoders took 2.3x the time for CSV, 1.15x for JSON, 2.1x for Markdown,
and they hold the worker's CPU where ``COPY`` leaves it to PostgreSQL). The Python encoders are
not a test oracle only, so they stay beside the SQL in each format module; they render in
production

- from the first row the database declines to the end of that section: a value it cannot
  render identically (an ``authors_json`` that orjson and jsonb read differently, a timestamp
  outside years 1 to 9999) fails the query, the transaction rolls back to a savepoint and the
  encoder goes on from the first row not written (``copy.Declined``,
  ``service._render_in_database``);
- every row, when ``EXPORTS_RENDER_IN_DATABASE=false`` (a server where the functions cannot be
  used, or to rule the database rendering out when a file is in question).

They are the reference too: ``tests/integration/worker/render/test_copy.py`` compares the two
byte for byte for every format, type and field set, with hostile values. No renderer is kept
as an oracle only.

Why named SQL functions rather than generated SQL text
------------------------------------------------------
The planner inlines them (``test_copy`` checks that no call is left in any plan), so a query
costs what the expressions cost. Measured against the generated SQL they replace: PostgreSQL's
``COPY`` alone, on 100,000 books and 2,000 series with every field (byte-identical output, 15
interleaved runs each), took the same time within 1% for books (best run, old / now: JSON 0.931
/ 0.933 s, CSV 0.725 / 0.721 s, Markdown 1.088 / 1.091 s); a section pays 1 to 3 ms once for
asyncpg quoting the owner and libraries into ``COPY`` (a prepare and a select), which is most of
the 1 to 3% on the 70 ms series sections. End to end, ``python -m bench --quick`` interleaved
with the previous code (best of 10 runs each, on a machine whose noise is about ±10%) gave the
same ratios to the ``COPY`` limit: previous / now, CSV 0.90 / 0.92, JSON 0.70 / 0.70, Markdown
0.65 / 0.65. The widest query (series, every field, Markdown) is 8,202 characters instead of
50,075. Two shapes cost speed and were changed: a JSON number as a second ``CASE`` around
``float_text`` (5% on books) and a float's Markdown presence by its rendered text;
``exports.number_text`` takes the notation as a constant the planner folds, and
``exports.finite`` tests presence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.worker.render import copy
from services.worker.render import csv as csv_format
from services.worker.render import json as json_format
from services.worker.render import jsonl as jsonl_format
from services.worker.render import markdown as markdown_format
from services.worker.render import parquet as parquet_format
from services.worker.render import xlsx as xlsx_format
from services.worker.render.encoder import Encoder, SectionKind, Spooled, Write
from shared.formats import FORMATS, ExportFormat, ExportType, FormatInfo


@dataclass(frozen=True, slots=True)
class Renderer:
    """How one format renders: its Python encoder and its rendering inside ``COPY``."""

    info: FormatInfo
    encoder: Callable[[bool], Encoder]
    """A new encoder; its argument tells whether the file holds both sections."""
    database: copy.CopyRendering | None
    """None: a binary format, written by its library from typed rows only."""


RENDERERS: Mapping[ExportFormat, Renderer] = {
    ExportFormat.JSON: Renderer(
        FORMATS[ExportFormat.JSON],
        lambda both: json_format.JsonEncoder(both=both),
        json_format.COPY,
    ),
    ExportFormat.CSV: Renderer(
        FORMATS[ExportFormat.CSV], lambda both: csv_format.CsvEncoder(), csv_format.COPY
    ),
    ExportFormat.MD: Renderer(
        FORMATS[ExportFormat.MD],
        lambda both: markdown_format.MarkdownEncoder(both=both),
        markdown_format.COPY,
    ),
    ExportFormat.JSONL: Renderer(
        FORMATS[ExportFormat.JSONL],
        lambda both: jsonl_format.JsonLinesEncoder(both=both),
        jsonl_format.COPY,
    ),
    ExportFormat.XLSX: Renderer(
        FORMATS[ExportFormat.XLSX], lambda both: xlsx_format.XlsxEncoder(both=both), None
    ),
    ExportFormat.PARQUET: Renderer(
        FORMATS[ExportFormat.PARQUET], lambda both: parquet_format.ParquetEncoder(), None
    ),
}
"""Every format's renderer (tests check that none is missing)."""


def as_format(fmt: str) -> ExportFormat:
    """``fmt`` checked to be one of the formats (ValueError otherwise)."""
    try:
        return ExportFormat(fmt)
    except ValueError:
        raise ValueError(f"Unknown export format: {fmt!r}") from None


def make_encoder(fmt: str, export_type: str) -> Encoder:
    """The encoder for ``fmt`` (a format's key) and ``export_type`` (series|books|both).

    Raises ValueError for an unknown format or type, and for ``both`` with a format that holds
    one table (CSV; the API refuses that combination before it gets here).
    """
    try:
        both = ExportType(export_type) == ExportType.BOTH
    except ValueError:
        raise ValueError(f"Unknown export type: {export_type!r}") from None
    renderer = RENDERERS[as_format(fmt)]
    if both and not renderer.info.supports_both:
        raise ValueError(f"{renderer.info.label} format is not supported for 'both' export type")
    return renderer.encoder(both)


def in_database(fmt: str) -> bool:
    """Whether ``fmt`` can be rendered by PostgreSQL (the text formats; not XLSX, Parquet)."""
    return RENDERERS[as_format(fmt)].database is not None


def plan(section: SectionKind, fields: list[str], fmt: str, labels: Mapping[str, str]) -> copy.Plan:
    """The database rendering of a section's ``fields`` in ``fmt`` (see ``copy.plan``)."""
    rendering = RENDERERS[as_format(fmt)].database
    if rendering is None:
        raise ValueError(f"The {fmt} format is not rendered by the database")
    return copy.plan(section, fields, rendering, labels)


async def spool(encoder: Encoder, write: Write) -> None:
    """The rest of the file, for an encoder whose library writes it to disk (``Spooled``)."""
    if isinstance(encoder, Spooled):
        await encoder.spool(write)


def remove_abandoned_files() -> int:
    """What encoders left on disk when a worker died mid-export (see ``xlsx.remove_abandoned``)."""
    return xlsx_format.remove_abandoned()


def discard(encoder: Encoder) -> None:
    """Remove whatever the encoder wrote on the worker's disk (always safe to call)."""
    if isinstance(encoder, Spooled):
        encoder.discard()


__all__ = [
    "RENDERERS",
    "Encoder",
    "Renderer",
    "as_format",
    "discard",
    "in_database",
    "make_encoder",
    "plan",
    "remove_abandoned_files",
    "spool",
]
