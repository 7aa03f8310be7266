"""The gateway killed (SIGKILL) while an interface engine is sending: every message that got an AA
is stored and processed, every one that did not is sent again by the sender, and each message
takes effect exactly once.

Real processes (gateway and intake), real broker, Redis and SQLite; the sender is python-hl7's
MLLP client, resending an unanswered message after reconnecting, as interface engines do.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import hl7.client
import httpx
import sqlalchemy as sa

from services.gateway.archive import hl7_messages
from shared.devstack import Broker, ManagedProcess, free_port
from shared.store import Store
from tests.conftest import unique
from tests.e2e.processes import service_env, spawn_service, wait_ready
from tests.integration.stack import eventually
from tests.synthetic import synthetic_person

MESSAGES = 240
KILL_AFTER = 80


def a04(run: str, n: int) -> bytes:
    # Each message its own person (240 patients), all findable by the family prefix K{run}.
    someone = synthetic_person(f"{run}-{n}")
    return (
        f"MSH|^~\\&|EPIC|KILL HOSP|CB|CB|20261101083000||ADT^A04^ADT_A01|{run}-{n}|P|2.5.1\r"
        f"EVN|A04|20261101083000\r"
        f"PID|1||{run}-MRN-{n}^^^KILLMRN^MR||K{run}{someone.family}^{someone.given}||{someone.hl7_birth_date}|U\r"
        f"PV1|1|O|CLINIC||||||||||||||||{run}-V-{n}^^^KILLVISIT^VN\r"
    ).encode()


class Sender(threading.Thread):
    """Sends the messages in order; on a dropped connection or a missing ACK, reconnects and sends
    the same message again. Records which messages were answered AA, and when."""

    def __init__(self, port: int, messages: list[bytes]):
        super().__init__(daemon=True)
        self.port = port
        self.messages = messages
        self.acked: list[int] = []
        self.halfway = threading.Event()  # set once KILL_AFTER messages were acknowledged
        self.resent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._send_all()
        except BaseException as exc:
            self.error = exc

    def _send_all(self) -> None:
        i, deadline = 0, time.monotonic() + 90
        while i < len(self.messages):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {i} of {len(self.messages)} messages acknowledged")
            try:
                with hl7.client.MLLPClient("127.0.0.1", self.port) as client:
                    client.socket.settimeout(10)
                    while i < len(self.messages):
                        ack = client.send_message(self.messages[i])
                        if b"MSA|AA|" not in ack:
                            raise ConnectionError("no ACK")  # the gateway went away mid-message
                        self.acked.append(i)
                        i += 1
                        if i >= KILL_AFTER:
                            self.halfway.set()
            except OSError:
                self.resent += 1
                time.sleep(0.05)


def wait_mllp(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("MLLP listener did not come up")


async def test_kill_while_sending_loses_nothing_and_duplicates_nothing(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    run = unique("kill")[-10:]
    env = service_env(broker.bootstrap_servers, redis_url, unique("hl7kill") + ".")
    intake_port, gateway_port, mllp_port = free_port(), free_port(), free_port()
    intake_db = f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    gateway_db = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    intake = spawn_service(
        "intake",
        {**env, "INTAKE_PORT": str(intake_port), "INTAKE_DATABASE_URL": intake_db},
        tmp_path / "intake.log",
    )
    gateway_env = {
        **env,
        "GATEWAY_PORT": str(gateway_port),
        "GATEWAY_MLLP_PORT": str(mllp_port),
        "GATEWAY_DATABASE_URL": gateway_db,
        "GATEWAY_INTAKE_URL": f"http://127.0.0.1:{intake_port}",
    }
    procs: list[ManagedProcess] = [intake]
    try:
        wait_ready(intake, f"http://127.0.0.1:{intake_port}")
        gateway = spawn_service("gateway", gateway_env, tmp_path / "gateway-1.log")
        procs.append(gateway)
        wait_mllp(mllp_port)

        sender = Sender(mllp_port, [a04(run, n) for n in range(MESSAGES)])
        sender.start()
        assert await asyncio.to_thread(sender.halfway.wait, 60)
        gateway.kill()
        acked_before_kill = set(sender.acked)
        assert len(acked_before_kill) >= KILL_AFTER

        await asyncio.sleep(0.5)  # the sender is now failing to connect and will resend
        restarted = spawn_service("gateway", gateway_env, tmp_path / "gateway-2.log")
        procs.append(restarted)
        wait_mllp(mllp_port)
        await asyncio.to_thread(sender.join, 120)
        assert sender.error is None, sender.error
        assert sender.acked == list(range(MESSAGES))
        assert sender.resent >= 1

        # Every message is in the archive exactly once, processed.
        store = await Store.open(gateway_db)
        try:
            async with store.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.select(hl7_messages.c.control_id, hl7_messages.c.status).where(
                            hl7_messages.c.control_id.like(f"{run}-%")
                        )
                    )
                ).all()
        finally:
            await store.close()
        control_ids = [r.control_id for r in rows]
        assert sorted(control_ids) == sorted(f"{run}-{n}" for n in range(MESSAGES))
        assert {r.status for r in rows} == {"processed"}

        # ...and took effect exactly once: one Patient per MRN, at version 1.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{intake_port}", timeout=20) as http:

            async def all_patients() -> list[dict[str, object]] | None:
                response = await http.get("/fhir/Patient", params={"family": f"K{run}", "_count": "1000"})
                found = [e["resource"] for e in response.json().get("entry", [])]
                return found if len(found) >= MESSAGES else None

            patients = await eventually(all_patients, timeout=60)
        values = sorted(next(i["value"] for i in p["identifier"] if "-MRN-" in i["value"]) for p in patients)
        assert values == sorted(f"{run}-MRN-{n}" for n in range(MESSAGES))
        assert {p["meta"]["versionId"] for p in patients} == {"1"}
    finally:
        for proc in procs:
            proc.stop()
