"""`carebridge up` (what `make run` calls): the whole system from one command, ready, usable,
stopped by Ctrl-C with no process left behind, and its data still there on the next start."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from shared.auth import mint_token
from shared.devstack import free_port
from shared.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc (children re-parented elsewhere are not seen,
    which is why we also remember them while the stack runs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_up(
    data_dir: Path, ports: dict[str, int], env: dict[str, str]
) -> tuple[subprocess.Popen[str], float, str]:
    argv = [
        sys.executable,
        "-m",
        "shared.cli",
        "up",
        "--data-dir",
        str(data_dir),
        *(x for name, port in ports.items() for x in (f"--{name}-port", str(port))),
    ]
    began = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        output += line
        if "Press Ctrl-C to stop" in line:
            return proc, time.monotonic() - began, output
    raise AssertionError(f"carebridge up exited {proc.wait()} before it was ready:\n{output}")


def stop_with_ctrl_c(proc: subprocess.Popen[str], remembered: set[int]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 5
    while any(alive(p) for p in remembered) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in remembered if alive(p)], "processes left behind after Ctrl-C"


def test_up_reaches_ready_serves_and_stops_on_ctrl_c_leaving_nothing(
    tmp_path: Path, broker: object, redis_url: str
) -> None:
    ports = {
        "gateway": free_port(),
        "mllp": free_port(),
        "intake": free_port(),
        "careplan": free_port(),
        "referral": free_port(),
    }
    # Its own Tansu (as on a fresh machine); Redis is reused from the test session.
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(REDIS_URL=redis_url, REDIS_KEY_PREFIX=f"test:up:{tmp_path.name}:")
    proc, seconds, output = start_up(tmp_path / "data", ports, env)
    remembered = descendants(proc.pid)
    try:
        assert seconds < 30, f"ready after {seconds:.1f}s"
        assert f"http://127.0.0.1:{ports['gateway']}/fhir" in output
        assert str(ports["mllp"]) in output
        token = re.search(r"export TOKEN=(\S+)", output)
        assert token, output
        assert len(remembered) >= 5  # tansu + four services (at least)

        base = f"http://127.0.0.1:{ports['gateway']}"
        headers = {"Authorization": f"Bearer {token.group(1)}", "Content-Type": "application/fhir+json"}
        patient = {"resourceType": "Patient", "name": [{"family": "Uptest"}]}
        created = httpx.post(
            f"{base}/fhir/Patient", content=orjson.dumps(patient), headers=headers, timeout=10
        )
        assert created.status_code == 201, created.text
        patient_id = created.json()["id"]
    finally:
        stop_with_ctrl_c(proc, remembered)

    # Data survives a restart.
    proc, _, output = start_up(tmp_path / "data", ports, env)
    remembered = descendants(proc.pid)
    try:
        token_value = mint_token(GatewaySettings().jwt_hs256_secret, "system/*.rs")
        read = httpx.get(
            f"{base}/fhir/Patient/{patient_id}", headers={"Authorization": f"Bearer {token_value}"}
        )
        assert read.status_code == 200 and read.json()["name"] == [{"family": "Uptest"}]
    finally:
        stop_with_ctrl_c(proc, remembered)
