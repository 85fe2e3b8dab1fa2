"""The two field catalogs (SPEC §4), their groups and presets.

Catalog order is also the key order inside JSON rows and the column order in CSV.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.formats import FORMATS


@dataclass(frozen=True, slots=True)
class Field:
    """One exportable field."""

    key: str
    label: str
    group: str
    multi_value: bool = False
    user_specific: bool = False
    is_anchor: bool = False

    def public(self) -> dict[str, object]:
        """The field as the catalog endpoint shows it (camelCase)."""
        return {
            "key": self.key,
            "label": self.label,
            "group": self.group,
            "multiValue": self.multi_value,
            "userSpecific": self.user_specific,
            "isAnchor": self.is_anchor,
        }


def _f(key: str, label: str, group: str, *, multi: bool = False, user: bool = False) -> Field:
    return Field(key, label, group, multi_value=multi, user_specific=user)


SERIES_FIELDS: tuple[Field, ...] = (
    Field("series_name", "Series Name", "Identity", is_anchor=True),
    _f("series_id", "Series ID", "Identity"),
    _f("library_id", "Library ID", "Identity"),
    _f("library_name", "Library Name", "Identity"),
    _f("path", "Path", "Identity"),
    _f("created_at", "Created At", "Identity"),
    _f("updated_at", "Updated At", "Identity"),
    _f("title", "Title", "Metadata"),
    _f("summary", "Summary", "Metadata"),
    _f("publisher", "Publisher", "Metadata"),
    _f("status", "Status", "Metadata"),
    _f("year", "Year", "Metadata"),
    _f("language", "Language", "Metadata"),
    _f("authors", "Authors", "Metadata", multi=True),
    _f("genres", "Genres", "Metadata", multi=True),
    _f("tags", "Tags", "Metadata", multi=True),
    _f("alternate_titles", "Alternate Titles", "Metadata", multi=True),
    _f("collections", "Collections", "Metadata", multi=True),
    _f("expected_book_count", "Expected Book Count", "Counts & Progress"),
    _f("expected_chapter_count", "Expected Chapter Count", "Counts & Progress"),
    _f("actual_book_count", "Actual Book Count", "Counts & Progress"),
    _f("unread_book_count", "Unread Book Count", "Counts & Progress", user=True),
    _f("progress", "Progress", "Counts & Progress", user=True),
    _f("user_rating", "User Rating", "Ratings", user=True),
    _f("user_notes", "User Notes", "Ratings", user=True),
    _f("community_avg_rating", "Community Avg Rating", "Ratings"),
    _f("external_ratings", "External Ratings", "Ratings", multi=True),
)

BOOK_FIELDS: tuple[Field, ...] = (
    Field("book_name", "Book Name", "Identity", is_anchor=True),
    _f("book_id", "Book ID", "Identity"),
    _f("series_id", "Series ID", "Identity"),
    _f("library_id", "Library ID", "Identity"),
    _f("series_name", "Series Name", "Identity"),
    _f("library_name", "Library Name", "Identity"),
    _f("file_name", "File Name", "File Info"),
    _f("file_path", "File Path", "File Info"),
    _f("file_size", "File Size", "File Info"),
    _f("book_format", "Format", "File Info"),
    _f("page_count", "Page Count", "File Info"),
    _f("number", "Number", "File Info"),
    _f("created_at", "Created At", "File Info"),
    _f("updated_at", "Updated At", "File Info"),
    _f("title", "Title", "Metadata"),
    _f("summary", "Summary", "Metadata"),
    _f("publisher", "Publisher", "Metadata"),
    _f("year", "Year", "Metadata"),
    _f("language", "Language", "Metadata"),
    _f("authors", "Authors", "Metadata", multi=True),
    _f("genres", "Genres", "Metadata", multi=True),
    _f("tags", "Tags", "Metadata", multi=True),
    _f("read_lists", "Read Lists", "Metadata", multi=True),
    _f("progress", "Progress", "Progress", user=True),
    _f("current_page", "Current Page", "Progress", user=True),
    _f("completed", "Completed", "Progress", user=True),
    _f("completed_at", "Completed At", "Progress", user=True),
)

SERIES_ANCHOR = SERIES_FIELDS[0]
BOOK_ANCHOR = BOOK_FIELDS[0]
SERIES_BY_KEY: dict[str, Field] = {f.key: f for f in SERIES_FIELDS}
BOOKS_BY_KEY: dict[str, Field] = {f.key: f for f in BOOK_FIELDS}

LLM_PRESET_SERIES: tuple[str, ...] = (
    "title",
    "summary",
    "status",
    "year",
    "created_at",
    "authors",
    "genres",
    "collections",
    "actual_book_count",
    "unread_book_count",
    "community_avg_rating",
    "external_ratings",
    "user_rating",
    "user_notes",
    "progress",
)
LLM_PRESET_BOOKS: tuple[str, ...] = (
    "title",
    "summary",
    "year",
    "created_at",
    "authors",
    "genres",
    "series_name",
    "number",
    "read_lists",
    "progress",
)
ALL_SERIES: tuple[str, ...] = tuple(f.key for f in SERIES_FIELDS if not f.is_anchor)
ALL_BOOKS: tuple[str, ...] = tuple(f.key for f in BOOK_FIELDS if not f.is_anchor)


def in_catalog_order(keys: list[str] | tuple[str, ...], catalog: tuple[Field, ...]) -> list[str]:
    """Deduplicate ``keys`` (all known) and put them in catalog order, anchor excluded."""
    wanted = set(keys)
    return [f.key for f in catalog if f.key in wanted and not f.is_anchor]


def columns(keys: list[str] | tuple[str, ...], catalog: tuple[Field, ...]) -> list[Field]:
    """The anchor followed by the requested fields, in catalog order."""
    by_key = {f.key: f for f in catalog}
    return [catalog[0], *(by_key[k] for k in in_catalog_order(keys, catalog))]


def catalog_document() -> dict[str, object]:
    """The body of ``GET /api/v1/user/exports/series/fields``."""
    return {
        "formats": [info.public() for info in FORMATS.values()],
        "fields": [f.public() for f in SERIES_FIELDS],
        "bookFields": [f.public() for f in BOOK_FIELDS],
        "groups": {
            "series": list(dict.fromkeys(f.group for f in SERIES_FIELDS)),
            "books": list(dict.fromkeys(f.group for f in BOOK_FIELDS)),
        },
        "presets": {
            "llmSelect": list(LLM_PRESET_SERIES),
            "llmSelectBooks": list(LLM_PRESET_BOOKS),
            "allSelect": list(ALL_SERIES),
            "allSelectBooks": list(ALL_BOOKS),
        },
    }
