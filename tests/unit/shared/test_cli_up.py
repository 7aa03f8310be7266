"""`carebridge up` and `LocalStack` orchestration, with stand-in services.

The four services are replaced by a tiny HTTP server (FAKE_SERVICE below) that answers
/healthz and /readyz the way the real ones do (the gateway's /readyz asks the other three), so
these tests check the wiring, readiness wait, port checks, failure reports and clean stop in a
couple of seconds without a broker or Redis (the stack is handed their URLs).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from shared import cli
from shared.devstack import free_port
from shared.settings import GatewaySettings
from shared.stack import LocalStack, StackError, StackStartCancelled

FAKE_SERVICE = r"""
import http.server, json, os, signal, sys, urllib.request
name = sys.argv[1]
prefix = name.upper()
mode = os.environ.get("FAKE_MODE_" + prefix, "ok")
if mode == "crash":
    print("boom: cannot open the database", flush=True)
    sys.exit(3)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(os.environ["FAKE_RECORD_DIR"] + f"/{name}.json", "w") as f:
    json.dump({k: v for k, v in os.environ.items() if k.isupper()}, f)

def peers_ready():
    for peer in ("INTAKE", "CAREPLAN", "REFERRAL"):
        try:
            urllib.request.urlopen(os.environ[f"GATEWAY_{peer}_URL"] + "/readyz", timeout=1)
        except Exception:
            return False
    return True

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = mode != "unready" and (name != "gateway" or peers_ready())
        status = 200 if self.path == "/healthz" or ready else 503
        body = json.dumps({"redis": "ok" if ready else "down"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ[f"{prefix}_PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def fake_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[str]]:
    script = tmp_path / "fake_service.py"
    script.write_text(FAKE_SERVICE)
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setenv("FAKE_RECORD_DIR", str(records))
    return lambda service: [sys.executable, str(script), service]


@pytest.fixture
def make_stack(
    tmp_path: Path, fake_command: Callable[[str], list[str]]
) -> Iterator[functools.partial[LocalStack]]:
    stacks: list[LocalStack] = []

    def build(**overrides: object) -> LocalStack:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "gateway_port": free_port(),
            "mllp_port": free_port(),
            "intake_port": free_port(),
            "careplan_port": free_port(),
            "referral_port": free_port(),
            "redis_url": "redis://127.0.0.1:9/0",
            "kafka_bootstrap": "127.0.0.1:9",
            "ready_timeout": 20.0,
            "stop_grace": 2.0,
            "command": fake_command,
        }
        values.update(overrides)
        stack = LocalStack(**values)  # type: ignore[arg-type]
        stacks.append(stack)
        return stack

    yield functools.partial(build)
    for stack in stacks:
        stack.stop()


def recorded_env(tmp_path: Path, service: str) -> dict[str, str]:
    env: dict[str, str] = json.loads((tmp_path / "records" / f"{service}.json").read_text())
    return env


def assert_all_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


def test_start_wires_every_service_and_returns_when_the_gateway_is_ready(
    make_stack: functools.partial[LocalStack], tmp_path: Path
) -> None:
    stack = make_stack()
    stack.start()
    assert httpx.get(f"{stack.urls.gateway}/readyz", trust_env=False).status_code == 200
    assert stack.urls.fhir_base == f"http://127.0.0.1:{stack.gateway_port}/fhir"
    assert stack.urls.mllp == f"127.0.0.1:{stack.mllp_port}"
    gateway = recorded_env(tmp_path, "gateway")
    intake = recorded_env(tmp_path, "intake")
    assert gateway["GATEWAY_INTAKE_URL"] == f"http://127.0.0.1:{stack.ports['intake']}"
    assert gateway["GATEWAY_MLLP_PORT"] == str(stack.mllp_port)
    assert intake["INTAKE_DATABASE_URL"] == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'intake.db'}"
    assert intake["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9"
    assert intake["REDIS_URL"] == "redis://127.0.0.1:9/0"
    assert (tmp_path / "data" / "logs" / "careplan.log").exists()
    pids = [service.process.pid for service in stack._services]
    stack.stop()
    assert_all_gone(pids)


def test_a_gateway_port_in_use_fails_naming_the_port_and_the_setting(
    make_stack: functools.partial[LocalStack], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = make_stack(gateway_port=port)
        with pytest.raises(
            StackError, match=rf"port {port} \(gateway HTTP\).*--gateway-port or GATEWAY_PORT"
        ):
            stack.start()
    assert not (tmp_path / "data" / "logs" / "gateway.log").exists()


def test_a_taken_internal_port_is_replaced_by_a_free_one(
    make_stack: functools.partial[LocalStack], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = make_stack(careplan_port=port)
        stack.start()
    assert stack.ports["careplan"] != port
    assert recorded_env(tmp_path, "gateway")["GATEWAY_CAREPLAN_URL"].endswith(f":{stack.ports['careplan']}")


def test_a_service_that_dies_fails_the_start_with_the_tail_of_its_log(
    make_stack: functools.partial[LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE_INTAKE", "crash")
    stack = make_stack()
    with pytest.raises(StackError, match="intake exited with code 3") as failed:
        stack.start()
    assert "boom: cannot open the database" in str(failed.value)
    assert stack._services == []


def test_a_gateway_that_never_gets_ready_times_out_with_its_last_answer(
    make_stack: functools.partial[LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE_GATEWAY", "unready")
    stack = make_stack(ready_timeout=1.0)
    with pytest.raises(StackError, match=r"not ready after 1s .*HTTP 503.*down"):
        stack.start()


def test_start_gives_up_and_stops_everything_when_cancelled(
    make_stack: functools.partial[LocalStack],
) -> None:
    cancel = threading.Event()
    cancel.set()
    stack = make_stack()
    with pytest.raises(StackStartCancelled):
        stack.start(cancel=cancel)
    assert stack._services == []


def test_a_service_that_dies_after_start_is_reported_with_its_log(
    make_stack: functools.partial[LocalStack],
) -> None:
    stack = make_stack()
    stack.start()
    assert stack.dead_services() == []
    referral = next(s.process for s in stack._services if s.name == "referral")
    referral.kill()
    [report] = stack.dead_services()
    assert report.startswith("referral exited with code -9")


def test_stop_kills_a_service_that_ignores_sigterm_after_the_grace_period(
    make_stack: functools.partial[LocalStack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE_REFERRAL", "ignore-term")
    stack = make_stack(stop_grace=0.5)
    stack.start()
    pids = [service.process.pid for service in stack._services]
    began = time.monotonic()
    stack.stop()
    assert time.monotonic() - began < 5
    assert_all_gone(pids)


def test_up_prints_the_urls_and_a_token_and_stops_cleanly_on_sigint(
    fake_command: Callable[[str], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(
        cli, "LocalStack", functools.partial(LocalStack, command=fake_command, stop_grace=2.0)
    )
    gateway_port, mllp_port = free_port(), free_port()

    def interrupt_when_ready() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{gateway_port}/readyz", trust_env=False).status_code == 200:
                    time.sleep(0.3)  # let `up` print its banner
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    threading.Thread(target=interrupt_when_ready, daemon=True).start()
    code = cli.main(
        [
            "up",
            "--data-dir",
            str(tmp_path / "data"),
            "--gateway-port",
            str(gateway_port),
            "--mllp-port",
            str(mllp_port),
            "--intake-port",
            str(free_port()),
            "--careplan-port",
            str(free_port()),
            "--referral-port",
            str(free_port()),
            "--redis-url",
            "redis://127.0.0.1:9/0",
            "--kafka-bootstrap",
            "127.0.0.1:9",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"http://127.0.0.1:{gateway_port}/fhir" in out
    assert f"127.0.0.1:{mllp_port}" in out
    assert "CareBridge is ready (" in out
    token = out.split("export TOKEN=")[1].split()[0]
    secret = GatewaySettings.model_fields["jwt_hs256_secret"].default
    assert jwt.decode(token, secret, algorithms=["HS256"])["scope"] == "system/*.cruds"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=1, trust_env=False)
