"""The S3 adapter (MinIO in production, SeaweedFS embedded), used through threads.

The ``minio`` client is synchronous; every call here runs in a worker thread so no event
loop ever blocks on the network.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.datatypes import Part
from minio.error import S3Error
from minio.helpers import genheaders
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from shared.settings import Settings

DOWNLOAD_CHUNK = 1024 * 1024
# Parts uploading at once. PostgreSQL renders 30-50 MB/s per export (bench/), so two 8 MiB
# parts in flight keep up with it even over a slow link; each more costs a part of memory.
PARALLEL_PARTS = 2
READ_AHEAD = 4  # chunks read from the store ahead of the client: 4 MiB per download at most


class ObjectStoreError(Exception):
    """The object store failed or was unreachable (transient from the worker's view)."""


class ObjectMissing(ObjectStoreError):
    """The object does not exist."""


def make_client(settings: Settings) -> Minio:
    """One client per process, created in a lifespan."""
    return Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=settings.s3_secure,
        region=settings.s3_region,
    )


def ensure_bucket(client: Minio, bucket: str, *, retention_seconds: int) -> None:
    """Create the bucket if missing and set the lifecycle backstop (TTL + 1 day)."""
    if not client.bucket_exists(bucket):
        try:
            client.make_bucket(bucket)
        except S3Error as err:
            if err.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
    days = max(1, -(-retention_seconds // 86400)) + 1
    rule = Rule(
        ENABLED,
        rule_filter=Filter(prefix="exports/"),
        rule_id="codex-exports-backstop",
        expiration=Expiration(days=days),
    )
    try:
        client.set_bucket_lifecycle(bucket, LifecycleConfig([rule]))
    except S3Error:
        # Some S3 servers do not support lifecycle rules; the janitor is the primary mechanism.
        pass


async def open_store(settings: Settings) -> Minio:
    """The process's client, its bucket made ready (created, lifecycle backstop set).

    For a service's lifespan; the blocking client calls run in a thread.
    """
    client = make_client(settings)
    await asyncio.to_thread(
        ensure_bucket, client, settings.s3_bucket, retention_seconds=settings.retention_seconds
    )
    return client


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    size: int
    etag: str
    metadata: dict[str, str]


class _Aborted(Exception):
    """Raised inside the upload thread so the client aborts the multipart upload."""


class _QueueReader:
    """A file-like reader fed from the event loop through a bounded queue."""

    def __init__(self, max_chunks: int) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(max_chunks)
        self._rest = b""  # what the last read took of a chunk beyond its size
        self._done = False

    def read(self, size: int) -> bytes:
        """The next ``size`` bytes (fewer at the end), in one ``bytes`` built once.

        The chunks are written into a ``BytesIO`` as they come, each freed at once, and its
        value is taken without a copy: a part is in memory once, never twice (a growing
        ``bytearray`` and then its ``bytes`` copy held two parts for each part read).
        """
        out = io.BytesIO()
        out.write(self._rest)
        have = len(self._rest)
        self._rest = b""
        while not self._done and have < size:
            item = self._queue.get()
            if item is None:
                self._done = True
            elif isinstance(item, BaseException):
                raise _Aborted(str(item)) from item
            else:
                need = size - have
                if len(item) > need:
                    self._rest = item[need:]
                    item = item[:need]
                out.write(item)
                have += len(item)
            del item
        return out.getvalue()


class StreamingUpload:
    """Stream bytes into a multipart upload while hashing them, in two steps.

    ``seal`` uploads every part and returns the SHA-256; no object exists yet (only an
    incomplete multipart upload, which the sweep aborts when it is old). ``complete`` then makes
    the object appear in one request (CompleteMultipartUpload), so the caller chooses the
    moment: the worker does it while it holds its export's row (``shared.repository.complete``),
    so no object is ever made for a row that is gone. ``finish`` does both at once.

    ``write`` applies back-pressure through a bounded queue (memory stays flat: the queue and
    ``PARALLEL_PARTS`` parts, the one being filled included); ``abort`` aborts the
    multipart upload at any moment before ``complete``, so no partial object is ever left.
    Every file is a multipart upload, a small one too (one part): a single PUT would make
    the object visible before the caller could decide.
    """

    def __init__(
        self,
        client: Minio,
        bucket: str,
        key: str,
        content_type: str,
        *,
        part_size: int,
        metadata: dict[str, str] | None = None,
    ) -> None:
        # Half a part queued: enough for rendering and uploading to overlap (the upload thread
        # drains it continuously), little enough that what a long export holds at its worst
        # moment (the queue and PARALLEL_PARTS parts, the one being filled included) stays
        # close to what a short one holds.
        self._reader = _QueueReader(max_chunks=16)
        self._sha = hashlib.sha256()
        self.size = 0
        self._pending = bytearray()
        self._chunk = 256 * 1024
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_size = part_size
        headers: dict[str, str | list[str] | tuple[str]] = dict(metadata or {})
        self._headers = genheaders(headers, None, None, None, False)
        self._headers["Content-Type"] = content_type or "application/octet-stream"
        self._result: asyncio.Future[list[Part]] | None = None
        self._closed = False  # no more writes (sealed or aborted)
        self._upload_id: str | None = None
        self._parts: list[Part] | None = None
        self._state: str = "open"  # open, sealed, completed, aborted

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._result = loop.run_in_executor(None, self._run)

    def _run(self) -> list[Part]:
        """The upload thread: every part, uploaded as it fills; nothing completed here."""
        client, bucket, key = self._client, self._bucket, self._key
        upload_id = client._create_multipart_upload(bucket, key, dict(self._headers))
        self._upload_id = upload_id
        try:
            return self._upload_parts(upload_id)
        except BaseException:
            with contextlib.suppress(Exception):
                client._abort_multipart_upload(bucket, key, upload_id)
            raise

    def _upload_parts(self, upload_id: str) -> list[Part]:
        # A part is read only once it may upload at once: PARALLEL_PARTS parts in memory at
        # most, the one being read included. The part is handed over in a list the upload
        # empties, so it is freed as soon as it is sent, before its room is given back by the
        # future's callback (a submitted call's arguments live until the pool's thread drops
        # its work item, after the callbacks); a failed part is done before its room is free,
        # so the next round sees the failure.
        room = threading.BoundedSemaphore(PARALLEL_PARTS)
        futures: list[concurrent.futures.Future[str]] = []
        client, bucket, key, part_size = self._client, self._bucket, self._key, self._part_size

        def upload(number: int, held: list[bytes]) -> str:
            return str(client._upload_part(bucket, key, held.pop(), None, upload_id, number))

        with concurrent.futures.ThreadPoolExecutor(PARALLEL_PARTS) as pool:
            while True:
                room.acquire()
                try:
                    _raise_first_failure(futures)  # a part failed: stop now, not at the end
                    data = self._reader.read(part_size)
                except BaseException:
                    room.release()
                    raise
                last = len(data) < part_size
                if not data and futures:  # the last part was exactly full
                    room.release()
                    break
                held = [data]
                del data
                future = pool.submit(upload, len(futures) + 1, held)
                del held
                future.add_done_callback(lambda _: room.release())
                futures.append(future)
                if last:
                    break
        return [Part(n, f.result()) for n, f in enumerate(futures, start=1)]

    def _started(self) -> asyncio.Future[list[Part]]:
        if self._result is None:
            raise RuntimeError("StreamingUpload.start() was not called")
        return self._result

    async def _put(self, item: bytes | BaseException | None) -> None:
        result = self._started()
        while True:
            if result.done():
                # The upload thread ended early: surface its error, as seal() does.
                err = result.exception()
                if err is not None and not isinstance(err, _Aborted):
                    raise _upload_error(err) from err
                raise ObjectStoreError("upload ended before all data was written")
            try:
                self._reader._queue.put_nowait(item)
            except queue.Full:
                await asyncio.sleep(0.002)
            else:
                return

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._sha.update(data)
        self.size += len(data)
        self._pending += data
        # Queued in chunks of exactly ``_chunk`` bytes, whatever the writes' sizes: the queue
        # holds so many chunks, so its bytes are bounded only if each chunk is (a spool's
        # 1 MiB writes, queued whole, made it hold four times what it should).
        while len(self._pending) >= self._chunk:
            with memoryview(self._pending) as view:
                chunk = bytes(view[: self._chunk])
            del self._pending[: self._chunk]
            await self._put(chunk)

    async def seal(self) -> str:
        """Upload what is left; return the SHA-256 hex digest. The object does not exist yet."""
        result = self._started()
        if self._pending:
            await self._put(bytes(self._pending))
            self._pending.clear()
        await self._put(None)
        self._closed = True
        try:
            self._parts = await result
        except _Aborted:
            raise
        except Exception as err:
            raise _upload_error(err) from err
        self._state = "sealed"
        return self._sha.hexdigest()

    async def complete(self) -> None:
        """Make the sealed upload the object (one request; the object appears at once)."""
        if self._state != "sealed" or self._upload_id is None or self._parts is None:
            raise RuntimeError(f"cannot complete an upload that is {self._state}")
        upload_id, parts = self._upload_id, self._parts

        def _complete() -> None:
            self._client._complete_multipart_upload(self._bucket, self._key, upload_id, parts)

        # Marked first: once the request is sent the object may exist, so abort() must no
        # longer count on there being nothing.
        self._state = "completed"
        try:
            await asyncio.to_thread(_complete)
        except Exception as err:
            # Refused, or no answer: abort, so the upload either is the object (the request did
            # complete it) or is gone (the abort ends it); never left incomplete for an hour.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self._client._abort_multipart_upload, self._bucket, self._key, upload_id
                )
            raise _upload_error(err) from err

    async def finish(self) -> str:
        """Seal and complete at once; return the SHA-256 hex digest of what was written."""
        digest = await self.seal()
        await self.complete()
        return digest

    async def abort(self, reason: str = "aborted") -> None:
        """Abort the multipart upload unless it was completed (idempotent); never raises."""
        if self._result is None or self._state in ("completed", "aborted"):
            return
        self._state = "aborted"
        if not self._closed and not self._result.done():
            # Drain space so the sentinel always fits, then tell the reader to fail.
            while True:
                try:
                    self._reader._queue.put_nowait(_Aborted(reason))
                    break
                except queue.Full:
                    try:
                        self._reader._queue.get_nowait()
                    except queue.Empty:
                        pass
        self._closed = True
        await asyncio.wait([self._result])  # the thread's own error is not ours to raise
        if self._result.cancelled() or self._result.exception() is not None:
            return  # the thread failed, and aborted its upload itself
        # Every part was uploaded (sealed, or sealing as the abort came): abort it here.
        upload_id = self._upload_id
        if upload_id is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self._client._abort_multipart_upload, self._bucket, self._key, upload_id
                )


