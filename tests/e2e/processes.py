"""Services as real OS processes (`python -m services.<name>`), for tests that crash and restart them."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

from shared.devstack import ManagedProcess


def service_env(broker: str, redis_url: str, topic_prefix: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker,
        "KAFKA_TOPIC_PREFIX": topic_prefix,
        "KAFKA_FETCH_MAX_WAIT_MS": "20",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": f"test:{topic_prefix}",
        "LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


def spawn_service(name: str, env: dict[str, str], log_path: Path) -> ManagedProcess:
    return ManagedProcess.spawn(
        name,
        [sys.executable, "-m", f"services.{name}"],
        env=env,
        log_path=log_path,
        cwd=Path(__file__).resolve().parents[2],
    )


def wait_ready(proc: ManagedProcess, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            log = proc.log_path.read_text()[-3000:] if proc.log_path else ""
            raise AssertionError(f"{proc.name} exited with {proc.popen.returncode}:\n{log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{proc.name} not ready within {timeout}s")


def wait_exit(proc: ManagedProcess, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while proc.alive():
        if time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} still running after {timeout}s")
        time.sleep(0.05)
    return int(proc.popen.returncode)
