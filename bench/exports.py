"""Export throughput against PostgreSQL's own COPY, memory and linearity.

The product is measured in the real worker process (``python -m services.worker``), from the
claim (``started_at``, set by the worker's claiming UPDATE) to the object being complete
(``completed_at``, set once the multipart upload has finished): both are the database's clock,
so no polling delay counts. Its peak RSS is the worker's VmHWM, reset before each export.

The limit is measured in this process: ``COPY (<the books query of services.worker.catalog,
with the same visibility CTEs, joins and order, every field>) TO STDOUT (FORMAT csv)`` in the
same REPEATABLE READ transaction the worker opens, each chunk written into the same object
store through the same multipart upload (``shared.object_store.StreamingUpload``, 8 MiB parts,
SHA-256 as the worker computes it), timed from the transaction's start to the upload's end.
``limit_coalesced`` is the same with the read coalescing the product uses (render/copy.py): it
answers "how fast could COPY go with that trick too", a stricter yardstick than the limit.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.env import (
    BUCKET,
    EXPORTS_URL,
    Services,
    Stack,
    peak_rss_mib,
    reset_peak_rss,
    stamp_seconds,
    wait_for,
)
from services.cli.synthetic import SyntheticCatalog
from services.worker import catalog
from services.worker.render import copy
from shared import object_store
from shared.fields import ALL_BOOKS


@dataclass
class Run:
    kind: str  # limit | limit_coalesced | a format (csv, json, ..., parquet) | <format>+gzip
    books: int
    seconds: float
    rows: int
    bytes: int
    peak_rss_mib: float | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


async def measure_limit(stack: Stack, url: str, synthetic: SyntheticCatalog, coalesce: bool) -> Run:
    store = stack.store()
    key = f"bench/limit/{uuid.uuid4()}.csv"
    conn = await asyncpg.connect(url)
    try:
        scope = catalog.Scope(synthetic.user_id, [synthetic.library_id])
        sql = catalog.book_query(list(ALL_BOOKS)).sql
        upload = object_store.StreamingUpload(
            store, BUCKET, key, "text/csv", part_size=8 * 1024 * 1024
        )
        started = time.monotonic()
        upload.start()

        async def sink(chunk: bytes) -> None:
            await upload.write(chunk)
            if coalesce and len(chunk) < copy.COALESCE_BYTES:
                await asyncio.sleep(copy.COALESCE_SECONDS)

        async with conn.transaction(isolation="repeatable_read", readonly=True):
            status = await conn.copy_from_query(
                sql,
                scope.user_id,
                list(scope.library_ids),
                output=sink if coalesce else upload.write,
                format="csv",
            )
        await upload.finish()
        seconds = time.monotonic() - started
    finally:
        await conn.close()
    await object_store.remove(store, BUCKET, key)
    rows = int(status.split()[-1])
    return Run(
        "limit_coalesced" if coalesce else "limit", synthetic.books, seconds, rows, upload.size
    )


def measure_export(
    services: Services,
    synthetic: SyntheticCatalog,
    fmt: str,
    worker_key: str = "worker",
    keep: bool = False,
    compression: str = "none",
) -> tuple[Run, dict[str, Any]]:
    """One books export with every field, run by the worker; deleted afterwards unless ``keep``.

    ``fmt`` may name a compression too (``csv+gzip``); ``compression`` is the other way to.
    """
    if "+" in fmt:
        fmt, compression = fmt.split("+", 1)
    worker = services.processes[worker_key]
    reset_peak_rss(worker.pid)  # a fresh worker's peak is its whole life
    with services.client(synthetic.user_id) as client:
        response = client.post(
            EXPORTS_URL,
            json={
                "format": fmt,
                "exportType": "books",
                "libraryIds": [str(synthetic.library_id)],
                "preset": "all",
                "compression": compression,
            },
        )
        response.raise_for_status()
        done = wait_for(client, response.json()["id"])
        peak = peak_rss_mib(worker.pid)
        if done["status"] != "completed":
            raise RuntimeError(f"export ended {done['status']}: {done.get('error')}")
        seconds = stamp_seconds(done["completedAt"]) - stamp_seconds(done["startedAt"])
        if not keep:
            client.delete(f"{EXPORTS_URL}/{done['id']}").raise_for_status()
    kind = fmt if compression == "none" else f"{fmt}+{compression}"
    return Run(kind, synthetic.books, seconds, done["rowCount"], done["fileSizeBytes"], peak), done


def summarize(runs: list[Run], kind: str, books: int) -> dict[str, Any]:
    chosen = [r for r in runs if r.kind == kind and r.books == books]
    if not chosen:
        return {}
    out: dict[str, Any] = {
        "runs": len(chosen),
        "seconds_median": round(statistics.median([r.seconds for r in chosen]), 3),
        "rows_per_second_median": round(statistics.median([r.rows_per_second for r in chosen])),
        "mb_per_second_median": round(
            statistics.median([r.bytes / r.seconds / 1e6 for r in chosen]), 1
        ),
        "bytes": chosen[0].bytes,
        "rows": chosen[0].rows,
        "seconds_all": [round(r.seconds, 2) for r in chosen],
    }
    peaks = [r.peak_rss_mib for r in chosen if r.peak_rss_mib is not None]
    if peaks:
        out["peak_rss_mib_max"] = round(max(peaks), 1)
    return out
