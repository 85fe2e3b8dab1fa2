"""``codex-exports export …`` and ``codex-exports login``: the HTTP API from a terminal or script.

Where things come from:

- The API: ``--api URL``, else ``EXPORTS_API_URL``, else a running ``codex-exports dev``
  (``http://127.0.0.1:$EXPORTS_API_PORT`` from its state file).
- The token: ``--token``, else ``EXPORTS_TOKEN``, else the one ``codex-exports login`` saved in
  ``$XDG_CONFIG_HOME/codex-exports/token`` (``~/.config`` when unset; directory 700, file 600).

Output: people get tables and sentences on stdout; progress bars and notes go to stderr (a bar
redrawn in place on a terminal, a plain line every few seconds otherwise; ``--quiet`` silences
them). ``--json`` prints exactly one JSON document on stdout for scripts. Every failure prints the
server's ``message`` (or what went wrong locally) on stderr — as ``{"error", "message", "status"}``
with ``--json`` — and exits non-zero:

==== ==========================================================================================
code meaning
==== ==========================================================================================
0    success
1    the server refused (its message is printed), the export failed or was cancelled, or the
     API could not be reached
2    usage: bad arguments, no API address, no token
3    the downloaded file's SHA-256 does not match the export's (the partial file is removed)
130  interrupted (Ctrl-C); an export being waited for keeps running on the server
==== ==========================================================================================

Downloads go to ``FILE.part`` first and resume from its size with ``Range`` + ``If-Range`` (the
export's ETag, which is its SHA-256), retrying a few times on connection errors; the file gets its
final name only after its SHA-256 matched. A gzip export (``create --gzip``) is stored and
downloaded compressed (``….json.gz``); ``--decompress`` writes the plain file instead
(``….json``): the compressed bytes are downloaded and verified as always, then unpacked in a
stream into the plain file, and only the plain file is kept.

httpx is imported lazily, so the other ``codex-exports`` commands never need it.
"""

from __future__ import annotations

import argparse
import getpass
import gzip
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from services.cli.devstate import read_state
from shared.formats import (
    COMPRESSIONS,
    ENDED_STATUSES,
    FORMATS,
    Compression,
    ExportFormat,
    ExportType,
)

if TYPE_CHECKING:
    import httpx

EXPORTS_PATH = "/api/v1/user/exports/series"
SCHEDULES_PATH = "/api/v1/user/exports/schedules"
LIBRARIES_PATH = "/api/v1/libraries"
LOGIN_PATH = "/api/v1/auth/login"

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CHECKSUM = 3
EXIT_INTERRUPTED = 130

ENDED = tuple(s.value for s in ENDED_STATUSES)
DOWNLOAD_RETRIES = 5
POLL_SECONDS = 0.5
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class CliError(Exception):
    """A failure to report: the message for people, the API's code, the exit status."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "Error",
        status: int | None = None,
        exit_code: int = EXIT_ERROR,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------
# Where the API and the token come from


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "codex-exports"


def token_path() -> Path:
    return config_dir() / "token"


def save_token(token: str) -> Path:
    """Write the token readable by the user only (directory 700, file 600), atomically."""
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a file left by an earlier run
    tmp.replace(path)
    return path


def load_token() -> str | None:
    try:
        token = token_path().read_text().strip()
    except OSError:
        return None
    return token or None


def resolve_api(value: str | None) -> str:
    if value:
        return value.rstrip("/")
    env = os.environ.get("EXPORTS_API_URL")
    if env:
        return env.rstrip("/")
    state = read_state()
    if state and state.get("EXPORTS_API_PORT"):
        return f"http://127.0.0.1:{state['EXPORTS_API_PORT']}"
    raise CliError(
        "No API address: pass --api URL, set EXPORTS_API_URL, or start `codex-exports dev`",
        code="Usage",
        exit_code=EXIT_USAGE,
    )


def resolve_token(value: str | None) -> str:
    token = value or os.environ.get("EXPORTS_TOKEN") or load_token()
    if not token:
        raise CliError(
            "Not signed in: run `codex-exports login`, or pass --token / set EXPORTS_TOKEN",
            code="Usage",
            exit_code=EXIT_USAGE,
        )
    return token


# ---------------------------------------------------------------------------------------------
# HTTP


def _api_error(response: httpx.Response) -> CliError:
    """The server's ``{"error", "message"}`` as a CliError (plain text bodies too)."""
    code, message = "HttpError", ""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        message = str(body.get("message") or "")
    if not message:
        text = response.text.strip()[:200] if response.content else ""
        message = text or f"HTTP {response.status_code} {response.reason_phrase}"
    if response.status_code == 401:
        message += " (run `codex-exports login`, or pass --token)"
    return CliError(message, code=code, status=response.status_code)


