"""XLSX and Parquet read back by independent readers (openpyxl, pyarrow) hold the values of the
JSON export of the same request: every type x field set (all, LLM preset, anchor only, each
field alone) for every fixture user, on the fixture catalog and on its hostile copy, rendered
through ``service._render`` as the worker renders them."""

from __future__ import annotations

import json
import math
from typing import Any

import asyncpg
import pyarrow as pa
import pytest

from services.worker import catalog as worker_catalog
from shared.fields import BOOK_FIELDS, SERIES_FIELDS, columns
from tests.integration.worker.render.readers import (
    expected_parquet_value,
    expected_xlsx_cell,
    read_parquet,
    read_xlsx,
    same_number,
    same_time,
    xlsx_cell,
)
from tests.integration.worker.render.test_copy import (
    F,
    _export,
    _field_sets,
    _render,
    catalogs,
)

pytestmark = pytest.mark.integration
__all__ = ["catalogs"]  # the module-scoped fixture: both catalogs, built once for this module

CATALOGS = {"series": SERIES_FIELDS, "books": BOOK_FIELDS}
KINDS = {kind: worker_catalog.field_kinds(kind) for kind in ("series", "books")}  # type: ignore[arg-type]


def _json_sections(document: Any, export_type: str) -> dict[str, list[dict[str, Any]]]:
    return document if export_type == "both" else {export_type: document}


def _check_xlsx(
    data: bytes, document: dict[str, list[dict[str, Any]]], keys: dict[str, list[str]]
) -> int:
    sheets = read_xlsx(data)
    assert list(sheets) == [{"series": "Series", "books": "Books"}[k] for k in document]
    compared = 0
    for kind, rows in document.items():
        header, body = sheets["Series" if kind == "series" else "Books"]
        cols = columns(keys[kind], CATALOGS[kind])
        assert header == [c.label for c in cols]
        assert len(body) == len(rows)
        for got_row, json_row in zip(body, rows, strict=True):
            for col, got in zip(cols, got_row, strict=True):
                kind_of = KINDS[kind][col.key]
                want = expected_xlsx_cell(json_row.get(col.key), kind_of == "time")
                got = xlsx_cell(got)
                if kind_of in ("int", "float") and want is not None:
                    assert same_number(got, want), (col.key, got, want)
                elif kind_of == "time" and not isinstance(want, str | None):
                    assert same_time(got, want), (col.key, got, want)
                else:
                    assert got == want, (col.key, got, want)
                    assert type(got) is type(want), (col.key, got, want)
                compared += 1
    return compared


def _check_parquet(data: bytes, rows: list[dict[str, Any]], kind: str, keys: list[str]) -> int:
    schema, got_rows = read_parquet(data)
    cols = columns(keys, CATALOGS[kind])
    assert schema.names == [c.key for c in cols]
    assert len(got_rows) == len(rows)
    for got, json_row in zip(got_rows, rows, strict=True):
        for col in cols:
            kind_of = KINDS[kind][col.key]
            want = expected_parquet_value(
                json_row.get(col.key), kind_of == "float", kind_of == "time"
            )
            value = got[col.key]
            if isinstance(want, float) and math.isnan(want):
                raise AssertionError("JSON has no NaN")
            assert value == want, (col.key, value, want)
    return len(got_rows) * len(cols)


@pytest.mark.parametrize("catalog", ["fixture", "hostile"])
@pytest.mark.parametrize("export_type", ["series", "books", "both"])
async def test_xlsx_holds_the_json_export_values(
    catalogs: dict[str, asyncpg.Pool], catalog: str, export_type: str
) -> None:
    pool = catalogs[catalog]
    compared = 0
    for user in F.users:
        for fields, book_fields in _field_sets(export_type):
            json_bytes = await _render(
                pool, _export(user, "json", export_type, fields, book_fields), "python"
            )
            document = _json_sections(json.loads(json_bytes), export_type)
            xlsx = await _render(
                pool, _export(user, "xlsx", export_type, fields, book_fields), "python"
            )
            keys = {"series": list(fields), "books": list(book_fields)}
            compared += _check_xlsx(xlsx, document, keys)
    assert compared > 500


