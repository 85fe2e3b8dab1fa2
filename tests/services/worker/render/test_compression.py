"""The compression stage (``services.worker.render.compression``): gzip bytes fixed by the
input alone, whatever the chunks it arrives in."""

from __future__ import annotations

import gzip
import io
import random
import zlib

import pytest

from services.worker.render import compression
from services.worker.render.compression import GZIP_HEADER
from shared.formats import Compression


async def _through(kind: str, chunks: list[bytes]) -> tuple[bytes, int]:
    out: list[bytes] = []
    writes = 0

    async def write(data: bytes) -> None:
        nonlocal writes
        writes += 1
        out.append(data)

    stage = compression.stage(kind, write)
    for chunk in chunks:
        await stage.write(chunk)
    await stage.finish()
    return b"".join(out), writes


def _sample() -> bytes:
    rng = random.Random(7)
    words = ["Akira", "ナルト", "book", "2024-01-15T06:00:00Z", '"q"', "\r\n", "😀", "12345"]
    return ",".join(rng.choice(words) for _ in range(300_000)).encode()


def _chunked(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    chunks, at = [], 0
    while at < len(data):
        size = rng.choice([1, 7, 4096, 65536, 300_000])
        chunks.append(data[at : at + size])
        at += size
    return chunks


async def test_gzip_is_rfc_1952_without_time_or_name() -> None:
    data = _sample()
    out, _ = await _through("gzip", [data])
    assert out[:10] == GZIP_HEADER == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert gzip.decompress(out) == data
    with gzip.GzipFile(fileobj=io.BytesIO(out)) as reader:
        assert reader.read() == data
        assert reader.mtime == 0
        assert reader.name == ""
    # CRC-32 and length trailer.
    assert out[-8:] == zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_gzip_bytes_do_not_depend_on_the_chunks(seed: int) -> None:
    data = _sample()
    whole, _ = await _through("gzip", [data])
    split, writes = await _through("gzip", _chunked(data, seed))
    assert split == whole
    assert writes < len(_chunked(data, seed))  # small writes are buffered by deflate


async def test_empty_input_is_a_valid_empty_member() -> None:
    out, _ = await _through("gzip", [])
    assert gzip.decompress(out) == b""
    assert out == (await _through("gzip", [b"", b""]))[0]


async def test_none_passes_bytes_through() -> None:
    out, writes = await _through(Compression.NONE, [b"a", b"", b"bc"])
    assert out == b"abc"
    assert writes == 3


async def test_gzip_streams_as_it_goes() -> None:
    """Compressed bytes leave while the input arrives, one chunk behind (the chunk being
    compressed): finish() adds that chunk's output, deflate's last block and the trailer."""
    data = random.Random(3).randbytes(4 << 20)  # incompressible: output follows input
    sizes: list[int] = []

    async def write(chunk: bytes) -> None:
        sizes.append(len(chunk))

    stage = compression.stage("gzip", write)
    for at in range(0, len(data), 256 * 1024):
        await stage.write(data[at : at + 256 * 1024])
    before_finish = sum(sizes)
    await stage.finish()
    chunk = 256 * 1024
    assert before_finish > len(data) - 2 * chunk
    assert sum(sizes) - before_finish < 2 * chunk