class Api:
    """A thin synchronous client of the exports API."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        import httpx

        self.base_url = base_url
        headers = {"User-Agent": "codex-exports-cli", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        ok: Sequence[int] = (200,),
        params: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        import httpx

        try:
            response = self.http.request(
                method,
                path,
                json=body,
                headers=headers,
                params=params,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
            )
        except httpx.TransportError as err:
            raise self.unreachable(err) from err
        if response.status_code not in ok:
            raise _api_error(response)
        return response.json() if response.content else None

    def unreachable(self, err: Exception) -> CliError:
        return CliError(
            f"Cannot reach the API at {self.base_url}: {err or type(err).__name__}",
            code="Unreachable",
        )

    def export(self, export_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"{EXPORTS_PATH}/{export_id}")
        return result


def _export_id(value: str) -> str:
    """An export id as the user typed it; anything that is not a UUID is refused locally."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CliError(f"Not an export id: {value!r}", code="Usage", exit_code=EXIT_USAGE) from None


# ---------------------------------------------------------------------------------------------
# Progress on stderr


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover - the loop always returns


class Progress:
    """A progress bar (terminal) or a plain status line every few seconds (pipe, log file)."""

    WIDTH = 24

    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and stream.isatty()
        self._drawn = False
        self._last_draw = 0.0
        self._last_text = ""
        self._start: tuple[float, int] | None = None
        self._label = ""

    def start(self, label: str) -> None:
        self.finish()
        self._label = label
        self._start = None
        self._last_text = ""
        self._last_draw = 0.0

    def _eta(self, done: int, total: int | None) -> str:
        now = time.monotonic()
        if self._start is None or done < self._start[1]:
            self._start = (now, done)
            return ""
        t0, d0 = self._start
        if total is None or done <= d0 or now - t0 < 0.2:
            return ""
        rate = (done - d0) / (now - t0)
        return f"ETA {_duration((total - done) / rate)}" if rate > 0 else ""

    def update(self, done: int, total: int | None, unit: str, status: str = "") -> None:
        if not self.enabled:
            return
        eta = self._eta(done, total) if done else ""
        if unit == "bytes":
            amount = f"{human_size(done)}" + (f" / {human_size(total)}" if total else "")
        else:
            amount = f"{done:,}" + (f"/{total:,}" if total is not None else "") + f" {unit}"
        share = min(1.0, done / total) if total else 0.0
        percent = f"{share * 100:3.0f}%" if total else ""
        parts = [p for p in (status, percent, amount, eta) if p]
        now = time.monotonic()
        if self.tty:
            if now - self._last_draw < 0.1 and done != total:
                return
            filled = int(share * self.WIDTH)
            bar = "[" + "#" * filled + "." * (self.WIDTH - filled) + "]"
            line = f"\r{self._label} {bar} " + "  ".join(parts)
            self.stream.write(line.ljust(len(self._last_text)))
            self._last_text = line
            self._drawn = True
        else:
            text = f"{self._label}: " + ", ".join(parts)
            key = f"{status}|{done == total}"
            if now - self._last_draw < 3.0 and key == self._last_text:
                return
            self.stream.write(text + "\n")
            self._last_text = key
        self._last_draw = now
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.enabled:
            return
        self.finish()
        self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
            self._last_text = ""


# ---------------------------------------------------------------------------------------------
# Text output


def _local_time(value: str | None) -> str:
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _status_text(export: dict[str, Any]) -> str:
    status = str(export["status"])
    total, written = export.get("rowsTotal"), export.get("rowsWritten") or 0
    if status == "running" and total:
        return f"running {min(100, written * 100 // total)}%"
    return status


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], out: TextIO) -> None:
    body = [list(r) for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]
    for line in (list(headers), *body):
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")


def _format_text(export: dict[str, Any]) -> str:
    """``JSON``, or ``JSON+GZIP`` for a compressed export."""
    text = str(export["format"]).upper()
    return f"{text}+{str(export['compression']).upper()}" if _compressed(export) else text