@pytest.mark.parametrize("catalog", ["fixture", "hostile"])
@pytest.mark.parametrize("kind", ["series", "books"])
async def test_parquet_holds_the_json_export_values(
    catalogs: dict[str, asyncpg.Pool], catalog: str, kind: str
) -> None:
    pool = catalogs[catalog]
    compared = 0
    for user in F.users:
        for fields, book_fields in _field_sets(kind):
            json_bytes = await _render(
                pool, _export(user, "json", kind, fields, book_fields), "python"
            )
            parquet = await _render(
                pool, _export(user, "parquet", kind, fields, book_fields), "python"
            )
            keys = list(fields) if kind == "series" else list(book_fields)
            compared += _check_parquet(parquet, json.loads(json_bytes), kind, keys)
    assert compared > 500


@pytest.mark.parametrize("kind", ["series", "books"])
async def test_parquet_columns_are_typed_by_field(
    catalogs: dict[str, asyncpg.Pool], kind: str
) -> None:
    fields = [f.key for f in CATALOGS[kind] if not f.is_anchor]
    export = _export(
        "alice",
        "parquet",
        kind,
        fields if kind == "series" else (),
        fields if kind == "books" else (),
    )
    schema, _ = read_parquet(await _render(catalogs["fixture"], export, "python"))
    types = {field.name: field.type for field in schema}
    timestamp = pa.timestamp("us", tz="UTC")
    if kind == "series":
        assert types["series_name"] == pa.string()
        assert types["year"] == pa.int64()
        assert types["progress"] == pa.float64()
        assert types["created_at"] == timestamp
        assert types["genres"] == pa.list_(pa.string())
        assert types["authors"] == pa.list_(
            pa.struct([("name", pa.string()), ("role", pa.string())])
        )
        assert types["alternate_titles"] == pa.list_(
            pa.struct([("label", pa.string()), ("title", pa.string())])
        )
        assert types["external_ratings"] == pa.list_(
            pa.struct([("source", pa.string()), ("rating", pa.float64()), ("votes", pa.int64())])
        )
    else:
        assert types["file_size"] == pa.int64()
        assert types["number"] == pa.float64()
        assert types["completed"] == pa.bool_()
        assert types["completed_at"] == timestamp
        assert types["read_lists"] == pa.list_(pa.string())


@pytest.mark.parametrize(
    ("fmt", "export_type"), [("xlsx", "both"), ("parquet", "books"), ("parquet", "series")]
)
async def test_two_runs_are_byte_identical(
    catalogs: dict[str, asyncpg.Pool], fmt: str, export_type: str
) -> None:
    from shared.fields import ALL_BOOKS, ALL_SERIES

    export = _export("alice", fmt, export_type, ALL_SERIES, ALL_BOOKS)
    first = await _render(catalogs["hostile"], export, "python")
    assert first == await _render(catalogs["hostile"], export, "python")


async def test_a_stopped_xlsx_export_leaves_no_scratch_files(
    catalogs: dict[str, asyncpg.Pool],
) -> None:
    """A cancel while rows are written, and a failure while the file streams: the scratch
    directory goes both times."""
    import tempfile
    from pathlib import Path

    from services.worker import service
    from shared.fields import ALL_BOOKS, ALL_SERIES
    from shared.settings import Settings

    def scratch() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("codex-export-xlsx-*"))

    class Stop(Exception):
        pass

    before = scratch()
    export = _export("alice", "xlsx", "both", ALL_SERIES, ALL_BOOKS)
    ctx = service.WorkerContext(Settings(batch_rows=2), catalogs["fixture"], None, None, "t")  # type: ignore[arg-type]
    progress = service.Progress()
    seen: list[set[Path]] = []

    async def cancel_at_once(data: bytes) -> None:
        seen.append(scratch() - before)
        progress.halt(Stop)  # type: ignore[arg-type]

    with pytest.raises(Stop):
        await service._render(ctx, export, progress, cancel_at_once)
    assert seen and seen[0]  # the workbook was being written on disk
    assert scratch() == before

    async def fail_while_streaming(data: bytes) -> None:
        if data.startswith(b"PK"):
            raise OSError("the object store went away")

    with pytest.raises(OSError, match="went away"):
        await service._render(ctx, export, service.Progress(), fail_while_streaming)
    assert scratch() == before
