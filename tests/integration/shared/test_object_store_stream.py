"""``object_store.stream_object``: read-ahead downloads against the real S3 server."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator

import pytest
from minio import Minio

from shared import object_store
from tests.conftest import Servers

pytestmark = pytest.mark.integration

SIZE = 9 * object_store.DOWNLOAD_CHUNK + 12_345  # more chunks than the read-ahead holds


@pytest.fixture(scope="module")
def stored(real_servers: Servers) -> Iterator[tuple[Minio, str, str, bytes]]:
    client = real_servers.s3_client()
    bucket = "stream-" + uuid.uuid4().hex[:12]
    client.make_bucket(bucket)
    data = os.urandom(SIZE)
    key = "exports/stream/object.bin"
    client.put_object(bucket, key, io.BytesIO(data), length=len(data))
    yield client, bucket, key, data
    client.remove_object(bucket, key)
    client.remove_bucket(bucket)


def _readers(key: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"download {key}"]


async def _no_reader_left(key: str) -> bool:
    for _ in range(100):
        if not _readers(key):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_whole_object_and_ranges(stored: tuple[Minio, str, str, bytes]) -> None:
    client, bucket, key, data = stored
    whole = b"".join([c async for c in object_store.stream_object(client, bucket, key)])
    assert hashlib.sha256(whole).digest() == hashlib.sha256(data).digest()
    for offset, length in [(0, 1), (1, SIZE - 1), (SIZE - 7, 7), (3 * 1024 * 1024 - 1, 5)]:
        part = b"".join(
            [
                c
                async for c in object_store.stream_object(
                    client, bucket, key, offset=offset, length=length
                )
            ]
        )
        assert part == data[offset : offset + length]
    assert await _no_reader_left(key)


async def test_a_caller_that_stops_early_ends_the_reading_thread(
    stored: tuple[Minio, str, str, bytes],
) -> None:
    client, bucket, key, data = stored
    stream = object_store.stream_object(client, bucket, key)
    first = await anext(stream)
    assert first == data[: len(first)]
    # Let the reader fill the read-ahead and block waiting for room, as behind a slow client.
    await asyncio.sleep(0.3)
    assert len(_readers(key)) == 1
    await stream.aclose()
    assert await _no_reader_left(key)


async def test_a_missing_object_is_reported(stored: tuple[Minio, str, str, bytes]) -> None:
    client, bucket, _, _ = stored
    with pytest.raises(object_store.ObjectMissing):
        await anext(object_store.stream_object(client, bucket, "exports/stream/none.bin"))


def test_open_object_reads_in_a_thread_as_a_file(stored: tuple[Minio, str, str, bytes]) -> None:
    """The blocking reader (the api's comparison of two exports): buffered reads of any size
    give the object's bytes in order; a missing key is ObjectMissing."""
    client, bucket, key, data = stored
    with object_store.open_object(client, bucket, key) as reader:
        first = reader.read(10)
        line = reader.readline()  # random bytes: up to the first b"\n" or the end
        rest = reader.read()
    assert first + line + rest == data
    with pytest.raises(object_store.ObjectMissing):
        with object_store.open_object(client, bucket, key + ".missing"):
            pass
