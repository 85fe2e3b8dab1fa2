"""Download responses: streamed from the object store, with Range, ETag and a digest."""

from __future__ import annotations

import base64
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from minio import Minio

from services.api.errors import Gone, NotReady, RangeNotSatisfiable
from shared import object_store
from shared.formats import stored_media_type
from shared.repository import ExportRow

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]")
# Path separators and control characters (C0, DEL, C1) never reach a client in either form.
_NOT_IN_A_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")


def content_disposition(file_name: str) -> str:
    """``attachment`` with an ASCII-only ``filename`` and the UTF-8 ``filename*`` (RFC 6266).

    Neither form carries a path separator, a control character or a leading dot, so no client
    can be led to write outside its download folder, to a hidden file, or to split the header.
    """
    name = _NOT_IN_A_NAME.sub("_", file_name).strip().lstrip(".") or "export"
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = _UNSAFE_FILENAME.sub("_", folded).strip().lstrip(".") or "export"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """One ``bytes=`` range (RFC 9110); None means the whole file.

    Several ranges in one header are answered with the whole file, which RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("The requested range is not satisfiable")
        return ByteRange(max(0, size - suffix), size - 1) if size else _unsatisfiable()
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        _unsatisfiable()
    return ByteRange(start, end)


def _unsatisfiable() -> ByteRange:
    raise RangeNotSatisfiable("The requested range is not satisfiable")


def etag(row: ExportRow) -> str:
    return f'"{row.sha256}"'


async def download_response(
    request: Request, row: ExportRow, store: Minio, bucket: str
) -> Response:
    if row.status != "completed" or row.sha256 is None:
        raise NotReady(f"Export is not ready for download (status: {row.status})")
    try:
        info = await object_store.stat(store, bucket, row.object_key)
    except object_store.ObjectMissing as err:
        raise Gone("The export file is no longer available") from err
    size = info.size
    tag = etag(row)
    digest = base64.b64encode(bytes.fromhex(row.sha256)).decode("ascii")
    headers = {
        "Content-Type": stored_media_type(row.format, row.compression),
        "Content-Disposition": content_disposition(row.file_name),
        "ETag": tag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        # RFC 9530 and its predecessor RFC 3230: the digest of the whole file.
        "Repr-Digest": f"sha-256=:{digest}:",
        "Digest": f"sha-256={digest}",
        "X-Checksum-SHA256": row.sha256,
    }
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and tag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": tag})

    byte_range: ByteRange | None = None
    if_range = request.headers.get("if-range")
    if if_range is None or if_range.strip() == tag:
        try:
            byte_range = parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable:
            return Response(
                status_code=416,
                headers={"Content-Range": f"bytes */{size}", "ETag": tag},
                content=b"",
            )
    if byte_range is None:
        headers["Content-Length"] = str(size)
        body = object_store.stream_object(store, bucket, row.object_key)
        return StreamingResponse(body, status_code=200, headers=headers)
    headers["Content-Length"] = str(byte_range.length)
    headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
    body = object_store.stream_object(
        store, bucket, row.object_key, offset=byte_range.start, length=byte_range.length
    )
    return StreamingResponse(body, status_code=206, headers=headers)
