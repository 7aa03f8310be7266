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

from services.careplan import activities, followup, handlers, outcomes
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
    store = await Store.open(
        database_url, extra_migrations=(*activities.MIGRATIONS, *followup.MIGRATIONS, *outcomes.MIGRATIONS)
    )
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
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F20.9"}]},
}  # fmt: skip
DEPRESSION = {
    **CONDITION, "id": "dx-dep", "onsetDateTime": "2026-01-05",
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F33.1"}]},
}  # fmt: skip


async def deliver(rest: FhirRest, *events: CloudEvent) -> None:
    handle = handlers.on_clinical_event(rest)
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


def phq9(observation_id: str, on: str, value: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": observation_id, "meta": {"versionId": "1"}, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": f"{on}T10:00:00Z",
        "valueQuantity": {
            "value": value, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"
        },
    }  # fmt: skip


async def test_phq9_scores_set_response_and_remission_goals_and_keep_a_phq9_due_every_4_months(
    rest: FhirRest,
) -> None:
    await deliver(rest, event(DEPRESSION, "created"), event(phq9("o1", "2026-01-10", 16), "created"))
    plan = await the_plan(rest)
    async with rest.store.transaction() as tx:
        goals = [orjson.loads((await tx.read("Goal", g["reference"][5:])).content) for g in plan["goal"]]
    assert {g["achievementStatus"]["coding"][0]["code"] for g in goals} == {"in-progress"}
    due = {
        a["detail"]["scheduledPeriod"]["end"]: a
        for a in plan["activity"]
        if "PHQ-9" in a["detail"]["description"]
    }
    assert set(due) == {"2026-01-05", "2026-05-10"}  # due at diagnosis, met by the PHQ-9 of Jan 10
    assert due["2026-01-05"]["detail"]["status"] == "completed"
    assert due["2026-01-05"]["outcomeReference"] == [{"reference": "Observation/o1"}]
    assert due["2026-05-10"]["detail"]["status"] == "not-started"

    await deliver(
        rest, event(phq9("o2", "2026-03-01", 7), "created"), event(phq9("o3", "2026-05-01", 4), "created")
    )
    await deliver(rest, event(phq9("o3", "2026-05-01", 4), "created"))  # the same score again: no change
    plan = await the_plan(rest)
    async with rest.store.transaction() as tx:
        goals = [orjson.loads((await tx.read("Goal", g["reference"][5:])).content) for g in plan["goal"]]
    status = {
        g["identifier"][0]["value"].split("/")[1]: g["achievementStatus"]["coding"][0]["code"] for g in goals
    }
    # 16 -> 7 meets the response target (<= 8), 4 keeps it (sustaining) and meets remission (< 5)
    assert status == {"response": "sustaining", "remission": "achieved"}
    assert all(g["meta"]["versionId"] == "3" for g in goals)  # one version per change, none for the resend
    open_due = [
        a["detail"]["scheduledPeriod"]["end"] for a in plan["activity"]
        if "PHQ-9" in a["detail"]["description"] and a["detail"]["status"] == "not-started"
    ]  # fmt: skip
    assert open_due == ["2026-09-01"]


async def test_a_referral_and_its_task_show_on_the_plan_once_each_step(rest: FhirRest) -> None:
    request = {
        "resourceType": "ServiceRequest", "id": "sr-1", "meta": {"versionId": "1"}, "status": "active",
        "intent": "order", "code": {"text": "Food pantry"}, "subject": {"reference": "Patient/p1"},
        "authoredOn": "2026-11-02T09:00:00+00:00",
    }  # fmt: skip
    task = {
        "resourceType": "Task", "id": "t-1", "status": "requested", "intent": "order",
        "focus": {"reference": "ServiceRequest/sr-1"}, "for": {"reference": "Patient/p1"},
    }  # fmt: skip
    handle = handlers.on_referral_event(rest)
    for resource in (request, request, task, {**task, "status": "accepted"}, {**task, "status": "completed"}):
        async with rest.store.transaction() as tx:
            await handle(CloudEvent.from_json(event(resource).to_json()), tx)
    plan = await the_plan(rest)
    (activity,) = plan["activity"]
    assert activity["detail"]["status"] == "completed"
    assert plan["meta"]["versionId"] == "3"  # added, scheduled, completed
