"""Compression: a streaming stage between any format's bytes and the upload (SPEC §10).

``stage(compression, write)`` wraps the upload's ``write``: the renderers write plain bytes into
the stage, the stage writes the stored bytes, so the upload's size and SHA-256 are those of the
stored (compressed) file.

gzip is one RFC 1952 member written here around zlib's raw deflate, so every byte is fixed by
the input alone: a constant 10-byte header (no modification time, no file name, no extra
fields, operating system 255 "unknown", as Python's ``gzip`` writes it), the deflate stream at
level 6 (gzip's own default), and the CRC-32 and length trailer. zlib's gzip wrapper would write
the build's operating system code instead, so the same export could differ between machines.
zlib works on whatever each write brings (up to a ``COPY`` chunk, or a Python batch) and
releases the GIL while it does, so memory stays flat and the upload thread keeps running.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, assert_never

from shared.formats import Compression

Write = Callable[[bytes], Awaitable[Any]]

GZIP_HEADER = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 255))
"""Magic, deflate, no flags, modification time 0, no extra flags, OS unknown."""
GZIP_LEVEL = 6


class Stage(Protocol):
    """What the renderers write into: ``write`` the plain bytes, then ``finish`` once."""

    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> None: ...


class _Plain:
    def __init__(self, write: Write) -> None:
        self._write = write

    async def write(self, data: bytes) -> None:
        await self._write(data)

    async def finish(self) -> None:
        pass


class Gzip:
    """A gzip member streamed through ``write``: header, deflate blocks as they fill, trailer."""

    def __init__(self, write: Write, *, level: int = GZIP_LEVEL) -> None:
        self._write = write
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        self._started = False

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return GZIP_HEADER

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        out = self._head() + self._deflate.compress(data)
        if out:
            await self._write(out)

    async def finish(self) -> None:
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        await self._write(self._head() + self._deflate.flush() + trailer)


def stage(compression: Compression | str, write: Write) -> Stage:
    """The stage for ``compression`` in front of ``write``."""
    match Compression(compression):
        case Compression.NONE:
            return _Plain(write)
        case Compression.GZIP:
            return Gzip(write)
        case other:
            assert_never(other)
