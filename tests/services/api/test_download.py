"""``content_disposition``: one header line, an ASCII ``filename``, an exact ``filename*``.

Parsed here the way RFC 6266 says a client should: ``filename*`` wins where understood.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from services.api.download import content_disposition
from shared.naming import export_file_name

# attr-char of RFC 8187 plus "%" for the escapes.
_HEADER = re.compile(
    r"attachment; filename=\"(?P<ascii>[A-Za-z0-9._ -]+)\"; "
    r"filename\*=UTF-8''(?P<ext>[A-Za-z0-9!#$&+.^_`|~%-]+)"
)

HOSTILE = [
    'quote".json',
    'two""quotes.csv',
    "new\nline.md",
    "crlf\r\nSet-Cookie: a=b.json",
    "../../etc/passwd",
    "a/b.json",
    "back\\slash\\..\\x.csv",
    "Ünïcödé 漫画 📚.json",
    "semi;colon=equals.json",
    "percent%2F%0A.md",
    "nul\x00byte.json",
    "tab\tand\x7fdel.csv",
    "..",
    ".hidden",
    "",
]


def _parse(header: str) -> tuple[str, str]:
    """(the ASCII fallback, the decoded ``filename*``); fails on anything else."""
    match = _HEADER.fullmatch(header)
    assert match is not None, header
    return match["ascii"], unquote(match["ext"], errors="strict")


@pytest.mark.parametrize("name", [n for n in HOSTILE if n not in ("",)])
def test_the_header_is_one_parseable_line(name: str) -> None:
    header = content_disposition(name)
    assert header.isprintable() and header.isascii()
    assert "\r" not in header and "\n" not in header
    ascii_name, _ = _parse(header)
    assert '"' not in ascii_name and "/" not in ascii_name and "\\" not in ascii_name


@pytest.mark.parametrize(
    "name",
    [
        "codex-series-comics-20260101T000000Z.json",
        "Ünïcödé 漫画 📚.json",
        'it\'s "quoted".md',
        "a;b=c.csv",
    ],
)
def test_safe_names_survive_exactly_in_filename_star(name: str) -> None:
    assert _parse(content_disposition(name))[1] == name


@pytest.mark.parametrize("name", HOSTILE)
def test_no_path_separator_or_control_character_reaches_the_client(name: str) -> None:
    ascii_name, decoded = _parse(content_disposition(name))
    for shown in (ascii_name, decoded):
        assert shown and "/" not in shown and "\\" not in shown
        assert shown.isprintable()
        assert shown not in (".", "..")


def test_real_file_names_are_plain_ascii_whatever_the_library_names() -> None:
    from datetime import UTC, datetime

    name = export_file_name(
        "both",
        "md",
        ["../../etc", "a/b", '"; DROP TABLE x; --', "new\nline", "漫画"],
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert re.fullmatch(r"codex-both-[a-z0-9-]+-20260101T000000Z\.md", name), name
    ascii_name, decoded = _parse(content_disposition(name))
    assert ascii_name == decoded == name
