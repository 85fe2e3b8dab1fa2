"""SPEC §9's four worked examples, end to end through the page: dialog, table, download."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import (
    choose_libraries,
    download,
    make_account,
    only_groups,
    open_dialog,
    row,
    section,
    shown_count,
    sign_in,
    submit,
    wait_status,
)
from tests.system import System

pytestmark = pytest.mark.e2e


def test_example_1_llm_reading_list(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """'Send my reading list to ChatGPT': Series, JSON, all libraries, LLM preset."""
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    dialog.get_by_role("radio", name="Series").check()
    dialog.get_by_role("radio", name="JSON", exact=True).check()
    choose_libraries(dialog, None)
    series = section(dialog, "series")
    series.get_by_role("button", name=re.compile("^Clear")).click()
    series.get_by_role("button", name=re.compile("^LLM preset")).click()
    expect(series.get_by_role("checkbox", name="Title", exact=True)).to_be_checked()
    expect(series.get_by_role("checkbox", name="Series ID", exact=True)).not_to_be_checked()
    expect(series.get_by_role("checkbox", name="Path", exact=True)).not_to_be_checked()
    created = submit(page, dialog)
    assert created["status"] == "pending"
    assert created["libraryNames"] == sorted(lib["name"] for lib in libraries)

    done = wait_status(page, created["id"], "Completed")
    expect(done.get_by_role("cell", name="JSON", exact=True)).to_be_visible()
    file, content = download(page, done)
    assert file.suggested_filename == created["fileName"]
    rows = json.loads(content)
    assert isinstance(rows, list)
    assert len(rows) == shown_count(done) >= 300
    keys = set().union(*(r.keys() for r in rows))
    assert {"series_name", "title", "year", "status", "summary"} <= keys
    assert keys & {"series_id", "library_id", "path", "library_name"} == set()


def test_example_2_backup_both_select_all(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """'Backup my catalog': Both, JSON, all libraries, Select all."""
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    dialog.get_by_role("radio", name="Both").check()
    expect(section(dialog, "series")).to_be_visible()
    expect(section(dialog, "books")).to_be_visible()
    choose_libraries(dialog, None)
    for kind in ("series", "books"):
        part = section(dialog, kind)
        part.get_by_role("button", name=re.compile("^Select all")).click()
        expect(part.get_by_text(re.compile(r"^(\d+) of \1 selected$"))).to_be_visible()
    created = submit(page, dialog)
    assert created["exportType"] == "both"
    assert created["format"] == "json"

    done = wait_status(page, created["id"], "Completed")
    expect(done.get_by_role("cell", name="Series + Books", exact=True)).to_be_visible()
    _, content = download(page, done)
    doc = json.loads(content)
    assert set(doc) == {"series", "books"}
    assert len(doc["series"]) >= 300
    assert len(doc["books"]) >= 3000
    assert len(doc["series"]) + len(doc["books"]) == shown_count(done)
    assert {"book_id", "file_size", "file_path", "number", "series_name"} <= set().union(
        *doc["books"]
    )


def test_example_3_markdown_one_library_two_groups(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """'Share what I'm reading': Series, Markdown, one library, Metadata + Counts & Progress."""
    library = libraries[0]["name"]
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    dialog.get_by_role("radio", name="Markdown").check()
    choose_libraries(dialog, [library])
    only_groups(dialog, "series", ["Metadata", "Counts & Progress"])
    created = submit(page, dialog)
    assert created["libraryNames"] == [library]
    assert created["fields"][:2] == ["title", "summary"]
    assert "progress" in created["fields"]
    assert not {"series_id", "path", "user_rating"} & set(created["fields"])

    done = wait_status(page, created["id"], "Completed")
    expect(done.get_by_role("cell", name="MD", exact=True)).to_be_visible()
    expect(done.locator(".libraries")).to_have_text(library)
    file, content = download(page, done)
    assert file.suggested_filename.endswith(".md")
    text = content.decode("utf-8")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(sections) == shown_count(done) > 0
    assert "- **Title:** " in text
    assert "- **Actual Book Count:** " in text


def test_example_4_csv_of_book_file_sizes(
    page: Page, demo_system: System, demo_database: str, libraries: list[dict[str, str]]
) -> None:
    """'Spreadsheet of book file sizes': Books, CSV, Identity + File Info groups."""
    sign_in(page, demo_system.api_url, make_account(demo_database))
    dialog = open_dialog(page)
    dialog.get_by_role("radio", name="Books").check()
    expect(section(dialog, "series")).to_be_hidden()
    dialog.get_by_role("radio", name="CSV").check()
    choose_libraries(dialog, None)
    only_groups(dialog, "books", ["Identity", "File Info"])
    created = submit(page, dialog)
    assert created["exportType"] == "books"
    assert created["format"] == "csv"
    assert "file_size" in created["bookFields"]
    assert "title" not in created["bookFields"]

    done = wait_status(page, created["id"], "Completed")
    _, content = download(page, done)
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8"), newline="")))
    assert len(rows) == shown_count(done) >= 3000
    assert list(rows[0])[:2] == ["book_name", "book_id"]
    assert "file_size" in rows[0]
    sizes = sorted((int(r["file_size"]) for r in rows), reverse=True)
    assert sizes[0] > sizes[-1] > 0
    # The Libraries cell names every library; hovering it lists the fields.
    libs = row(page, created["id"]).locator(".libraries")
    expect(libs).to_have_attribute(
        "title", re.compile(r"^Book fields: Book Name, Book ID, .*File Size")
    )