def print_export(export: dict[str, Any], out: TextIO) -> None:
    rows = export.get("rowCount")
    lines = [
        ("ID", export["id"]),
        ("Status", _status_text(export)),
        ("Type", export["exportType"]),
        ("Format", _format_text(export)),
        ("Libraries", ", ".join(export.get("libraryNames") or []) or "-"),
        ("Fields", ", ".join(export.get("fields") or []) or "-"),
        ("Book fields", ", ".join(export.get("bookFields") or []) or "-"),
        ("Rows", "-" if rows is None else f"{rows:,}"),
        ("Size", human_size(export.get("fileSizeBytes"))),
        ("SHA-256", export.get("sha256") or "-"),
        ("File", export.get("fileName") or "-"),
        ("Created", _local_time(export.get("createdAt"))),
        ("Started", _local_time(export.get("startedAt"))),
        ("Completed", _local_time(export.get("completedAt"))),
        ("Expires", _local_time(export.get("expiresAt"))),
    ]
    if export.get("error"):
        lines.append(("Error", export["error"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.write(f"{key + ':':<{width + 1}} {value}\n")


def _emit_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Downloads


def names_a_directory(output: str) -> bool:
    """``-o backups/`` (a trailing separator) or an existing directory: save inside it, under
    the server's file name; the directory is created when missing. Anything else is a file."""
    separators = tuple(s for s in (os.sep, os.altsep, "/") if s)
    return output.endswith(separators) or Path(output).expanduser().is_dir()


def _compressed(export: dict[str, Any]) -> bool:
    return str(export.get("compression") or Compression.NONE) != Compression.NONE


def _target_path(output: str | None, export: dict[str, Any], *, decompress: bool = False) -> Path:
    name = Path(str(export.get("fileName") or f"export-{export['id']}")).name
    suffix = COMPRESSIONS[Compression.GZIP].suffix
    if decompress and _compressed(export) and name.endswith(suffix):
        name = name[: -len(suffix)]  # the plain file's name: codex-….json
    if output is None:
        return Path.cwd() / name
    path = Path(output).expanduser()
    return path / name if names_a_directory(output) else path


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _decompress_into(stored: Path, target: Path) -> None:
    """Unpack the verified gzip file ``stored`` into ``target`` (streamed; 1 MiB at a time)."""
    plain = target.with_name(target.name + ".unpacking")
    try:
        with gzip.open(stored, "rb") as source, plain.open("wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
    except (OSError, EOFError) as err:
        plain.unlink(missing_ok=True)
        raise CliError(f"Cannot decompress {stored.name}: {err}", code="Decompress") from err
    os.replace(plain, target)
    stored.unlink()


def download_export(
    api: Api,
    export: dict[str, Any],
    target: Path,
    progress: Progress,
    *,
    decompress: bool = False,
    retries: int = DOWNLOAD_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Download into ``target.part``, resuming and retrying; verify; rename to ``target``.

    With ``decompress`` and a compressed export, the stored bytes go to ``target.gz.part`` and
    are verified there, then unpacked into ``target``. Returns ``{"id", "file", "bytes",
    "sha256", "resumedFrom", "storedBytes", "decompressed"}``: ``sha256`` and ``storedBytes``
    are the stored file's, ``bytes`` the saved file's.
    """
    import httpx

    export_id = str(export["id"])
    expected = export.get("sha256")
    if export.get("status") != "completed" or not expected:
        # Not downloadable: let the server say why (409 not ready, 410 gone, 404 …).
        api.request("GET", f"{EXPORTS_PATH}/{export_id}/download", headers={"Range": "bytes=0-0"})
        raise CliError(f"Export {export_id} has no SHA-256 to verify a download against")
    size: int | None = export.get("fileSizeBytes")
    unpack = decompress and _compressed(export)
    suffix = COMPRESSIONS[Compression(export.get("compression") or Compression.NONE)].suffix
    part = target.with_name(target.name + (suffix if unpack else "") + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    resumed_from = part.stat().st_size if part.exists() else 0
    failures = 0
    progress.start(f"download {target.name}")
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()  # longer than the file: it cannot be a prefix of it
            offset = 0
        if size is not None and offset == size:
            break
        headers = {"Accept": "*/*"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = f'"{expected}"'
        received = 0
        try:
            with api.http.stream(
                "GET", f"{EXPORTS_PATH}/{export_id}/download", headers=headers
            ) as response:
                if response.status_code == 416:
                    part.unlink(missing_ok=True)
                    continue
                if response.status_code not in (200, 206):
                    response.read()
                    raise _api_error(response)
                append = response.status_code == 206
                if append:
                    match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                    if match is None or int(match.group(1)) != offset:
                        raise CliError(
                            "The server answered a resumed download with the wrong range "
                            f"({response.headers.get('content-range')!r})"
                        )
                if size is None:
                    total = response.headers.get("content-length")
                    size = (offset if append else 0) + int(total) if total else None
                start = offset if append else 0
                with part.open("ab" if append else "wb") as out:
                    for chunk in response.iter_bytes():  # as they arrive: nothing buffered is lost
                        out.write(chunk)
                        received += len(chunk)
                        progress.update(start + received, size, "bytes")
        except httpx.TransportError as err:
            failures = 0 if received else failures + 1
            kept = part.stat().st_size if part.exists() else 0
            if failures > retries:
                progress.finish()
                raise CliError(
                    f"Download interrupted ({err or type(err).__name__}); {kept:,} bytes kept in "
                    f"{part}: run the same command again to resume",
                    code="Interrupted",
                ) from err
            progress.note(
                f"connection lost ({type(err).__name__}): resuming at byte {kept:,}"
                f" (retry {max(failures, 1)}/{retries})"
            )
            sleep(min(0.25 * 2**failures, 4.0))
            continue
        if size is None:
            break
        if (part.stat().st_size if part.exists() else 0) < size:
            failures += 0 if received else 1
            if failures > retries:
                raise CliError(f"The server kept ending the download early; kept {part}")
            continue
        break
    progress.finish()
    actual = _sha256_of(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise CliError(
            f"SHA-256 mismatch for {target.name}: expected {expected}, got {actual}. "
            f"The damaged download ({part.name}) was removed; run the download again.",
            code="ChecksumMismatch",
            exit_code=EXIT_CHECKSUM,
        )
    stored_bytes = part.stat().st_size
    if unpack:
        _decompress_into(part, target)
    else:
        os.replace(part, target)
    return {
        "id": export_id,
        "file": str(target),
        "bytes": target.stat().st_size,
        "sha256": actual,
        "resumedFrom": resumed_from,
        "storedBytes": stored_bytes,
        "decompressed": unpack,
    }


def _saved_line(saved: dict[str, Any]) -> str:
    unpacked = f", decompressed from {saved['storedBytes']:,}" if saved["decompressed"] else ""
    return f"Saved {saved['file']} ({saved['bytes']:,} bytes{unpacked}, SHA-256 verified)\n"


# ---------------------------------------------------------------------------------------------
# Waiting for an export


def wait_for(api: Api, export: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Poll until the export has ended, drawing rows and ETA; return its last state."""
    progress.start(f"export {str(export['id'])[:8]}")
    while export["status"] not in ENDED:
        progress.update(
            int(export.get("rowsWritten") or 0), export.get("rowsTotal"), "rows", export["status"]
        )
        time.sleep(POLL_SECONDS)
        export = api.export(str(export["id"]))
    if export["status"] == "completed":
        rows = int(export.get("rowCount") or 0)
        progress.update(rows, rows, "rows", "completed")
    progress.finish()
    return export


def _ended_badly(export: dict[str, Any]) -> CliError | None:
    if export["status"] == "failed":
        return CliError(f"Export failed: {export.get('error') or 'no reason given'}", code="Failed")
    if export["status"] == "cancelled":
        return CliError("Export was cancelled", code="Cancelled")
    return None


# ---------------------------------------------------------------------------------------------
# Resolving libraries and fields


def resolve_libraries(api: Api, values: Sequence[str], all_libraries: bool) -> list[str]:
    """Library ids for names or ids (``GET /api/v1/libraries``), in the order given."""
    libraries: list[dict[str, str]] = api.request("GET", LIBRARIES_PATH)["libraries"]
    if all_libraries:
        if not libraries:
            raise CliError("You may read no libraries", code="NoLibraries")
        return [lib["id"] for lib in libraries]
    chosen: list[str] = []
    for value in values:
        chosen.append(_one_library(libraries, value))
    return list(dict.fromkeys(chosen))


def _one_library(libraries: list[dict[str, str]], value: str) -> str:
    wanted = value.strip()
    try:
        as_id = str(uuid.UUID(wanted))
    except ValueError:
        as_id = None
    if as_id is not None:
        # An id the caller may not read is passed on: the server answers "Unknown library".
        return as_id
    for matches in (
        [lib for lib in libraries if lib["name"] == wanted],
        [lib for lib in libraries if lib["name"].casefold() == wanted.casefold()],
    ):
        if len(matches) == 1:
            return matches[0]["id"]
        if len(matches) > 1:
            ids = ", ".join(lib["id"] for lib in matches)
            raise CliError(
                f"Library name {value!r} is ambiguous ({ids}): pass the id instead",
                code="AmbiguousLibrary",
            )
    names = ", ".join(repr(lib["name"]) for lib in libraries) or "none"
    raise CliError(f"Unknown library: {value} (yours: {names})", code="UnknownLibrary")


def _split(values: Sequence[str] | None) -> list[str]:
    return [key.strip() for value in values or () for key in value.split(",") if key.strip()]


def _group_fields(api: Api, groups: Sequence[str], export_type: str) -> tuple[list[str], list[str]]:
    """Series and book field keys of the named groups (anchors excluded)."""
    doc = api.request("GET", f"{EXPORTS_PATH}/fields")
    catalogs = []
    if export_type in ("series", "both"):
        catalogs.append(("fields", doc["fields"]))
    if export_type in ("books", "both"):
        catalogs.append(("bookFields", doc["bookFields"]))
    picked: dict[str, list[str]] = {"fields": [], "bookFields": []}
    for group in groups:
        found = False
        for name, catalog in catalogs:
            keys = [
                f["key"]
                for f in catalog
                if f["group"].casefold() == group.strip().casefold() and not f["isAnchor"]
            ]
            found = (
                found
                or bool(keys)
                or any(f["group"].casefold() == group.strip().casefold() for f in catalog)
            )
            picked[name] += keys
        if not found:
            known = sorted({f["group"] for _, catalog in catalogs for f in catalog})
            raise CliError(
                f"Unknown field group: {group} (groups: {', '.join(known)})", code="UnknownGroup"
            )
    return picked["fields"], picked["bookFields"]


# ---------------------------------------------------------------------------------------------
# Commands


def _cmd_login(args: argparse.Namespace, out: TextIO) -> int:
    username = args.username
    if not username:
        sys.stderr.write("Username: ")
        sys.stderr.flush()
        username = sys.stdin.readline().strip()
    password = args.password if args.password is not None else getpass.getpass("Password: ")
    api = Api(resolve_api(args.api), None)
    try:
        body = api.request("POST", LOGIN_PATH, body={"username": username, "password": password})
    finally:
        api.close()
    path = save_token(body["token"])
    if args.json:
        _emit_json(
            {"username": username, "expiresAt": body.get("expiresAt"), "tokenFile": str(path)}, out
        )
    else:
        until = _local_time(body.get("expiresAt"))
        out.write(f"Signed in as {username} (token valid until {until}, saved in {path})\n")
    return 0


def _cmd_fields(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    doc = api.request("GET", f"{EXPORTS_PATH}/fields")
    if args.json:
        _emit_json(doc, out)
        return 0
    for title, key in (("Series fields", "fields"), ("Book fields", "bookFields")):
        out.write(f"{title}:\n")
        rows = [
            [
                f["key"],
                f["label"],
                f["group"],
                " ".join(
                    flag
                    for flag, on in (
                        ("anchor", f["isAnchor"]),
                        ("multi", f["multiValue"]),
                        ("user", f["userSpecific"]),
                    )
                    if on
                ),
            ]
            for f in doc[key]
        ]
        _table(["KEY", "LABEL", "GROUP", "NOTES"], rows, out)
        out.write("\n")
    presets = doc.get("presets", {})
    out.write("Presets (--preset llm): series " + ", ".join(presets.get("llmSelect", [])) + "\n")
    out.write(
        "                        books  " + ", ".join(presets.get("llmSelectBooks", [])) + "\n"
    )
    out.write("--preset all selects every field; --group NAME selects a group.\n")
    return 0


def _cmd_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    doc = api.request("GET", EXPORTS_PATH)
    if args.json:
        _emit_json(doc, out)
        return 0
    exports = doc["exports"]
    if not exports:
        out.write("No exports yet. Create one with `codex-exports export create`.\n")
        return 0
    rows = [
        [
            e["id"],
            _local_time(e.get("createdAt")),
            e["exportType"],
            _format_text(e),
            _status_text(e),
            "-" if e.get("rowCount") is None else f"{e['rowCount']:,}",
            human_size(e.get("fileSizeBytes")),
            _local_time(e.get("expiresAt")),
            ", ".join(e.get("libraryNames") or []),
        ]
        for e in exports
    ]
    _table(
        ["ID", "CREATED", "TYPE", "FORMAT", "STATUS", "ROWS", "SIZE", "EXPIRES", "LIBRARIES"],
        rows,
        out,
    )
    return 0


def _cmd_get(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    export = api.export(_export_id(args.id))
    if args.json:
        _emit_json(export, out)
    else:
        print_export(export, out)
    return 0


def _cmd_cancel(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    export_id = _export_id(args.id)
    export = api.request("POST", f"{EXPORTS_PATH}/{export_id}/cancel", ok=(200, 202))
    if args.json:
        _emit_json(export, out)
    else:
        out.write(f"Cancelled export {export_id}\n")
    return 0


def _cmd_delete(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    export_id = _export_id(args.id)
    api.request("DELETE", f"{EXPORTS_PATH}/{export_id}", ok=(200, 202, 204))
    if args.json:
        _emit_json({"id": export_id, "deleted": True}, out)
    else:
        out.write(f"Deleted export {export_id}\n")
    return 0


def _cmd_download(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    export = api.export(_export_id(args.id))
    target = _target_path(args.output, export, decompress=args.decompress)
    progress = Progress(sys.stderr, enabled=not args.quiet)
    result = download_export(api, export, target, progress, decompress=args.decompress)
    if args.json:
        _emit_json(result, out)
    else:
        out.write(_saved_line(result))
    return 0


def _create_body(api: Api, args: argparse.Namespace) -> dict[str, Any]:
    """The create body the request options describe (``export create``, ``schedule create``)."""
    if bool(args.library) == bool(args.all_libraries):
        raise CliError(
            "Choose the libraries: --library NAME|ID (repeatable) or --all-libraries",
            code="Usage",
            exit_code=EXIT_USAGE,
        )
    library_ids = resolve_libraries(api, args.library or [], args.all_libraries)
    fields, book_fields = _split(args.fields), _split(args.book_fields)
    if args.group:
        group_series, group_books = _group_fields(api, args.group, args.type)
        fields = list(dict.fromkeys([*fields, *group_series]))
        book_fields = list(dict.fromkeys([*book_fields, *group_books]))
    body: dict[str, Any] = {
        "format": args.format,
        "exportType": args.type,
        "libraryIds": library_ids,
    }
    if fields:
        body["fields"] = fields
    if book_fields:
        body["bookFields"] = book_fields
    if args.preset:
        body["preset"] = args.preset
    if args.gzip:
        body["compression"] = Compression.GZIP.value
    return body


def _cmd_create(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = _create_body(api, args)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    export: dict[str, Any] = api.request(
        "POST", EXPORTS_PATH, body=body, headers=headers, ok=(200, 201, 202)
    )
    progress = Progress(sys.stderr, enabled=not args.quiet)
    if not (args.wait or args.output):
        if args.json:
            _emit_json(export, out)
        else:
            out.write(
                f"Export {export['id']} queued ({export['status']}). Follow it with "
                f"`codex-exports export get {export['id']}`\n"
            )
        return 0
    try:
        export = wait_for(api, export, progress)
    except KeyboardInterrupt:
        progress.finish()
        raise CliError(
            f"Interrupted: export {export['id']} keeps running on the server "
            f"(`codex-exports export cancel {export['id']}` stops it)",
            code="Interrupted",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    failure = _ended_badly(export)
    if failure is not None:
        if args.json:
            _emit_json(export, out)
        raise failure
    saved: dict[str, Any] | None = None
    if args.output:
        target = _target_path(args.output, export, decompress=args.decompress)
        saved = download_export(api, export, target, progress, decompress=args.decompress)
    if args.json:
        _emit_json({**export, "savedTo": saved["file"]} if saved else export, out)
    else:
        rows = export.get("rowCount") or 0
        size = human_size(export.get("fileSizeBytes"))
        out.write(f"Export {export['id']} completed: {rows:,} rows, {size}\n")
        if saved:
            out.write(_saved_line(saved))
        else:
            out.write(f"Download it with `codex-exports export download {export['id']}`\n")
    return 0


# --- export schedule … (SPEC §12) --------------------------------------------------------------


def _schedule_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise CliError(
            f"Not a schedule id: {value!r}", code="Usage", exit_code=EXIT_USAGE
        ) from None


def _schedule_create(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = {
        "request": _create_body(api, args),
        "cron": args.cron,
        "timezone": args.timezone,
        "keep": args.keep,
    }
    schedule = api.request("POST", SCHEDULES_PATH, body=body, ok=(201,))
    if args.json:
        _emit_json(schedule, out)
    else:
        out.write(
            f"Schedule {schedule['id']} created: {schedule['cron']} ({schedule['timezone']}),"
            f" keeps {schedule['keep']} runs; next run {_local_time(schedule['nextRunAt'])}\n"
        )
    return 0


def _schedule_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    doc = api.request("GET", SCHEDULES_PATH)
    if args.json:
        _emit_json(doc, out)
        return 0
    schedules = doc["schedules"]
    if not schedules:
        out.write("No schedules yet. Create one with `codex-exports export schedule create`.\n")
        return 0
    rows = [
        [
            s["id"],
            s["cron"],
            s["timezone"],
            str(s["keep"]),
            str(s["request"].get("format", "")),
            _local_time(s.get("nextRunAt")),
            _local_time(s.get("lastRunAt")),
            s.get("lastExportId") or "-",
        ]
        for s in schedules
    ]
    _table(
        ["ID", "CRON", "ZONE", "KEEP", "FORMAT", "NEXT RUN", "LAST RUN", "LAST EXPORT"], rows, out
    )
    return 0


def _schedule_delete(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    schedule_id = _schedule_id(args.id)
    api.request("DELETE", f"{SCHEDULES_PATH}/{schedule_id}", ok=(204,))
    if args.json:
        _emit_json({"id": schedule_id, "deleted": True}, out)
    else:
        out.write(f"Deleted schedule {schedule_id} (its exports stay until they expire)\n")
    return 0


def _schedule_run(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    schedule_id = _schedule_id(args.id)
    export = api.request("POST", f"{SCHEDULES_PATH}/{schedule_id}/run", ok=(202,))
    if args.json:
        _emit_json(export, out)
    else:
        out.write(
            f"Export {export['id']} queued ({export['status']}). Follow it with "
            f"`codex-exports export get {export['id']}`\n"
        )
    return 0


_SCHEDULE_COMMANDS: dict[str, Callable[[Api, argparse.Namespace, TextIO], int]] = {
    "create": _schedule_create,
    "list": _schedule_list,
    "delete": _schedule_delete,
    "run": _schedule_run,
}


def _cmd_schedule(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    return _SCHEDULE_COMMANDS[args.schedule_command](api, args, out)


# Comparing two large backups reads both files whole on the server: minutes for millions of rows.
CHANGES_TIMEOUT = 1800.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _cmd_changes(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    newer, older = _export_id(args.id), _export_id(args.since)
    doc = api.request(
        "GET",
        f"{EXPORTS_PATH}/{newer}/changes",
        params={"since": older},
        timeout=CHANGES_TIMEOUT,
    )
    if args.json:
        _emit_json(doc, out)
        return 0
    out.write(f"Changes from {older} to {newer}:\n")
    total = 0
    for kind, label in (("series", "Series"), ("books", "Books")):
        counts = doc[kind]
        total += counts["added"] + counts["removed"] + counts["changed"]
        out.write(
            f"  {label}: {counts['added']:,} added, {counts['removed']:,} removed, "
            f"{counts['changed']:,} changed\n"
        )
    items = doc["items"]
    if not items:
        out.write("No changes.\n")
        return 0
    rows = [
        [
            item["kind"],
            item["change"],
            item["id"],
            _CONTROL.sub(" ", item["name"]),
            ", ".join(item["fields"]) or "-",
        ]
        for item in items
    ]
    _table(["KIND", "CHANGE", "ID", "NAME", "FIELDS"], rows, out)
    if total > len(items):
        out.write(f"(the first {len(items):,} of {total:,} changes)\n")
    return 0


_EXPORT_COMMANDS: dict[str, Callable[[Api, argparse.Namespace, TextIO], int]] = {
    "schedule": _cmd_schedule,
    "create": _cmd_create,
    "list": _cmd_list,
    "get": _cmd_get,
    "cancel": _cmd_cancel,
    "delete": _cmd_delete,
    "download": _cmd_download,
    "fields": _cmd_fields,
    "changes": _cmd_changes,
}


def _report(err: CliError, as_json: bool) -> int:
    if as_json:
        payload = {"error": err.code, "message": err.message, "status": err.status}
        sys.stderr.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"error: {err.message}\n")
    return err.exit_code


def run_export(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        api = Api(resolve_api(args.api), resolve_token(args.token))
        try:
            return _EXPORT_COMMANDS[args.export_command](api, args, out)
        finally:
            api.close()
    except CliError as err:
        return _report(err, args.json)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED


def run_login(args: argparse.Namespace) -> int:
    try:
        return _cmd_login(args, sys.stdout)
    except CliError as err:
        return _report(err, args.json)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED


# ---------------------------------------------------------------------------------------------
# Argument parsing


_DECOMPRESS_HELP = "save a gzip export as the plain file (verified, then unpacked)"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        metavar="URL",
        help="API base URL (default: EXPORTS_API_URL or a running dev stack)",
    )
    common.add_argument(
        "--token", help="bearer token (default: EXPORTS_TOKEN or the one `login` saved)"
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return common


def _request_options(parser: argparse.ArgumentParser) -> None:
    """What an export holds: ``export create`` and ``export schedule create``."""
    parser.add_argument(
        "--type", choices=[t.value for t in ExportType], default=ExportType.SERIES.value
    )
    parser.add_argument(
        "--format", choices=[f.value for f in FORMATS], default=ExportFormat.JSON.value
    )
    parser.add_argument(
        "--library", action="append", metavar="NAME|ID", help="a library (repeatable)"
    )
    parser.add_argument("--all-libraries", action="store_true", help="every library you may read")
    parser.add_argument(
        "--fields", action="append", metavar="KEYS", help="series keys, comma-separated"
    )
    parser.add_argument(
        "--book-fields", action="append", metavar="KEYS", help="book keys, comma-separated"
    )
    parser.add_argument(
        "--group",
        action="append",
        metavar="NAME",
        help="every field of a group, e.g. Metadata, 'File Info' (repeatable)",
    )
    parser.add_argument("--preset", choices=("llm", "all"), help="LLM preset or select all")
    parser.add_argument(
        "--gzip", action="store_true", help="store the file gzip-compressed (FILE.json.gz ...)"
    )


def _register_schedule(actions: Any, common: argparse.ArgumentParser) -> None:
    schedule = actions.add_parser(
        "schedule", help="backups that run themselves: create, list, delete, run now"
    )
    verbs = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    create = verbs.add_parser("create", parents=[common], help="run an export on a cron schedule")
    _request_options(create)
    create.add_argument(
        "--cron", required=True, metavar="EXPR", help="5-field cron, e.g. '0 3 * * *' (03:00)"
    )
    create.add_argument(
        "--timezone", default="UTC", metavar="ZONE", help="IANA zone of the cron (default UTC)"
    )
    create.add_argument(
        "--keep", type=int, default=7, metavar="N", help="completed runs kept (1-30, default 7)"
    )
    verbs.add_parser("list", parents=[common], help="your schedules")
    for name, text in (
        ("delete", "delete a schedule (its exports stay until they expire)"),
        ("run", "run a schedule now"),
    ):
        action = verbs.add_parser(name, parents=[common], help=text)
        action.add_argument("id", metavar="ID")


def register(sub: Any) -> None:
    """Add ``export`` (with its subcommands) and ``login`` to the top-level subparsers."""
    common = _common()

    login = sub.add_parser(
        "login", parents=[common], help="sign in and save the token for the export commands"
    )
    login.add_argument("--username", help="asked when missing")
    login.add_argument("--password", help="asked without echo when missing")
    login.set_defaults(handler=run_login)

    export = sub.add_parser("export", help="create, watch, download and manage exports")
    actions = export.add_subparsers(dest="export_command", required=True, metavar="ACTION")
    export.set_defaults(handler=run_export)

    create = actions.add_parser("create", parents=[common], help="request a new export")
    _request_options(create)
    create.add_argument("--wait", action="store_true", help="wait until it has ended")
    create.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="wait, then download to FILE, or into a directory (DIR/ or an existing one; "
        "created when missing) under the server's file name",
    )
    create.add_argument("--idempotency-key", metavar="KEY", help="retry-safe creation")
    create.add_argument("--decompress", action="store_true", help=_DECOMPRESS_HELP)

    actions.add_parser("list", parents=[common], help="your exports, newest first")
    for name, text in (
        ("get", "one export"),
        ("cancel", "cancel a pending or running export"),
        ("delete", "delete an export and its file"),
    ):
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id", metavar="ID")
    download = actions.add_parser(
        "download", parents=[common], help="download a completed export (resumable, verified)"
    )
    download.add_argument("id", metavar="ID")
    download.add_argument(
        "--output", "-o", metavar="FILE", help="a file, or a directory (DIR/ or an existing one)"
    )
    download.add_argument("--decompress", action="store_true", help=_DECOMPRESS_HELP)
    actions.add_parser("fields", parents=[common], help="the field catalogs, groups and presets")
    _register_schedule(actions, common)
    changes = actions.add_parser(
        "changes",
        parents=[common],
        help="what changed from an older JSON / JSON Lines export to this one",
    )
    changes.add_argument("id", metavar="ID", help="the newer export")
    changes.add_argument("--since", required=True, metavar="OTHER", help="the older export")
