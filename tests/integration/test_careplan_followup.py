"""Post-discharge follow-up end to end: HL7 ADT over MLLP (python-hl7's client) into the
gateway, intake's Encounter and Conditions to careplan, the CarePlan and CareTeam read back
through /fhir, the worklist through the gateway. Synthetic people and a synthetic directory."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import hl7.client
import httpx
import orjson
import pytest

from services.careplan.domain.caseload import CASE_MANAGEMENT_MODEL_SYSTEM
from services.careplan.domain.followup import ACTIVITY_KIND
from tests.integration.stack import Stack, eventually
from tests.synthetic import synthetic_person

FHIR = {"Content-Type": "application/fhir+json"}
HOSPITAL = "SOUTH HOSP"


def ids(kind: str) -> str:
    return f"{kind[0].upper()}{uuid.uuid4().hex[:15]}"


def adt(trigger: str, mrn: str, visit: str, *, patient_class: str, admitted: str, discharged: str = "",
        diagnosis: str = "F32.2^Major depressive disorder, single episode, severe^I10") -> bytes:  # fmt: skip
    structure = {"A01": "ADT_A01", "A03": "ADT_A03", "A04": "ADT_A01", "A13": "ADT_A01"}[trigger]
    someone = synthetic_person(mrn)
    pv1 = ["PV1", "1", patient_class] + [""] * 43
    pv1[3] = "PSY^201^A" if patient_class == "I" else "CLINIC^1"
    pv1[19] = f"{visit}^^^SOUTHVISIT^VN"
    pv1[36] = "01" if discharged else ""
    pv1[44], pv1[45] = admitted, discharged
    segments = [
        f"MSH|^~\\&|EPIC|{HOSPITAL}|CAREBRIDGE|CAREBRIDGE|{admitted}||ADT^{trigger}^{structure}|{ids('msg')}|P|2.5.1",
        f"EVN|{trigger}|{admitted}",
        f"PID|1||{mrn}^^^SOUTHMRN^MR||{someone.hl7_name}||{someone.hl7_birth_date}|F",
        "|".join(pv1),
        f"DG1|1||{diagnosis}||{admitted[:8]}|F|||||||||1",
    ]
    return ("\r".join(segments) + "\r").encode()


def mllp_send(port: int, messages: list[bytes]) -> list[str]:
    with hl7.client.MLLPClient("127.0.0.1", port) as client:
        acks = [client.send_message(m).decode() for m in messages]
    return [next(s for s in a.split("\r") if s.startswith("MSA")).split("|")[1] for a in acks]


async def search(http: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    response = await http.get(f"/fhir/{path}", params=params)
    assert response.status_code == 200, response.text
    return [
        e["resource"]
        for e in response.json().get("entry", [])
        if e.get("search", {}).get("mode") != "include"
    ]


def kind_of(activity: dict[str, Any]) -> str | None:
    return next(
        (e.get("valueCode") for e in activity.get("extension", []) if e["url"] == ACTIVITY_KIND), None
    )


def by_kind(plan: dict[str, Any], trigger: str) -> dict[str, dict[str, Any]]:
    out = {}
    for activity in plan.get("activity", []):
        refs = [e.get("valueReference", {}).get("reference") for e in activity.get("extension", [])]
        if trigger in refs and kind_of(activity):
            out[str(kind_of(activity))] = activity
    return out


@pytest.fixture
async def case_manager(stack: Stack) -> str:
    """An ACT program with one case manager in referral's directory, known to careplan."""
    async with stack.client() as http:
        program = (
            await http.post("/fhir/HealthcareService", headers=FHIR, content=orjson.dumps({
                "resourceType": "HealthcareService", "active": True, "name": f"ACT {uuid.uuid4().hex[:6]}",
                "type": [{"coding": [{"system": CASE_MANAGEMENT_MODEL_SYSTEM, "code": "act"}]}],
            }))
        ).json()  # fmt: skip
        practitioner = (
            await http.post("/fhir/Practitioner", headers=FHIR, content=orjson.dumps({
                "resourceType": "Practitioner", "name": [{"family": "Casewell", "given": ["Robin"]}],
            }))
        ).json()  # fmt: skip
        role = await http.post("/fhir/PractitionerRole", headers=FHIR, content=orjson.dumps({
            "resourceType": "PractitionerRole", "active": True,
            "practitioner": {"reference": f"Practitioner/{practitioner['id']}"},
            "healthcareService": [{"reference": f"HealthcareService/{program['id']}"}],
        }))  # fmt: skip
        assert role.status_code == 201, role.text
    # careplan learns of the program from referral's events
    from services.careplan import caseload

    async def known() -> bool:
        async with stack.careplan.runtime.store.connect() as connection:
            counts = await caseload.caseload_counts(connection, stack.careplan.runtime.settings)
        return any(c.practitioner == f"Practitioner/{practitioner['id']}" for c in counts)

    await eventually(known)
    return str(practitioner["id"])


