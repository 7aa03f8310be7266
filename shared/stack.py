"""The local CareBridge stack behind `carebridge up`: broker, Redis and the four services.

`LocalStack.start()` uses the broker and Redis the machine offers (or starts Tansu and a Redis
server, see `shared.devstack`), spawns `python -m services.<name>` for each service with every
port and URL in its environment, and returns once the gateway's `/readyz` answers 200 (the
gateway is ready only when all four services are). Each service keeps its SQLite database under
`data_dir`, so data survives restarts; logs go to `log_dir/<service>.log`.

`stop()` sends SIGTERM to every service's process group, SIGKILL after a grace period, then
stops whatever broker and Redis it started: nothing is left running.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared import devstack
from shared.errors import CareBridgeError

log = logging.getLogger(__name__)

#: Started in this order; the gateway goes last since its readiness depends on the others.
SERVICES = ("intake", "careplan", "referral", "gateway")
_LOG_TAIL_LINES = 40


class StackError(CareBridgeError):
    """The local stack could not start (a port in use, a service that died, a timeout)."""


class StackStartCancelled(StackError):
    """`start()` was asked to give up (Ctrl-C during start-up); everything was stopped."""


@dataclass(frozen=True)
class StackUrls:
    gateway: str
    fhir_base: str
    mllp: str


@dataclass(frozen=True)
class _Port:
    """A port the stack needs, with the flag and environment variable that set it."""

    role: str
    number: int
    flag: str
    env: str
    #: The service whose HTTP port this is; None for the MLLP port.
    service: str | None
    public: bool


@dataclass
class _Service:
    name: str
    process: devstack.ManagedProcess
    log_offset: int


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not bind `host:port` (uvicorn and asyncio set SO_REUSEADDR too)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _default_command(service: str) -> list[str]:
    return [sys.executable, "-m", f"services.{service}"]


class LocalStack:
    """Tansu (or the given Kafka), Redis and the four services, wired together on 127.0.0.1.

    The gateway HTTP and MLLP ports are public: if one is taken, `start()` fails and names the
    setting to change. A taken internal service port is replaced by a free one, with a warning.
    `command(service)` gives the argv that runs a service (tests substitute stand-ins).
    """

    def __init__(
        self,
        data_dir: Path = Path(".data"),
        gateway_port: int = 8080,
        mllp_port: int = 2575,
        intake_port: int = 8081,
        careplan_port: int = 8082,
        referral_port: int = 8083,
        redis_url: str | None = None,
        kafka_bootstrap: str | None = None,
        log_dir: Path | None = None,
        *,
        ready_timeout: float = 60.0,
        stop_grace: float = 10.0,
        command: Callable[[str], Sequence[str]] = _default_command,
    ):
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.mllp_port = mllp_port
        self.ports = {
            "intake": intake_port,
            "careplan": careplan_port,
            "referral": referral_port,
            "gateway": gateway_port,
        }
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self._redis_url = redis_url
        self._kafka_bootstrap = kafka_bootstrap
        self._command = command
        self._broker: devstack.Broker | None = None
        self._redis: devstack.RedisServer | None = None
        self._services: list[_Service] = []

    # --- what the stack offers -----------------------------------------------------------------

    @property
    def gateway_port(self) -> int:
        return self.ports["gateway"]

    @property
    def urls(self) -> StackUrls:
        gateway = f"http://127.0.0.1:{self.gateway_port}"
        return StackUrls(gateway=gateway, fhir_base=f"{gateway}/fhir", mllp=f"127.0.0.1:{self.mllp_port}")

    @property
    def kafka_bootstrap(self) -> str | None:
        """The broker the services use (known once `start()` has begun)."""
        return self._broker.bootstrap_servers if self._broker else self._kafka_bootstrap

    @property
    def redis_url(self) -> str | None:
        return self._redis.url if self._redis else self._redis_url

    def database_url(self, service: str) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / f'{service}.db'}"

    def environment(self) -> dict[str, str]:
        """The environment every service starts with: this process's, plus the stack's wiring."""
        if self.kafka_bootstrap is None or self.redis_url is None:
            raise StackError("the broker and Redis must be known before the services' environment")
        repo_root = str(Path(__file__).resolve().parents[1])
        python_path = os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "REDIS_URL": self.redis_url,
            "PYTHONPATH": python_path,
            "PYTHONUNBUFFERED": "1",
        }
        for service, port in self.ports.items():
            prefix = service.upper()
            env[f"{prefix}_HOST"] = "127.0.0.1"
            env[f"{prefix}_PORT"] = str(port)
            env[f"{prefix}_DATABASE_URL"] = self.database_url(service)
        for service in ("intake", "careplan", "referral"):
            env[f"GATEWAY_{service.upper()}_URL"] = f"http://127.0.0.1:{self.ports[service]}"
        env["GATEWAY_MLLP_HOST"] = "127.0.0.1"
        env["GATEWAY_MLLP_PORT"] = str(self.mllp_port)
        return env

    # --- start ---------------------------------------------------------------------------------

    def start(self, cancel: threading.Event | None = None) -> None:
        """Start everything and return once the gateway is ready.

        Raises `StackError` with the reason (and a dead service's log tail); `StackStartCancelled`
        when `cancel` is set before the stack is ready. On any failure, everything started so
        far is stopped again.
        """
        if self._services or self._broker or self._redis:
            raise StackError("this stack is already running")
        self._check_ports()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_infrastructure()
            env = self.environment()
            for service in SERVICES:
                self._spawn(service, env)
            self._wait_until_ready(cancel)
        except BaseException:
            self.stop()
            raise

    def _check_ports(self) -> None:
        for port in self._requested_ports():
            if not port_in_use(port.number):
                continue
            if port.public:
                raise StackError(
                    f"port {port.number} ({port.role}) is already in use; choose another with {port.flag} "
                    f"or {port.env} (is another `carebridge up` still running?)"
                )
            replacement = devstack.free_port()
            log.warning(
                "port %d (%s) is in use; using %d instead (set %s or %s to choose)",
                port.number,
                port.role,
                replacement,
                port.flag,
                port.env,
            )
            self.ports[port.service or ""] = replacement
        taken = [p.number for p in self._requested_ports()]
        if len(set(taken)) != len(taken):
            raise StackError(f"the stack's ports must all differ, got {sorted(taken)}")

    def _requested_ports(self) -> list[_Port]:
        ports = [
            _Port("gateway HTTP", self.gateway_port, "--gateway-port", "GATEWAY_PORT", "gateway", True),
            _Port("gateway MLLP", self.mllp_port, "--mllp-port", "GATEWAY_MLLP_PORT", None, True),
        ]
        for service in ("intake", "careplan", "referral"):
            ports.append(
                _Port(
                    f"{service} HTTP",
                    self.ports[service],
                    f"--{service}-port",
                    f"{service.upper()}_PORT",
                    service,
                    False,
                )
            )
        return ports

    def _start_infrastructure(self) -> None:
        try:
            self._broker = devstack.ensure_broker(self._kafka_bootstrap, log_path=self.log_dir / "tansu.log")
        except (OSError, RuntimeError, ImportError) as exc:
            raise StackError(f"could not start Tansu: {exc} (see {self.log_dir / 'tansu.log'})") from exc
        try:
            self._redis = devstack.ensure_redis(self._redis_url, log_path=self.log_dir / "redis.log")
        except (OSError, RuntimeError, ImportError) as exc:
            raise StackError(f"could not start Redis: {exc} (see {self.log_dir / 'redis.log'})") from exc

    def _spawn(self, service: str, env: dict[str, str]) -> None:
        log_path = self.log_dir / f"{service}.log"
        now = dt.datetime.now().isoformat(timespec="seconds")
        with log_path.open("a", encoding="utf-8") as out:
            out.write(f"--- carebridge up: {service} starting at {now}\n")
        offset = log_path.stat().st_size
        process = devstack.ManagedProcess.spawn(service, self._command(service), env=env, log_path=log_path)
        self._services.append(_Service(service, process, offset))
        log.debug("started %s (pid %d, port %d)", service, process.pid, self.ports[service])

    def _wait_until_ready(self, cancel: threading.Event | None) -> None:
        url = f"{self.urls.gateway}/readyz"
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while True:
                self._raise_if_a_process_died()
                if cancel is not None and cancel.is_set():
                    raise StackStartCancelled("start-up interrupted")
                try:
                    response = client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code} {response.text[:500]}"
                except httpx.HTTPError as exc:
                    last = str(exc) or type(exc).__name__
                if time.monotonic() > deadline:
                    raise StackError(
                        f"the gateway was not ready after {self.ready_timeout:.0f}s "
                        f"(last answer from {url}: {last}); logs are in {self.log_dir}"
                    )
                time.sleep(0.2)

    def _raise_if_a_process_died(self) -> None:
        for service in self._services:
            code = service.process.popen.poll()
            if code is not None:
                raise StackError(
                    f"{service.name} exited with code {code} during start-up; last lines of "
                    f"{service.process.log_path}:\n{self._log_tail(service)}"
                )
        for name, process in (("Tansu", self._broker_process()), ("Redis", self._redis_process())):
            if process is not None and process.popen.poll() is not None:
                code = process.popen.returncode
                raise StackError(f"{name} exited with code {code}; see {process.log_path}")

    def dead_services(self) -> list[str]:
        """Names of services that have exited, each with the tail of its log (for monitoring)."""
        return [
            f"{s.name} exited with code {s.process.popen.returncode}:\n{self._log_tail(s)}"
            for s in self._services
            if s.process.popen.poll() is not None
        ]

    def _log_tail(self, service: _Service) -> str:
        if service.process.log_path is None:
            return ""
        with contextlib.suppress(OSError), service.process.log_path.open("rb") as log_file:
            log_file.seek(service.log_offset)
            lines = log_file.read().decode("utf-8", "replace").splitlines()
            return "\n".join(f"    {line}" for line in lines[-_LOG_TAIL_LINES:])
        return ""

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the services, then the broker and Redis this stack started. Safe to call twice."""
        _terminate([s.process for s in reversed(self._services)], self.stop_grace)
        self._services = []
        _terminate([p for p in (self._broker_process(), self._redis_process()) if p], self.stop_grace)
        if self._redis is not None and self._redis.workdir is not None:
            self._redis.workdir.cleanup()
        self._broker = None
        self._redis = None

    def kill(self) -> None:
        """SIGKILL every process group at once, without waiting (safe inside a signal handler).

        `stop()` still has to run afterwards to reap the processes and clean up.
        """
        processes = [s.process for s in self._services] + [self._broker_process(), self._redis_process()]
        for process in processes:
            if process is not None:
                _signal_group(process, signal.SIGKILL)

    def _broker_process(self) -> devstack.ManagedProcess | None:
        return self._broker.process if self._broker else None

    def _redis_process(self) -> devstack.ManagedProcess | None:
        return self._redis.process if self._redis else None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(process: devstack.ManagedProcess, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _terminate(processes: list[devstack.ManagedProcess], grace: float) -> None:
    """SIGTERM every group at once, wait up to `grace` in all, then SIGKILL what is left."""
    for process in processes:
        if process.alive():
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", process.name, grace)
        # The leader may be gone while children it started are not: sweep the group either way.
        _signal_group(process, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(1)
