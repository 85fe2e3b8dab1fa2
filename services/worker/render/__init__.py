"""Rendering: catalog rows → the export file's bytes, one module per format (SPEC §5).

``RENDERERS`` maps every format of ``shared.formats`` to how it renders; a format is one module
here (``json``, ``csv``, ``markdown``) and one entry there, nowhere else. Each format module
holds both of its renderers, which write the same bytes:

- its Python encoder (``JsonEncoder``, ``CsvEncoder``, ``MarkdownEncoder``), fed the typed rows
  of ``services.worker.catalog``;
- its database rendering (``COPY``): the SQL columns that make PostgreSQL write those bytes
  inside ``COPY ... TO STDOUT``, and the framing of the stream (``copy``). The values are
  rendered by named SQL functions (``shared/migrations/exports/0004_render_functions.sql``),
  named here by ``sql``.

Which runs in production, and why. For every format (JSON, CSV, Markdown) the database renders
by default (``EXPORTS_RENDER_IN_DATABASE=true``): it is several times faster per row than Python
(on 1,000,000 books CSV reaches 0.96 of ``COPY``'s own speed, JSON 0.78, Markdown 0.70) and
keeps the worker's memory flat. The Python encoders are not a test oracle only, so they stay
beside the SQL in each format module: they render in production

- from the first row the database declines (a value it cannot render identically: an
  ``authors_json`` that orjson and jsonb read differently, a timestamp outside years 1 to 9999),
  to the end of that section (``copy.Declined``, ``service._render_in_database``);
- every row, when ``EXPORTS_RENDER_IN_DATABASE=false`` (a server where the functions cannot be
  used, or to rule the database renderer out when investigating a file).

They are also the reference: ``tests/worker/render`` compares the two byte for byte for every
format, type and field set, on hostile values too. Nothing is kept only as a test oracle.

Why SQL functions and not generated SQL text: they are inlined by the planner, so the rendering
query costs what the generated expressions cost — ``make bench-quick`` measured the same ratios
before and after, within noise — while the query text of the widest export (series, every
field, Markdown) shrinks from about 50,000 to a few thousand characters, and each rule is a
function a reader can find by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.worker.render import copy
from services.worker.render import csv as csv_format
from services.worker.render import json as json_format
from services.worker.render import markdown as markdown_format
from services.worker.render.encoder import Encoder, SectionKind
from shared.formats import FORMATS, ExportFormat, ExportType, FormatInfo


@dataclass(frozen=True, slots=True)
class Renderer:
    """How one format renders: its Python encoder and its rendering inside ``COPY``."""

    info: FormatInfo
    encoder: Callable[[bool], Encoder]
    """A new encoder; its argument tells whether the file holds both sections."""
    database: copy.CopyRendering


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
}
"""Every format's renderer (tests check that none is missing)."""


def as_format(fmt: str) -> ExportFormat:
    """``fmt`` checked to be one of the formats (ValueError otherwise)."""
    try:
        return ExportFormat(fmt)
    except ValueError:
        raise ValueError(f"Unknown export format: {fmt!r}") from None


def make_encoder(fmt: str, export_type: str) -> Encoder:
    """The encoder for ``fmt`` (json|csv|md) and ``export_type`` (series|books|both).

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


def plan(section: SectionKind, fields: list[str], fmt: str, labels: Mapping[str, str]) -> copy.Plan:
    """The database rendering of a section's ``fields`` in ``fmt`` (see ``copy.plan``)."""
    return copy.plan(section, fields, RENDERERS[as_format(fmt)].database, labels)


__all__ = ["RENDERERS", "Encoder", "Renderer", "as_format", "make_encoder", "plan"]
