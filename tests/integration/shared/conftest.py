"""What the integration tests of ``shared/`` share: a scratch bucket on the session's S3 server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from minio import Minio

from tests.conftest import Servers


@contextmanager
def scratch_bucket(servers: Servers, prefix: str) -> Iterator[tuple[Minio, str]]:
    """A new bucket named ``<prefix>-<random>``, emptied (objects and incomplete uploads) and
    removed afterwards."""
    client = servers.s3_client()
    bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client.make_bucket(bucket)
    try:
        yield client, bucket
    finally:
        for obj in client.list_objects(bucket, recursive=True):
            client.remove_object(bucket, obj.object_name or "")
        for upload in client._list_multipart_uploads(bucket).uploads:
            client._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
        client.remove_bucket(bucket)