def _raise_first_failure(futures: list[concurrent.futures.Future[str]]) -> None:
    for future in futures:
        if future.done() and (err := future.exception()) is not None:
            raise err


def _upload_error(err: BaseException) -> ObjectStoreError:
    """What the upload thread's ``err`` means to the worker: the store refused or was away."""
    if isinstance(err, S3Error):
        return ObjectStoreError(f"object store refused the upload: {err.code}")
    return ObjectStoreError(f"object store unreachable: {err}")


async def stat(client: Minio, bucket: str, key: str) -> ObjectInfo:
    def _stat() -> ObjectInfo:
        try:
            obj = client.stat_object(bucket, key)
        except S3Error as err:
            if err.code in {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}:
                raise ObjectMissing(key) from err
            raise ObjectStoreError(err.code or "error") from err
        return ObjectInfo(
            size=obj.size or 0, etag=obj.etag or "", metadata=dict(obj.metadata or {})
        )

    return await asyncio.to_thread(_stat)


async def stream_object(
    client: Minio, bucket: str, key: str, *, offset: int = 0, length: int = 0
) -> AsyncIterator[bytes]:
    """Yield an object's bytes (a range of them) in chunks, never holding it whole.

    A thread of its own reads ahead while the caller sends (at most ``READ_AHEAD`` chunks
    wait between them), so reading from the store and writing to the client overlap instead of
    taking turns; a dedicated thread, because a long download must not hold one of the loop's
    few executor threads. When the caller stops early (a client went away), the thread stops
    after the chunk it is reading and closes the response.
    """

    def _open() -> Any:
        try:
            return client.get_object(bucket, key, offset=offset, length=length)
        except S3Error as err:
            if err.code in {"NoSuchKey", "NoSuchObject"}:
                raise ObjectMissing(key) from err
            raise ObjectStoreError(err.code or "error") from err

    response = await asyncio.to_thread(_open)
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(READ_AHEAD)
    stop = threading.Event()

    def _hand_over(item: bytes | BaseException | None) -> bool:
        """Queue one item from the reading thread; False once the caller has stopped."""
        handed = asyncio.run_coroutine_threadsafe(chunks.put(item), loop)
        while not stop.is_set():
            try:
                handed.result(timeout=0.5)
            except concurrent.futures.TimeoutError:
                continue
            return True
        handed.cancel()
        return False

    def _read_ahead() -> None:
        try:
            for chunk in response.stream(DOWNLOAD_CHUNK):
                if not _hand_over(chunk):
                    return
            _hand_over(None)
        except Exception as err:  # the store failed mid-object: the caller raises it
            _hand_over(ObjectStoreError(f"object store read failed: {err}"))
        finally:
            response.close()
            response.release_conn()

    threading.Thread(target=_read_ahead, name=f"download {key}", daemon=True).start()
    try:
        while True:
            item = await chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while not chunks.empty():  # unblock a reader waiting for room
            chunks.get_nowait()


