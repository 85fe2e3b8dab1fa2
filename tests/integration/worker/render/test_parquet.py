"""The Parquet format (``services.worker.render.parquet``) read back with pyarrow: the schema
whatever the rows, row groups as rows stream, the bytes."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.worker.render import make_encoder, parquet
from shared.fields import ALL_BOOKS, BOOK_FIELDS, columns
from tests.services.worker.render.samples import (
    BOOK_COLUMNS,
    BOOKS_ONLY,
    Sections,
    export_file,
)

# Encoder tests beside the fixture catalog's full exports, read from real PostgreSQL.
pytestmark = pytest.mark.integration


async def test_books_values_and_types() -> None:
    table = pq.read_table(io.BytesIO(await export_file("parquet", "books", BOOKS_ONLY)))
    assert table.schema == pa.schema(
        [
            ("book_name", pa.string()),
            ("number", pa.float64()),
            ("completed", pa.bool_()),
            ("completed_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    rows = table.to_pylist()
    assert [r["number"] for r in rows] == [1.5, 2.0]
    assert [r["completed"] for r in rows] == [True, False]
    assert rows[1]["completed_at"] is None
    assert rows[0]["completed_at"].isoformat() == "2024-04-01T08:00:00.500000+00:00"


async def test_an_empty_export_has_the_full_schema() -> None:
    cols = columns(ALL_BOOKS, BOOK_FIELDS)
    table = pq.read_table(io.BytesIO(await export_file("parquet", "books", [("books", cols, [])])))
    assert table.num_rows == 0
    assert table.schema.names == [c.key for c in cols]
    assert table.schema.field("authors").type == pa.list_(parquet.AUTHOR)


def test_row_groups_are_written_as_rows_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 3)
    encoder = make_encoder("parquet", "books")
    out = [encoder.start(), encoder.start_section("books", BOOK_COLUMNS)]
    sizes = []
    for n in range(10):
        chunk = encoder.row({"book_name": f"Vol {n}", "number": n})
        sizes.append(len(chunk))
        out.append(chunk)
    out += [encoder.end_section(), encoder.end()]
    # Bytes leave at every third row: one row group each, nothing held back.
    assert [i for i, size in enumerate(sizes) if size] == [2, 5, 8]
    metadata = pq.read_metadata(io.BytesIO(b"".join(out)))
    assert metadata.num_row_groups == 4
    assert [metadata.row_group(i).num_rows for i in range(4)] == [3, 3, 3, 1]


async def test_the_bytes_are_fixed_by_the_rows(fixture_sections: dict[str, Sections]) -> None:
    for kind in ("series", "books"):
        sections = fixture_sections[kind]
        first = await export_file("parquet", kind, sections)
        assert first == await export_file("parquet", kind, sections)
        assert pq.read_table(io.BytesIO(first)).num_rows == len(sections[0][2])
        assert pq.read_metadata(io.BytesIO(first)).created_by.startswith("parquet-cpp-arrow")
