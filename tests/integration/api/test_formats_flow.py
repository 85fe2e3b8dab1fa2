"""Every format and compression end to end (SPEC §10): the real api and worker on the demo
catalog, the file downloaded as a client gets it, twice, byte-identical."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import uuid
from typing import Any

import pytest

from shared.formats import COMPRESSIONS, FORMATS, Compression, ExportFormat
from tests.conftest import library_ids_by_name, new_user
from tests.system import System, export_and_download

pytestmark = pytest.mark.integration
URL = "/api/v1/user/exports/series"


def _body(fmt: str, libraries: list[str], compression: str | None) -> dict[str, Any]:
    # Both where the format holds it (the widest file), else books: every field.
    both = FORMATS[ExportFormat(fmt)].supports_both
    body: dict[str, Any] = {
        "format": fmt,
        "exportType": "both" if both else "books",
        "libraryIds": libraries,
        "preset": "all",
    }
    if compression is not None:
        body["compression"] = compression
    return body


@pytest.mark.parametrize("compression", [c.value for c in COMPRESSIONS])
@pytest.mark.parametrize("fmt", [f.value for f in FORMATS])
async def test_every_format_and_compression_is_deterministic_and_served_as_stored(
    demo_system: System, demo_database: str, fmt: str, compression: str
) -> None:
    owner = await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    info = FORMATS[ExportFormat(fmt)]
    gzipped = compression == Compression.GZIP
    with demo_system.client(owner) as client:
        first, stored = export_and_download(client, _body(fmt, libraries, compression))
        second, again = export_and_download(client, _body(fmt, libraries, compression))
    assert stored.content == again.content, "two runs of the same request differ"
    assert second["sha256"] == first["sha256"]
    assert first["compression"] == compression
    extension = re.escape(info.extension + (".gz" if gzipped else ""))
    assert re.fullmatch(
        rf"codex-(both|books)-[a-z0-9-]+-\d{{8}}T\d{{6}}Z{extension}", first["fileName"]
    )
    assert first["fileName"] in stored.headers["content-disposition"]
    expected_type = "application/gzip" if gzipped else info.media_type
    assert stored.headers["content-type"] == expected_type
    # Size, ETag and SHA-256 are those of the stored bytes.
    assert int(stored.headers["content-length"]) == len(stored.content) == first["fileSizeBytes"]
    assert hashlib.sha256(stored.content).hexdigest() == first["sha256"]
    assert stored.headers["etag"] == f'"{first["sha256"]}"'
    if gzipped:
        # RFC 1952 header: no modification time, no file name, OS unknown.
        assert stored.content[:10] == bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255))
        plain = gzip.decompress(stored.content)
        with demo_system.client(owner) as client:
            _, uncompressed = export_and_download(client, _body(fmt, libraries, None))
        assert plain == uncompressed.content
        assert len(stored.content) < len(plain)


async def test_a_gzip_download_resumes_with_range(demo_system: System, demo_database: str) -> None:
    owner = await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    with demo_system.client(owner) as client:
        done, whole = export_and_download(client, _body("csv", libraries, "gzip"))
        size = len(whole.content)
        cut = size // 3
        tail = client.get(
            f"{URL}/{done['id']}/download",
            headers={"Range": f"bytes={cut}-", "If-Range": f'"{done["sha256"]}"'},
        )
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes {cut}-{size - 1}/{size}"
    assert tail.headers["content-type"] == "application/gzip"
    assert whole.content[:cut] + tail.content == whole.content
    assert gzip.decompress(whole.content[:cut] + tail.content)


@pytest.mark.parametrize(
    ("compression", "message"),
    [
        ("zip", "Compression must be 'none' or 'gzip'"),
        ("GZIP", "Compression must be 'none' or 'gzip'"),
        (["gzip"], "Compression must be 'none' or 'gzip'"),
        (1, "Compression must be 'none' or 'gzip'"),
    ],
)
async def test_unknown_compression_is_refused(
    demo_system: System, demo_database: str, compression: Any, message: str
) -> None:
    owner = await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    body = {**_body("json", libraries, None), "compression": compression}
    with demo_system.client(owner) as client:
        response = client.post(URL, json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "ValidationError", "message": message}


async def test_compression_defaults_to_none(demo_system: System, demo_database: str) -> None:
    owner = await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    body = {"format": "json", "libraryIds": libraries[:1], "preset": "llm"}
    with demo_system.client(owner) as client:
        created = client.post(URL, json=body).json()
        assert created["compression"] == "none"
        assert created["fileName"].endswith(".json")
        listed = client.get(URL).json()["exports"]
    assert [e["compression"] for e in listed] == ["none"]
    assert uuid.UUID(created["id"])


async def test_example_5_spreadsheet_with_both_sheets(
    demo_system: System, demo_database: str
) -> None:
    """README example 5: both, Excel, all libraries, everything → sheets Series and Books."""
    import io

    import openpyxl

    owner = await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    with demo_system.client(owner) as client:
        done, stored = export_and_download(client, _body("xlsx", libraries, None))
        _, plain = export_and_download(client, _body("json", libraries, None))
    document = json.loads(plain.content)
    book = openpyxl.load_workbook(io.BytesIO(stored.content), read_only=True)
    assert book.sheetnames == ["Series", "Books"]
    counts = {name: sum(1 for _ in book[name].iter_rows()) - 1 for name in book.sheetnames}
    assert counts == {"Series": len(document["series"]), "Books": len(document["books"])}
    assert done["rowCount"] == counts["Series"] + counts["Books"] >= 3000
    header = [c.value for c in next(book["Books"].iter_rows(max_row=1))]
    assert header[:3] == ["Book Name", "Book ID", "Series ID"] and "File Size" in header


async def test_example_6_analyse_the_parquet_file(demo_system: System, demo_database: str) -> None:
    """README example 6: books, Parquet, everything — the README's DuckDB query, in pyarrow."""
    import io

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    owner = await new_user(demo_database)
    libraries = await library_ids_by_name(demo_database)
    with demo_system.client(owner) as client:
        done, stored = export_and_download(client, _body("parquet", libraries, None))
        _, csv_file = export_and_download(
            client, {**_body("csv", libraries, None), "exportType": "books"}
        )
    table = pq.read_table(io.BytesIO(stored.content))
    assert table.num_rows == done["rowCount"] >= 3000
    assert table.schema.field("file_size").type == "int64"
    by_series = table.group_by("series_name").aggregate([("file_size", "sum")])
    assert by_series.num_rows > 100
    assert pc.sum(by_series["file_size_sum"]).as_py() == pc.sum(table["file_size"]).as_py()
    # The same books as the CSV export of the same request, in the same order.
    names = [line.split(b",", 1)[0] for line in csv_file.content.split(b"\r\n")[1:-1]]
    assert len(names) == table.num_rows
