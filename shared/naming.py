"""Object keys and file names: built only from server-side values, in one tested place."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from uuid import UUID

from shared.formats import Compression, stored_extension

MAX_LIBRARY_PART = 60
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """Lowercase ASCII words joined by ``-`` (accents folded, everything else dropped)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", folded.lower()).strip("-")


def library_part(names: list[str]) -> str:
    """Slugged library names joined with ``-``, shortened past 60 characters."""
    slugs = [s for s in (slug(n) for n in sorted(names, key=str.casefold)) if s]
    joined = "-".join(slugs) or "library"
    if len(joined) > MAX_LIBRARY_PART:
        joined = joined[:MAX_LIBRARY_PART].rstrip("-")
    return joined


def export_file_name(
    export_type: str,
    fmt: str,
    library_names: list[str],
    created_at: datetime,
    compression: str = Compression.NONE,
) -> str:
    """``codex-{type}-{libraries}-{YYYYMMDDTHHMMSSZ}.{ext}`` (SPEC §5), ``.{ext}.gz`` once
    compressed (SPEC §10)."""
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    extension = stored_extension(fmt, compression)
    return f"codex-{export_type}-{library_part(library_names)}-{stamp}{extension}"


def object_key(user_id: UUID, export_id: UUID, file_name: str) -> str:
    """``exports/{user_id}/{export_id}/{file_name}``; every key is built here."""
    if "/" in file_name or file_name in {"", ".", ".."}:
        raise ValueError(f"unsafe file name for an object key: {file_name!r}")
    return f"exports/{UUID(str(user_id))}/{UUID(str(export_id))}/{file_name}"


def user_prefix(user_id: UUID) -> str:
    return f"exports/{UUID(str(user_id))}/"