async def test_a03_psychiatric_discharge_makes_a_plan_with_a_case_manager_and_a_day_5_visit_completes_day_7(
    stack: Stack, case_manager: str
) -> None:
    mrn, stay, visit = ids("mrn"), ids("visit"), ids("visit")
    acks = await asyncio.to_thread(mllp_send, stack.mllp_port, [
        adt("A01", mrn, stay, patient_class="I", admitted="20261101083000"),
        adt("A03", mrn, stay, patient_class="I", admitted="20261101083000", discharged="20261108140000"),
    ])  # fmt: skip
    assert acks == ["AA", "AA"]
    async with stack.client() as http:
        [patient] = await eventually(lambda: search(http, "Patient", identifier=mrn))
        [encounter] = await eventually(lambda: search(http, "Encounter", identifier=stay))
        trigger = f"Encounter/{encounter['id']}"

        async def plan_with_follow_up() -> dict[str, Any] | None:
            plans = await search(http, "CarePlan", patient=patient["id"], status="active")
            return plans[0] if plans and by_kind(plans[0], trigger) else None

        plan = await eventually(plan_with_follow_up)
        activities = by_kind(plan, trigger)
        assert set(activities) == {
            "caring-contact",
            "follow-up-7",
            "follow-up-30",
            "medication-reconciliation",
        }
        assert activities["caring-contact"]["detail"]["scheduledPeriod"]["end"].startswith(
            "2026-11-11T14:00:00"
        )
        assert activities["follow-up-7"]["detail"]["scheduledPeriod"]["start"].startswith("2026-11-09")
        assert activities["follow-up-7"]["detail"]["scheduledPeriod"]["end"].startswith("2026-11-15")
        assert activities["follow-up-30"]["detail"]["scheduledPeriod"]["end"].startswith("2026-12-08")
        assert {a["detail"]["status"] for a in activities.values()} == {"not-started"}

        [team] = await eventually(lambda: search(http, "CareTeam", patient=patient["id"]))
        members = [p["member"]["reference"] for p in team["participant"]]
        assert f"Practitioner/{case_manager}" in members

        # Day 5: an outpatient visit with a mental-health diagnosis.
        acks = await asyncio.to_thread(mllp_send, stack.mllp_port, [
            adt("A04", mrn, visit, patient_class="O", admitted="20261113100000"),
        ])  # fmt: skip
        assert acks == ["AA"]
        [seen] = await eventually(lambda: search(http, "Encounter", identifier=visit))

        async def completed() -> dict[str, Any] | None:
            plans = await search(http, "CarePlan", patient=patient["id"], status="active")
            done = by_kind(plans[0], trigger)
            return done if done["follow-up-7"]["detail"]["status"] == "completed" else None

        done = await eventually(completed)
        assert done["follow-up-7"]["outcomeReference"] == [{"reference": f"Encounter/{seen['id']}"}]
        assert done["follow-up-30"]["detail"]["status"] == "completed"
        assert done["caring-contact"]["detail"]["status"] == "not-started"  # day 5 is past 72 hours
        assert done["medication-reconciliation"]["detail"]["status"] == "not-started"

        worklist = await http.get("/worklist", params={"practitioner": case_manager})
        assert worklist.status_code == 200, worklist.text
        body = worklist.json()
        overdue = {(i["patient"]["reference"], i["kind"]) for i in body["overdue"]}
        assert (f"Patient/{patient['id']}", "caring-contact") in overdue
        assert (f"Patient/{patient['id']}", "follow-up-7") not in overdue


