"""``object_store.StreamingUpload`` against the real S3 server: its errors are the store's."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
import uuid

import pytest

from shared import object_store
from tests.conftest import Servers

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024


async def test_an_upload_refused_mid_stream_is_an_object_store_error(
    real_servers: Servers,
) -> None:
    """The store refuses the first part (no such bucket) while the export still writes: the
    next ``write`` raises ``ObjectStoreError``, as ``finish`` would, so the worker reports
    the file storage (and retries) instead of an unexpected error."""
    client = real_servers.s3_client()
    upload = object_store.StreamingUpload(
        client, "missing-" + uuid.uuid4().hex[:12], "exports/x.csv", "text/csv", part_size=PART
    )
    upload.start()
    chunk = b"x" * (256 * 1024)

    async def write_100_mib() -> None:
        # Far more than a part and the queue: the thread meets the refusal on the way.
        for _ in range(400):
            await upload.write(chunk)

    try:
        with pytest.raises(object_store.ObjectStoreError, match="NoSuchBucket"):
            await write_100_mib()
    finally:
        await upload.abort()


async def test_an_upload_holds_at_most_its_parallel_parts(real_servers: Servers) -> None:
    """A file many parts long, written as fast as the queue takes it (an Excel workbook
    spooled from disk): the upload holds the queue and ``PARALLEL_PARTS`` parts, the one being
    filled included, and never a copy of one, so a long file holds what a short one does.

    Python's own allocations, traced in every thread (tracemalloc), not the RSS: they are
    what the code holds, whatever malloc keeps of them; the earlier upload, which read a part
    into a ``bytearray``, copied it out and read the next one while two were uploading, peaked
    at about twice this bound (33 MiB; this one 15).
    """
    client = real_servers.s3_client()
    bucket = "upload-memory-" + uuid.uuid4().hex[:8]
    client.make_bucket(bucket)
    key = "exports/many-parts.bin"
    upload = object_store.StreamingUpload(client, bucket, key, "application/zip", part_size=PART)
    chunk = os.urandom(1024 * 1024)  # one buffer written again and again, as a spool's reads
    queued = 16 * 256 * 1024
    tracemalloc.start()
    try:
        upload.start()
        for _ in range(63):  # twelve parts and a short one
            await upload.write(chunk)
        digest = await upload.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await upload.abort()
    try:
        assert upload.size == 63 * len(chunk)
        stored = hashlib.sha256()
        response = client.get_object(bucket, key)
        try:
            for piece in response.stream(1024 * 1024):
                stored.update(piece)
        finally:
            response.close()
            response.release_conn()
        assert stored.hexdigest() == digest == hashlib.sha256(chunk * 63).hexdigest()
        bound = queued + object_store.PARALLEL_PARTS * PART + 4 * 1024 * 1024
        assert peak <= bound, f"{peak / 2**20:.1f} MiB traced, more than {bound / 2**20:.1f}"
    finally:
        client.remove_object(bucket, key)
        client.remove_bucket(bucket)
