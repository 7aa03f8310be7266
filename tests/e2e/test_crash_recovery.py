"""A service killed between its database commit and the publish loses nothing: on restart the
outbox relay delivers the event, and the effect downstream happens exactly once.

Real processes, real SIGKILL, real broker; careplan stands for every downstream consumer.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from services.careplan.handlers import PATIENTS
from shared.devstack import Broker, ManagedProcess, free_port
from shared.events import CloudEvent, topics
from shared.store import Store
from tests.conftest import unique
from tests.e2e.processes import service_env, spawn_service, wait_exit, wait_ready
from tests.integration.stack import eventually

PATIENT = {
    "resourceType": "Patient",
    "name": [{"family": "Crashtest", "given": ["Kim"]}],
    "birthDate": "1975",
}


@dataclass
class Pair:
    """intake (the producer we crash) and careplan (the consumer that must apply once)."""

    tmp: Path
    env: dict[str, str]
    intake_port: int
    careplan: ManagedProcess
    procs: list[ManagedProcess]

    @property
    def intake_url(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    @property
    def intake_database(self) -> str:
        return self.env.get("INTAKE_DATABASE_URL") or f"sqlite+aiosqlite:///{self.tmp / 'intake.db'}"

    def start_intake(self, **settings: str) -> ManagedProcess:
        env = {
            **self.env,
            "INTAKE_PORT": str(self.intake_port),
            "INTAKE_DATABASE_URL": self.intake_database,
            "INTAKE_OUTBOX_POLL_INTERVAL_MS": "50",
            **settings,
        }
        proc = spawn_service("intake", env, self.tmp / "intake.log")
        self.procs.append(proc)
        wait_ready(proc, self.intake_url)
        return proc


@pytest.fixture
def pair(broker: Broker, redis_url: str, tmp_path: Path) -> Iterator[Pair]:
    env = service_env(broker.bootstrap_servers, redis_url, unique("crash") + ".")
    careplan_port = free_port()
    careplan = spawn_service(
        "careplan",
        {
            **env,
            "CAREPLAN_PORT": str(careplan_port),
            "CAREPLAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'careplan.db'}",
        },
        tmp_path / "careplan.log",
    )
    procs = [careplan]
    try:
        wait_ready(careplan, f"http://127.0.0.1:{careplan_port}")
        yield Pair(tmp_path, env, free_port(), careplan, procs)
    finally:
        for proc in procs:
            proc.stop()


async def create_patient(url: str) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/fhir/Patient",
            content=orjson.dumps(PATIENT),
            headers={"Content-Type": "application/fhir+json"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def events_on_topic(broker: Broker, topic: str, subject: str, expected: int) -> list[CloudEvent]:
    """Every event about `subject` on the topic (read without a group, from the beginning)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    found: list[CloudEvent] = []
    try:
        async with asyncio.timeout(15):
            while len(found) < expected:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    events = (CloudEvent.from_json(r.value) for r in records)
                    found.extend(e for e in events if e.subject == subject)
    finally:
        await consumer.stop()
    return found


async def outbox_drained(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        await eventually(lambda: _is_zero(store.outbox_pending_count()))
    finally:
        await store.close()


async def _is_zero(count: Any) -> bool:
    return await count == 0


async def careplan_applied_once(pair: Pair, patient_id: str) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{pair.tmp / 'careplan.db'}")
    try:
        kept = await eventually(lambda: store.get_projection(PATIENTS, patient_id))
        await asyncio.sleep(1.0)  # let any duplicate delivery arrive before we count
        kept = await store.get_projection(PATIENTS, patient_id)
        assert kept is not None and kept.version == 1
        assert kept.change_count == 1, "the patient event was applied more than once"
    finally:
        await store.close()


async def test_kill_between_commit_and_publish_delivers_the_event_after_restart(
    pair: Pair, broker: Broker, database_url: str
) -> None:
    # Once with intake on SQLite, once on PostgreSQL: the outbox must hold on both.
    pair.env["INTAKE_DATABASE_URL"] = database_url
    # The relay is off, so the committed event waits in the outbox when the process is killed.
    intake = pair.start_intake(INTAKE_OUTBOX_RELAY_ENABLED="false")
    # Intake loads its Questionnaires at start: their events wait in the outbox too.
    store = await Store.open(pair.intake_database)
    try:
        at_start = await store.outbox_pending_count()
    finally:
        await store.close()
    patient_id = await create_patient(pair.intake_url)
    intake.kill()
    assert intake.popen.returncode == -signal.SIGKILL

    store = await Store.open(pair.intake_database)
    try:
        assert await store.outbox_pending_count() == at_start + 1
    finally:
        await store.close()

    pair.start_intake()
    await careplan_applied_once(pair, patient_id)
    topic = pair.env["KAFKA_TOPIC_PREFIX"] + topics.PATIENT
    assert len(await events_on_topic(broker, topic, f"Patient/{patient_id}", 1)) == 1


async def test_crash_after_publish_before_marking_republishes_and_the_effect_happens_once(
    pair: Pair, broker: Broker
) -> None:
    # Intake publishes its Questionnaires on first start; let that happen without the fault,
    # so the one batch the fault interrupts is the Patient's.
    first = pair.start_intake()
    await outbox_drained(pair.intake_database)
    first.kill()
    wait_exit(first)
    # The relay SIGKILLs its own process after the broker acked and before marking the outbox.
    intake = pair.start_intake(INTAKE_FAULT_INJECTION="crash_after_publish")
    patient_id = await create_patient(pair.intake_url)
    assert wait_exit(intake) == -signal.SIGKILL

    pair.start_intake()
    topic = pair.env["KAFKA_TOPIC_PREFIX"] + topics.PATIENT
    delivered = await events_on_topic(broker, topic, f"Patient/{patient_id}", 2)
    assert len(delivered) == 2 and delivered[0].id == delivered[1].id, "the same event was published twice"
    await careplan_applied_once(pair, patient_id)
