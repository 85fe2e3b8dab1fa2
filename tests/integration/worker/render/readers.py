"""Independent readers of the typed formats, and what a JSON row looks like in each.

XLSX is read with openpyxl, Parquet with pyarrow: libraries the product does not write with.
Each ``expected_*`` turns a row of the JSON export of the same request into the values that
reader should find, written from SPEC §10 (not from the product's encoders).
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any

import openpyxl
import pyarrow.parquet as pq

MAX_CELL = 32_767
_EXCEL_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def excel_text(text: str) -> str:
    """Decode Excel's ``_xHHHH_`` escapes (ECMA-376 ST_Xstring), as Excel and LibreOffice do;
    openpyxl hands them over as written."""
    return _EXCEL_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def read_xlsx(data: bytes) -> dict[str, tuple[list[Any], list[list[Any]]]]:
    """Sheet name → (header row, data rows), every cell's value as openpyxl reads it."""
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheets: dict[str, tuple[list[Any], list[list[Any]]]] = {}
    for sheet in book.worksheets:
        rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
        width = len(rows[0])
        body = [row + [None] * (width - len(row)) for row in rows[1:]]
        sheets[sheet.title] = (rows[0], body)
    return sheets


def _item(item: Any) -> str:
    if isinstance(item, str):
        return item
    if "name" in item:
        return f"{item['name']} ({item['role']})" if "role" in item else item["name"]
    if "label" in item:
        return f"{item['label']}: {item['title']}"
    text = item["source"]
    if "rating" in item:
        text += f": {item['rating']!r}"
    if "votes" in item:
        text += f" ({item['votes']} vote{'' if item['votes'] == 1 else 's'})"
    return text


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def expected_xlsx_cell(value: Any, time_field: bool) -> Any:
    """A JSON value as the XLSX cell a reader finds (SPEC §10)."""
    if value is None:
        return None
    if isinstance(value, list):
        return "; ".join(_item(item) for item in value)[:MAX_CELL]
    if time_field:
        moment = _timestamp(value)
        if (
            not datetime(1900, 3, 1, tzinfo=UTC)
            <= moment
            <= datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
        ):
            return value  # not a date to Excel: its RFC 3339 text
        return moment.replace(tzinfo=None)
    if isinstance(value, str):
        return value[:MAX_CELL]
    return value


def xlsx_cell(value: Any) -> Any:
    return excel_text(value) if isinstance(value, str) else value


def same_number(a: Any, b: Any) -> bool:
    """Numbers are written as their shortest exact text: they come back exactly."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, int | float):
        return False
    return a == b


def same_time(a: Any, b: Any) -> bool:
    """Excel keeps a date-time as a fraction of a day: about a microsecond of precision."""
    return (
        isinstance(a, datetime) and isinstance(b, datetime) and abs((a - b).total_seconds()) < 2e-3
    )


def read_parquet(data: bytes) -> tuple[Any, list[dict[str, Any]]]:
    """(schema, rows as dicts) of a Parquet file."""
    table = pq.read_table(io.BytesIO(data))
    return table.schema, table.to_pylist()


def expected_parquet_value(value: Any, float_field: bool, time_field: bool) -> Any:
    """A JSON value as pyarrow reads it back from the Parquet column (SPEC §10)."""
    if value is None:
        return None
    if time_field:
        return _timestamp(value)
    if float_field:
        return float(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        if "name" in value[0]:
            return [{"name": a["name"], "role": a.get("role")} for a in value]
        if "label" in value[0]:
            return value
        return [
            {
                "source": r["source"],
                "rating": None if "rating" not in r else float(r["rating"]),
                "votes": r.get("votes"),
            }
            for r in value
        ]
    return value
