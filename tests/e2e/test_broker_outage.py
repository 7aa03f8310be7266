"""A service whose broker is down still starts, says it is not ready, and accepts writes; their
events wait in the outbox and are published once the broker comes up. Nothing accepted is lost."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from shared.devstack import free_port, start_tansu
from shared.events import topics
from tests.conftest import unique
from tests.e2e.processes import service_env, spawn_service
from tests.e2e.test_crash_recovery import events_on_topic
from tests.integration.stack import eventually


async def test_service_starts_without_its_broker_accepts_writes_and_publishes_them_later(
    tmp_path: Path, redis_url: str
) -> None:
    broker_port, port = free_port(), free_port()
    prefix = unique("outage") + "."
    env = service_env(
        f"127.0.0.1:{broker_port}",
        redis_url,
        prefix,
        INTAKE_PORT=str(port),
        INTAKE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}",
    )
    intake = spawn_service("intake", env, tmp_path / "intake.log")
    broker = None
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:

            async def healthy() -> bool:
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy)
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["broker"].startswith("unavailable")
            assert ready.json()["checks"]["database"] == "ok"

            patient = {"resourceType": "Patient", "name": [{"family": "Outage"}]}
            created = await http.post(
                "/fhir/Patient",
                content=orjson.dumps(patient),
                headers={"Content-Type": "application/fhir+json"},
            )
            assert created.status_code == 201
            patient_id = created.json()["id"]

            broker = start_tansu(port=broker_port, log_path=tmp_path / "tansu.log")

            async def ready_now() -> bool:
                return (await http.get("/readyz")).status_code == 200

            await eventually(ready_now, timeout=30)
        events = await events_on_topic(broker, prefix + topics.PATIENT, f"Patient/{patient_id}", 1)
        assert events[0].data["id"] == patient_id
    finally:
        intake.stop()
        if broker:
            broker.stop()
