"""``services.cli.restore``: the pure parts of reading a backup back (ratings, progress, the
JSON stream, the refusals); the round trips against real servers are in
``tests/integration/cli/test_restore.py``."""

from __future__ import annotations

import io
import random
from decimal import ROUND_HALF_UP, Decimal

import pytest

from services.cli.restore import (
    JsonStream,
    RestoreError,
    export_rows,
    jsonl_rows,
    other_ratings,
    progress_percentage,
)


def pg_avg(ratings: list[int]) -> Decimal:
    return (Decimal(sum(ratings)) / Decimal(len(ratings))).quantize(Decimal("0.01"), ROUND_HALF_UP)


def test_other_ratings_reproduce_the_average() -> None:
    assert other_ratings(90, 90) == []
    assert other_ratings(60, None) == [60]
    assert other_ratings(51.5, 70) == [33]
    assert other_ratings(80.33, 90) == [76, 75]  # the fixture's batman: 90, 71, 80
    rng = random.Random(7)
    for _ in range(400):
        ratings = [rng.randint(1, 100) for _ in range(rng.randint(1, 12))]
        own = ratings[0] if rng.random() < 0.5 else None
        others = ratings[1:] if own is not None else ratings
        if not others:
            continue
        average = float(pg_avg(ratings))
        found = other_ratings(int(average) if average.is_integer() else average, own)
        assert all(1 <= r <= 100 for r in found)
        assert len(found) <= len(others)
        assert pg_avg(([own] if own is not None else []) + found) == pg_avg(ratings)


def test_progress_percentage_only_when_the_page_does_not_say_it() -> None:
    assert progress_percentage(25, 12, 48) is None  # 12/48 pages
    assert progress_percentage(0, 0, 0) is None
    assert progress_percentage(0, 5, 0) is None  # a book without pages
    assert progress_percentage(50, 0, 48) == 0.5
    assert progress_percentage(33.33, 66, 200) == 0.3333
    assert progress_percentage(100, 10, 48) == 1.0


def test_json_stream_survives_tiny_pieces() -> None:
    text = '{"series": [\n{"a": 1234567, "b": "x,]}"},\n{"c": [1.5, 2]}\n],\n"books": [ ]\n}\n'
    rows = list(export_rows(io.StringIO(text), chunk_chars=3))
    assert rows == [("series", 1, {"a": 1234567, "b": "x,]}"}), ("series", 2, {"c": [1.5, 2]})]
    stream = JsonStream(io.StringIO("12345 678"), chunk_chars=2)
    assert (stream.value(), stream.value(), stream.peek()) == (12345, 678, "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"series_name": "x"}]', "single-type export"),
        ('{"series": []}', "no 'books' part"),
        ('{"books": [], "series": []}', "books come before the series"),
        ('{"series": [], "books": [], "extra": 1}', "Unexpected key 'extra'"),
        ('{"series": [1]}', "series row 1 is not an object"),
        ('{"series": [{"a": 1} {"b": 2}]}', "Expected ','"),
        ("<html>", "Not a JSON export"),
        ('{"series": [{"a": tru', "Not valid JSON"),
    ],
)
def test_wrong_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(RestoreError, match=message.replace("(", r"\(")):
        list(export_rows(io.StringIO(text)))


def test_json_lines_rows_come_with_their_section() -> None:
    text = (
        '{"type":"series","series_name":"A","series_id":"1"}\n'
        '{"type":"series","series_name":"B"}\n'
        '{"type":"books","book_name":"V1"}\n'
    )
    assert list(jsonl_rows(io.StringIO(text))) == [
        ("series", 1, {"series_name": "A", "series_id": "1"}),
        ("series", 2, {"series_name": "B"}),
        ("books", 1, {"book_name": "V1"}),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"series_name":"A"}\n', "single-type export"),
        (
            '{"type":"books","book_name":"V"}\n{"type":"series","series_name":"A"}\n',
            "after the books",
        ),
        ('{"type":"authors","name":"x"}\n', "unknown type 'authors'"),
        ('{"type":"series",\n', "Line 1 is not valid JSON"),
        ("[1]\n", "Line 1 is not an object"),
        ("", "The file is empty"),
    ],
)
def test_wrong_json_lines_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(RestoreError, match=message):
        list(jsonl_rows(io.StringIO(text)))


def test_a_json_lines_line_past_the_limit_is_refused() -> None:
    line = '{"type":"series","series_name":"' + "x" * 100 + '"}\n'
    with pytest.raises(RestoreError, match="Line 1 is larger than 50 characters"):
        list(jsonl_rows(io.StringIO(line), max_line_chars=50))