class _ObjectReader(io.RawIOBase):
    """An object's response body as a raw stream whose failures are ``ObjectStoreError``."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return int(self._response.readinto(buffer))
        except Exception as err:
            raise ObjectStoreError(f"object store read failed: {err}") from err


@contextlib.contextmanager
def open_object(client: Minio, bucket: str, key: str) -> Iterator[io.BufferedReader]:
    """A blocking, buffered file-like reader of an object, for code running in a thread
    (the api's comparison of two exports): bytes arrive as they are read, never the whole
    object; the response is closed when the block ends."""
    try:
        response = client.get_object(bucket, key)
    except S3Error as err:
        if err.code in {"NoSuchKey", "NoSuchObject"}:
            raise ObjectMissing(key) from err
        raise ObjectStoreError(err.code or "error") from err
    except Exception as err:
        raise ObjectStoreError(f"object store unreachable: {err}") from err
    try:
        yield io.BufferedReader(_ObjectReader(response), DOWNLOAD_CHUNK)
    finally:
        response.close()
        response.release_conn()


async def remove(client: Minio, bucket: str, key: str) -> None:
    """Delete an object; a missing object is not an error (idempotent). A refusal or an
    unreachable store raises ``ObjectStoreError``."""

    def _remove() -> None:
        try:
            client.remove_object(bucket, key)
        except S3Error as err:
            if err.code not in {"NoSuchKey", "NoSuchObject"}:
                raise ObjectStoreError(err.code or "error") from err
        except Exception as err:
            raise ObjectStoreError(f"object store unreachable: {err}") from err

    await asyncio.to_thread(_remove)


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime | None


async def list_objects(client: Minio, bucket: str, prefix: str) -> list[StoredObject]:
    """Objects under a prefix (for sweeps and tests)."""

    def _list() -> list[StoredObject]:
        return [
            StoredObject(o.object_name or "", o.size or 0, o.last_modified)
            for o in client.list_objects(bucket, prefix=prefix, recursive=True)
        ]

    return await asyncio.to_thread(_list)


async def abort_stale_uploads(
    client: Minio, bucket: str, prefix: str, *, older_than: datetime
) -> int:
    """Abort incomplete multipart uploads started before ``older_than``.

    The minio client has no public call for this; its lower-level multipart calls work
    against MinIO and SeaweedFS alike (RECIPES.md).
    """

    def _abort() -> int:
        aborted = 0
        key_marker: str | None = None
        upload_marker: str | None = None
        while True:
            result = client._list_multipart_uploads(
                bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=upload_marker
            )
            for upload in result.uploads:
                started = upload.initiated_time
                if upload.upload_id and (started is None or started < older_than):
                    client._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
                    aborted += 1
            if not result.is_truncated:
                return aborted
            key_marker, upload_marker = result.next_key_marker, result.next_upload_id_marker

    try:
        return await asyncio.to_thread(_abort)
    except S3Error as err:
        raise ObjectStoreError(err.code or "error") from err