async def test_a13_takes_the_follow_up_back_and_a_readmission_moves_it_to_the_later_discharge(
    stack: Stack,
) -> None:
    mrn, first, second = ids("mrn"), ids("visit"), ids("visit")
    acks = await asyncio.to_thread(mllp_send, stack.mllp_port, [
        adt("A01", mrn, first, patient_class="I", admitted="20261001083000"),
        adt("A03", mrn, first, patient_class="I", admitted="20261001083000", discharged="20261005120000"),
        # readmitted on day 10, discharged again
        adt("A01", mrn, second, patient_class="I", admitted="20261015090000"),
        adt("A03", mrn, second, patient_class="I", admitted="20261015090000", discharged="20261020120000"),
    ])  # fmt: skip
    assert acks == ["AA"] * 4
    async with stack.client() as http:
        [patient] = await eventually(lambda: search(http, "Patient", identifier=mrn))
        stays = {}
        for visit in (first, second):
            [found] = await eventually(lambda visit=visit: search(http, "Encounter", identifier=visit))
            stays[visit] = f"Encounter/{found['id']}"

        async def moved() -> dict[str, Any] | None:
            plans = await search(http, "CarePlan", patient=patient["id"], status="active")
            if not plans:
                return None
            old, new = by_kind(plans[0], stays[first]), by_kind(plans[0], stays[second])
            return plans[0] if new and old and old["follow-up-7"]["detail"]["status"] == "cancelled" else None

        plan = await eventually(moved)
        old = by_kind(plan, stays[first])
        assert "Readmitted 2026-10-15" in old["follow-up-30"]["detail"]["statusReason"]["text"]
        assert {a["detail"]["status"] for a in by_kind(plan, stays[second]).values()} == {"not-started"}

        # The hospital cancels the second discharge (A13): its follow-up is taken back.
        acks = await asyncio.to_thread(mllp_send, stack.mllp_port, [
            adt("A13", mrn, second, patient_class="I", admitted="20261015090000"),
        ])  # fmt: skip
        assert acks == ["AA"]

        async def retracted() -> dict[str, Any] | None:
            plans = await search(http, "CarePlan", patient=patient["id"], status="active")
            new = by_kind(plans[0], stays[second])
            return new if new["follow-up-7"]["detail"]["status"] == "cancelled" else None

        new = await eventually(retracted)
        assert new["follow-up-7"]["detail"]["statusReason"]["text"] == "Discharge cancelled (ADT A13)"


async def test_the_worklist_needs_a_practitioner_and_a_user_or_system_token(stack: Stack) -> None:
    async with stack.client() as http:
        missing = await http.get("/worklist")
    assert missing.status_code == 400 and missing.json()["resourceType"] == "OperationOutcome"


async def test_the_worklist_refuses_a_patient_token_with_an_operation_outcome(stack: Stack) -> None:
    from shared.auth import mint_token

    token = mint_token(stack.settings.jwt_hs256_secret, "patient/*.rs", patient="someone")
    async with httpx.AsyncClient(
        base_url=stack.gateway.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        answer = await http.get("/worklist", params={"practitioner": "x"})
    assert answer.status_code == 403 and answer.json()["resourceType"] == "OperationOutcome"
