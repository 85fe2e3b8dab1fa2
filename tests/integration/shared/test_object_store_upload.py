"""``object_store.StreamingUpload`` against the real S3 server: its errors are the store's."""

from __future__ import annotations

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
