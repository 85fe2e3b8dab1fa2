"""``object_store.StreamingUpload`` in two steps against the real S3 server: ``seal`` uploads
every part and makes no object; ``complete`` makes it; ``abort`` before that leaves nothing."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator

import pytest
from minio import Minio

from shared import object_store
from tests.conftest import Servers
from tests.integration.shared.conftest import scratch_bucket

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024  # the smallest part S3 takes


@pytest.fixture(scope="module")
def store(real_servers: Servers) -> Iterator[tuple[Minio, str]]:
    with scratch_bucket(real_servers, "complete") as made:
        yield made


def _objects(client: Minio, bucket: str, key: str) -> list[str]:
    return [o.object_name or "" for o in client.list_objects(bucket, prefix=key, recursive=True)]


def _uploads(client: Minio, bucket: str, key: str) -> list[str]:
    return [u.object_name for u in client._list_multipart_uploads(bucket, prefix=key).uploads]


def _read(client: Minio, bucket: str, key: str) -> bytes:
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


async def _sealed(
    client: Minio, bucket: str, key: str, data: bytes
) -> object_store.StreamingUpload:
    upload = object_store.StreamingUpload(client, bucket, key, "text/csv", part_size=PART)
    upload.start()
    for start in range(0, len(data), 100_000):
        await upload.write(data[start : start + 100_000])
    digest = await upload.seal()
    assert digest == hashlib.sha256(data).hexdigest()
    return upload


@pytest.mark.parametrize(
    "size",
    [0, 1_000, PART, 2 * PART + 12_345],
    ids=["empty", "small", "one-full-part", "three-parts"],
)
async def test_seal_makes_no_object_and_complete_makes_it_whole(
    store: tuple[Minio, str], size: int
) -> None:
    client, bucket = store
    key = f"exports/{uuid.uuid4()}/file.csv"
    data = os.urandom(size)
    upload = await _sealed(client, bucket, key, data)
    # Every byte is in the store, and still no object: only the incomplete upload.
    assert _objects(client, bucket, key) == []
    assert _uploads(client, bucket, key) == [key]
    await upload.complete()
    assert _objects(client, bucket, key) == [key]
    assert _uploads(client, bucket, key) == []
    assert hashlib.sha256(_read(client, bucket, key)).digest() == hashlib.sha256(data).digest()
    info = client.stat_object(bucket, key)
    assert info.size == size
    assert info.content_type == "text/csv"
    await upload.abort()  # after complete: nothing to abort, the object stays
    assert _objects(client, bucket, key) == [key]


async def test_abort_after_seal_leaves_nothing(store: tuple[Minio, str]) -> None:
    client, bucket = store
    key = f"exports/{uuid.uuid4()}/file.csv"
    upload = await _sealed(client, bucket, key, os.urandom(PART + 1))
    await upload.abort()
    assert _objects(client, bucket, key) == []
    assert _uploads(client, bucket, key) == []
    with pytest.raises(RuntimeError):
        await upload.complete()  # an aborted upload cannot become an object


async def test_abort_while_writing_leaves_nothing(store: tuple[Minio, str]) -> None:
    client, bucket = store
    key = f"exports/{uuid.uuid4()}/file.csv"
    upload = object_store.StreamingUpload(client, bucket, key, "text/csv", part_size=PART)
    upload.start()
    await upload.write(os.urandom(PART + PART // 2))  # one part uploaded, one being filled
    await upload.abort()
    assert _objects(client, bucket, key) == []
    assert _uploads(client, bucket, key) == []


async def test_finish_seals_and_completes(store: tuple[Minio, str]) -> None:
    client, bucket = store
    key = f"exports/{uuid.uuid4()}/file.csv"
    data = os.urandom(PART + 7)
    upload = object_store.StreamingUpload(client, bucket, key, "text/csv", part_size=PART)
    upload.start()
    await upload.write(data)
    assert await upload.finish() == hashlib.sha256(data).hexdigest()
    assert _read(client, bucket, key) == data
    assert _uploads(client, bucket, key) == []
