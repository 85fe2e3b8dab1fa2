"""``GET /{id}/changes`` on two large JSON backups: the api's time and its peak RSS.

Two "Backup my catalog" exports (type both, JSON, every field) of the synthetic catalog, with a
few thousand edits made between them straight in Codex's tables (bench code, never the
product's): ``EDITED_BOOKS`` book titles changed, ``RETITLED_SERIES`` series retitled (series
sort by title here, so they and all their books move to the front of both sections: many rows
out of step, the comparison's pending maps spill to disk) and ``DELETED_BOOKS`` books deleted.
The comparison runs in the real api process (``python -m services.api``); its peak RSS is that
process's VmHWM, reset just before the request, beside its RSS just before (idle, warmed up by
a first small comparison). Flat memory means the peak does not grow with the catalog.

``python -m bench.changes [--books 100000 ...]`` runs only this, one catalog per size (``make
bench-changes``); ``python -m bench`` runs it on its main catalog unless ``--skip changes``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench.env import (
    EXPORTS_URL,
    Services,
    Stack,
    build_catalog,
    create_database,
    peak_rss_mib,
    reset_peak_rss,
    wait_for,
)
from services.cli.synthetic import SyntheticCatalog

EDITED_BOOKS = 2000
RETITLED_SERIES = 500
DELETED_BOOKS = 1000
REQUEST_TIMEOUT = 3600.0


def _backup(services: Services, synthetic: SyntheticCatalog) -> dict[str, Any]:
    with services.client(synthetic.user_id) as client:
        response = client.post(
            EXPORTS_URL,
            json={
                "format": "json",
                "exportType": "both",
                "libraryIds": [str(synthetic.library_id)],
                "preset": "all",
            },
        )
        response.raise_for_status()
        done = wait_for(client, response.json()["id"])
    if done["status"] != "completed":
        raise RuntimeError(f"export ended {done['status']}: {done.get('error')}")
    return done


async def edit(url: str, library_id: uuid.UUID) -> None:
    """The edits between the two backups (deterministic: rows picked by the md5 of their id)."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute(
                "UPDATE book_metadata SET title = title || ' (edited)' WHERE book_id IN"
                " (SELECT id FROM books WHERE library_id = $1 ORDER BY md5(id::text) LIMIT $2)",
                library_id,
                EDITED_BOOKS,
            )
            await conn.execute(
                "UPDATE series_metadata SET title = 'Retitled ' || title WHERE series_id IN"
                " (SELECT id FROM series WHERE library_id = $1 ORDER BY md5(id::text) LIMIT $2)",
                library_id,
                RETITLED_SERIES,
            )
            await conn.execute(
                "UPDATE books SET deleted = true WHERE id IN (SELECT id FROM books"
                " WHERE library_id = $1 ORDER BY md5(id::text || 'deleted') LIMIT $2)",
                library_id,
                DELETED_BOOKS,
            )
    finally:
        await conn.close()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def compare(services: Services, user_id: uuid.UUID, newer: str, older: str) -> dict[str, Any]:
    """One comparison in the api process: seconds, its RSS before and its peak during."""
    api = services.processes["api"].pid
    before = _rss_mib(api)
    reset_peak_rss(api)
    with services.client(user_id, timeout=REQUEST_TIMEOUT) as client:
        started = time.monotonic()
        response = client.get(f"{EXPORTS_URL}/{newer}/changes", params={"since": older})
        seconds = time.monotonic() - started
    response.raise_for_status()
    body = response.json()
    return {
        "seconds": round(seconds, 2),
        "api_rss_before_mib": round(before, 1),
        "api_peak_rss_mib": round(peak_rss_mib(api), 1),
        "series": body["series"],
        "books": body["books"],
        "items": len(body["items"]),
    }


def measure(services: Services, url: str, synthetic: SyntheticCatalog) -> dict[str, Any]:
    """Backup, edit, backup, compare (after a warm-up comparison of the first with itself)."""
    started = time.monotonic()
    older = _backup(services, synthetic)
    asyncio.run(edit(url, synthetic.library_id))
    newer = _backup(services, synthetic)
    exports_seconds = time.monotonic() - started
    warm = compare(services, synthetic.user_id, older["id"], older["id"])
    result = compare(services, synthetic.user_id, newer["id"], older["id"])
    result.update(
        {
            "books_catalog": synthetic.books,
            "file_bytes": [older["fileSizeBytes"], newer["fileSizeBytes"]],
            "rows": [older["rowCount"], newer["rowCount"]],
            "mb_per_second": round(
                (older["fileSizeBytes"] + newer["fileSizeBytes"]) / result["seconds"] / 1e6, 1
            ),
            "self_compare_seconds": warm["seconds"],
            "self_compare_api_peak_rss_mib": warm["api_peak_rss_mib"],
            "backups_seconds": round(exports_seconds, 1),
        }
    )
    with services.client(synthetic.user_id) as client:
        for done in (older, newer):
            client.delete(f"{EXPORTS_URL}/{done['id']}").raise_for_status()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.changes", description=__doc__)
    parser.add_argument("--books", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", action="store_true", help="keep the servers' data and logs")
    args = parser.parse_args(argv)
    stack = Stack.start(keep=args.keep)
    results = []
    try:
        for books in args.books:
            url = asyncio.run(create_database(stack, f"bench_changes_{books}"))
            synthetic = asyncio.run(build_catalog(url, max(1, books // 50), books))
            services = Services(stack, url, stack.root / f"logs-changes-{books}")
            try:
                services.start("api")
                services.start("worker")
                result = measure(services, url, synthetic)
            finally:
                services.stop_all()
            results.append(result)
            print(f"changes {books:>9,} books: {result}", flush=True)
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
