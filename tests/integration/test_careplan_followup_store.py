"""Follow-up tracking on each database, without the bus: intake's events handed to careplan's
consumer in either order and twice, a fulfilled Appointment, and the overdue scheduler.
Synthetic data only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from services.careplan import activities, followup
from services.careplan.domain.followup import ACTIVITY_KIND
from shared.events import CloudEvent, topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.settings import CareplanSettings
from shared.store import Store

DISCHARGED = datetime(2026, 11, 8, 14, 0, tzinfo=UTC)


@dataclass
class Holder:
    store: Store
    settings: CareplanSettings


@pytest.fixture
async def rest(database_url: str) -> AsyncIterator[FhirRest]:
    store = await Store.open(database_url, extra_migrations=(*activities.MIGRATIONS, *followup.MIGRATIONS))
    yield FhirRest(
        Holder(store, CareplanSettings(database_url="unused")),
        OWNED_TYPES["careplan"],
        hooks={"CarePlan": activities.PlanIndexHooks(), "Appointment": followup.AppointmentVisits()},
    )
    await store.close()


def event(resource: dict[str, Any], action: str = "updated") -> CloudEvent:
    return CloudEvent(
        type=topics.resource_event_type(resource["resourceType"], action),  # type: ignore[arg-type]
        source="carebridge/intake",
        subject=f"{resource['resourceType']}/{resource['id']}",
        data_bytes=orjson.dumps(resource),
    )


def stay(version: int = 1, **overrides: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "id": "stay-1", "meta": {"versionId": str(version)},
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-01T08:30:00+00:00", "end": DISCHARGED.isoformat()},
        "diagnosis": [{"condition": {"reference": "Condition/dx-1"}, "rank": 1}],
        **overrides,
    }  # fmt: skip


CONDITION = {
    "resourceType": "Condition", "id": "dx-1", "meta": {"versionId": "1"},
    "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/stay-1"},
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F32.2"}]},
}  # fmt: skip


async def deliver(rest: FhirRest, *events: CloudEvent) -> None:
    handle = followup.on_clinical_event(rest)
    for e in events:
        async with rest.store.transaction() as tx:
            await handle(CloudEvent.from_json(e.to_json()), tx)


async def the_plan(rest: FhirRest) -> dict[str, Any]:
    async with rest.store.transaction() as tx:
        plan = await activities.active_plan(rest, tx, "p1")
    assert plan is not None
    return plan


def statuses(plan: dict[str, Any]) -> dict[str, str]:
    out = {}
    for activity in plan["activity"]:
        kind = next(e["valueCode"] for e in activity["extension"] if e["url"] == ACTIVITY_KIND)
        out[kind] = activity["detail"]["status"]
    return out


async def test_conditions_before_their_encounter_and_the_same_events_twice_make_one_plan(
    rest: FhirRest,
) -> None:
    await deliver(rest, event(CONDITION, "created"), event(stay()))
    plan = await the_plan(rest)
    assert statuses(plan) == dict.fromkeys(
        ("caring-contact", "follow-up-7", "follow-up-30", "medication-reconciliation"), "not-started"
    )
    await deliver(rest, event(stay()), event(CONDITION, "created"))  # replayed: nothing changes
    again = await the_plan(rest)
    assert again["meta"]["versionId"] == plan["meta"]["versionId"]


async def test_a_fulfilled_appointment_within_72_hours_completes_the_contact_and_both_visits(
    rest: FhirRest,
) -> None:
    await deliver(rest, event(stay()), event(CONDITION, "created"))
    appointment = {
        "resourceType": "Appointment", "status": "fulfilled",
        "start": (DISCHARGED + timedelta(days=2)).isoformat(),
        "end": (DISCHARGED + timedelta(days=2, hours=1)).isoformat(),
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F32.2"}]}],
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
    }  # fmt: skip
    async with rest.store.transaction() as tx:
        written = await rest.create(tx, "Appointment", appointment)
    plan = await the_plan(rest)
    assert statuses(plan) == {
        "caring-contact": "completed", "follow-up-7": "completed", "follow-up-30": "completed",
        "medication-reconciliation": "not-started",
    }  # fmt: skip
    done = next(a for a in plan["activity"] if a["detail"]["status"] == "completed")
    assert done["outcomeReference"] == [{"reference": f"Appointment/{written.stored.id}"}]


async def test_overdue_activities_are_escalated_once_and_done_ones_never(rest: FhirRest) -> None:
    await deliver(rest, event(stay()), event(CONDITION, "created"))
    day_10 = DISCHARGED + timedelta(days=10)
    assert await activities.escalate_overdue(rest, day_10) == 3  # contact, day-7 visit, med rec
    assert await activities.escalate_overdue(rest, day_10) == 0
    assert await activities.escalate_overdue(rest, DISCHARGED + timedelta(days=40)) == 1  # day-30 visit
    async with rest.store.connect() as connection:
        o = rest.store.tables.outbox
        rows = (await connection.execute(sa.select(o.c.value, o.c.key))).all()
    overdue = [
        orjson.loads(r.value) for r in rows if orjson.loads(r.value)["type"] == topics.FOLLOW_UP_OVERDUE_EVENT
    ]
    assert len(overdue) == 4 and {r.key for r in rows if b"overdue" in r.value} == {b"p1"}
    kinds = sorted(
        next(p["valueCode"] for p in e["data"]["parameter"] if p["name"] == "kind") for e in overdue
    )
    assert kinds == ["caring-contact", "follow-up-30", "follow-up-7", "medication-reconciliation"]


async def test_an_a13_after_the_discharge_cancels_what_is_open(rest: FhirRest) -> None:
    await deliver(rest, event(stay()), event(CONDITION, "created"))
    reopened = stay(version=2, status="in-progress", period={"start": "2026-11-01T08:30:00+00:00"})
    await deliver(rest, event(reopened))
    plan = await the_plan(rest)
    assert set(statuses(plan).values()) == {"cancelled"}
    assert await activities.escalate_overdue(rest, DISCHARGED + timedelta(days=40)) == 0
