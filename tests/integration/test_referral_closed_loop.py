"""The closed loop through the gateway with real HTTP: a case manager refers a client to a clinic,
referral makes the Gravity Task, the clinic with its own token (organization claim) takes it to
completion with If-Match on every step, illegal steps get OperationOutcomes, another clinic sees
none of it, a REF^I12 over MLLP makes ServiceRequest + Task, and a referral not accepted in time is
escalated once. Synthetic data only; every test makes its own organizations and patient."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from services.referral import referrals, sla
from services.referral.domain import workflow
from shared.auth import mint_token
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from tests.integration.stack import Stack, eventually
from tests.integration.test_gateway_errors import assert_outcome
from tests.integration.test_hl7_pipeline import mllp_send, msa, person

FHIR_JSON = {"Content-Type": "application/fhir+json"}
HOUSING = {
    "system": "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes",
    "code": "housing-instability",
    "display": "Housing Instability",
}
DELIVERED = [{"type": {"coding": [workflow.RESULTING_ACTIVITY]}, "valueString": "Housing application filed"}]


def clinic_headers(stack: Stack, organization: str) -> dict[str, str]:
    token = mint_token(
        stack.settings.jwt_hs256_secret, "user/Task.rus user/ServiceRequest.rs", organization=organization
    )
    return {"Authorization": f"Bearer {token}", **FHIR_JSON}


async def created(http: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def task_of(http: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    response = await http.get("/fhir/Task", params={"focus": f"ServiceRequest/{request_id}"})
    assert response.status_code == 200, response.text
    [task] = [e["resource"] for e in response.json()["entry"]]
    return task


async def put(
    http: httpx.AsyncClient,
    task: dict[str, Any],
    headers: dict[str, str],
    if_match: str | None = "current",
    **change: Any,
) -> httpx.Response:
    sent = dict(headers)
    if if_match is not None:
        sent["If-Match"] = f'W/"{task["meta"]["versionId"]}"' if if_match == "current" else if_match
    body = {k: v for k, v in {**task, **change}.items() if k != "meta"}
    return await http.put(f"/fhir/Task/{task['id']}", content=orjson.dumps(body), headers=sent)


@pytest.fixture
async def referral(stack: Stack) -> dict[str, Any]:
    """A patient, a case manager, two clinics, and a housing referral to the first clinic."""
    tag = uuid.uuid4().hex[:8]
    async with stack.client() as http:
        patient = await created(http, {"resourceType": "Patient", "name": [{"family": f"Loop{tag}"}]})
        manager = await created(http, {"resourceType": "Practitioner", "name": [{"family": f"Manager{tag}"}]})
        clinic = await created(http, {"resourceType": "Organization", "name": f"Harbor Housing {tag}"})
        other = await created(http, {"resourceType": "Organization", "name": f"Elm Street Clinic {tag}"})
        request = await created(
            http,
            {
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "order",
                "category": [{"coding": [HOUSING]}],
                "code": {"text": "Housing navigation"},
                "subject": {"reference": f"Patient/{patient['id']}"},
                "requester": {"reference": f"Practitioner/{manager['id']}"},
                "performer": [{"reference": f"Organization/{clinic['id']}"}],
            },
        )
        task = await task_of(http, request["id"])
    return {"patient": patient, "manager": manager, "clinic": clinic, "other": other, "request": request,
            "task": task}  # fmt: skip


async def test_the_clinic_closes_the_loop_with_its_own_token_one_version_per_step(
    stack: Stack, referral: dict[str, Any]
) -> None:
    task, clinic = referral["task"], referral["clinic"]
    assert task["status"] == "requested" and task["meta"]["versionId"] == "1"
    assert task["owner"] == {"reference": f"Organization/{clinic['id']}"}
    assert task["requester"] == {"reference": f"Practitioner/{referral['manager']['id']}"}
    assert task["for"] == {"reference": f"Patient/{referral['patient']['id']}"}
    headers = clinic_headers(stack, clinic["id"])
    async with stack.client() as http:
        for status in ("received", "accepted"):
            response = await put(http, task, headers, status=status)
            assert response.status_code == 200, response.text
            task = response.json()
            assert task["status"] == status
        # A JSON Patch is an update too: same rules, same If-Match.
        patch = orjson.dumps([{"op": "replace", "path": "/status", "value": "in-progress"}])
        response = await http.patch(
            f"/fhir/Task/{task['id']}",
            content=patch,
            headers={**headers, "Content-Type": "application/json-patch+json", "If-Match": 'W/"3"'},
        )
        assert response.status_code == 200, response.text
        task = response.json()
        response = await put(http, task, headers, status="completed", output=DELIVERED)
        assert response.status_code == 200, response.text
        done = response.json()
        history = (await http.get(f"/fhir/Task/{task['id']}/_history", headers=headers)).json()
    assert done["status"] == "completed" and done["meta"]["versionId"] == "5"
    statuses = [e["resource"]["status"] for e in history["entry"]]
    assert statuses == ["completed", "in-progress", "accepted", "received", "requested"]


async def test_illegal_steps_get_operation_outcomes(stack: Stack, referral: dict[str, Any]) -> None:
    task = referral["task"]
    clinic = clinic_headers(stack, referral["clinic"]["id"])
    async with stack.client() as http:
        draft = await put(http, task, clinic, status="draft")
        assert "set by the requester" in assert_outcome(draft, 403, "forbidden")
        no_if_match = await put(http, task, clinic, if_match=None, status="received")
        assert "If-Match" in assert_outcome(no_if_match, 428, "required")
        reject_silently = await put(http, task, clinic, status="rejected")
        assert "statusReason" in assert_outcome(reject_silently, 422, "business-rule")
        received = await put(http, task, clinic, status="received")
        assert received.status_code == 200, received.text
        stale = await put(http, task, clinic, if_match='W/"1"', status="accepted")
        assert_outcome(stale, 412, "conflict")
        task = received.json()
        # The case manager (no organization: the requester) cancels, with a reason.
        no_reason = await put(http, task, FHIR_JSON, status="cancelled")
        assert_outcome(no_reason, 422, "business-rule")
        cancelled = await put(
            http, task, FHIR_JSON, status="cancelled", statusReason={"text": "Client moved away"}
        )
        assert cancelled.status_code == 200, cancelled.text
        task = cancelled.json()
        complete = await put(http, task, clinic, status="completed", output=DELIVERED)
        assert "cancelled cannot become completed" in assert_outcome(complete, 422, "business-rule")
        final = (await http.get(f"/fhir/Task/{task['id']}")).json()
    assert final["status"] == "cancelled" and final["statusReason"]["text"] == "Client moved away"


async def test_another_clinic_sees_and_changes_none_of_it(stack: Stack, referral: dict[str, Any]) -> None:
    task, request = referral["task"], referral["request"]
    other = clinic_headers(stack, referral["other"]["id"])
    async with stack.client() as http:
        tasks = await http.get(
            "/fhir/Task",
            params={"focus": f"ServiceRequest/{request['id']}", "_total": "accurate"},
            headers=other,
        )
        requests = await http.get("/fhir/ServiceRequest", params={"_id": request["id"]}, headers=other)
        read = await http.get(f"/fhir/Task/{task['id']}", headers=other)
        read_request = await http.get(f"/fhir/ServiceRequest/{request['id']}", headers=other)
        update = await put(http, task, other, status="accepted")
        unchanged = (await http.get(f"/fhir/Task/{task['id']}")).json()
    assert tasks.status_code == 200 and tasks.json().get("entry", []) == []
    assert tasks.json().get("total", 0) == 0
    assert requests.json().get("entry", []) == []
    assert_outcome(read, 403, "forbidden")
    assert_outcome(read_request, 403, "forbidden")
    assert_outcome(update, 403, "forbidden")
    assert unchanged["meta"]["versionId"] == "1"


async def test_a_clinic_writing_through_a_batch_is_still_the_owner(
    stack: Stack, referral: dict[str, Any]
) -> None:
    """The gateway forwards the organization with Bundles too: a clinic cannot act as requester there."""
    task = referral["task"]
    clinic = clinic_headers(stack, referral["clinic"]["id"])
    entry = {
        "resource": {**task, "status": "entered-in-error"},
        "request": {"method": "PUT", "url": f"Task/{task['id']}", "ifMatch": 'W/"1"'},
    }
    async with stack.client() as http:
        response = await http.post(
            "/fhir",
            content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}),
            headers=clinic,
        )
    assert response.status_code == 200, response.text
    [answer] = response.json()["entry"]
    assert answer["response"]["status"].startswith("403")


# --- HL7 -------------------------------------------------------------------------------------------


def ref_i12(control_id: str, mrn: str, referral_id: str, oid: str) -> bytes:
    rf1 = [""] * 10
    rf1[1:10] = ["P^Pending^HL70283", "R^Routine^HL70280", "Psy^Psychiatric^HL70281", "", "O",
                 f"{referral_id}^NORTHCLINIC", "20261101", "20270201", "20261101"]  # fmt: skip
    segments = [
        f"MSH|^~\\&|EHR|NORTHCLINIC|CAREBRIDGE|CB|20261101091500||REF^I12^REF_I12|{control_id}|P|2.5.1",
        "RF1|" + "|".join(rf1[1:]),
        "PRD|RP^Referring Provider^HL70286|EVERYDOC^CASEY^^^DR|||^WPN^PH^^1^413^5550100||1234567893^NPI",
        f"PRD|RT^Referred to Provider^HL70286|THERAPIST^MORGAN^^^DR||^^^SUNRISE BH&{oid}&ISO|"
        "^WPN^PH^^1^413^5550200||LIC-55^SL^MA^20261231",
        f"PID|1||{mrn}^^^NORTHMRN^MR||{person(mrn)}|F",
        "PV1|1|O",
    ]
    return ("\r".join(segments) + "\r").encode()


async def test_a_ref_i12_over_mllp_becomes_a_service_request_and_its_task(stack: Stack) -> None:
    mrn, referral_id = f"M{uuid.uuid4().hex[:12]}", f"RF{uuid.uuid4().hex[:12]}"
    oid = f"2.16.840.1.113883.19.5.{uuid.uuid4().int % 10**9}"
    [ack] = await asyncio.to_thread(
        mllp_send, stack.mllp_port, [ref_i12(f"C{uuid.uuid4().hex[:12]}", mrn, referral_id, oid)]
    )
    assert msa(ack)[1] == "AA"
    async with stack.client() as http:

        async def the_request() -> list[dict[str, Any]]:
            found = await http.get("/fhir/ServiceRequest", params={"identifier": referral_id})
            return [e["resource"] for e in found.json().get("entry", [])]

        [request] = await eventually(the_request, timeout=40)
        task = await task_of(http, request["id"])
        [organization] = [
            e["resource"]
            for e in (await http.get("/fhir/Organization", params={"identifier": f"urn:oid:{oid}"})).json()[
                "entry"
            ]
        ]
        assert task["status"] == "requested"
        assert task["owner"]["reference"] == f"Organization/{organization['id']}"
        assert task["requester"] == request["requester"] and task["for"] == request["subject"]
        # The receiving organization works it like any referral.
        accepted = await put(http, task, clinic_headers(stack, organization["id"]), status="accepted")
        assert accepted.status_code == 200, accepted.text


# --- the acceptance SLA ----------------------------------------------------------------------------


async def test_a_referral_not_accepted_in_time_is_escalated_once_even_when_the_scan_runs_twice(
    stack: Stack, referral: dict[str, Any]
) -> None:
    task = referral["task"]
    rest = FhirRest(stack.referral.runtime, OWNED_TYPES["referral"])
    store = stack.referral.runtime.store
    sent_long_ago = datetime.now(UTC) - timedelta(hours=100)
    async with store.transaction() as tx:
        t = referrals.referral_tasks
        connection = await tx.sql_connection()
        await connection.execute(
            sa.update(t).where(t.c.task_id == task["id"]).values(requested_at=sent_long_ago)
        )
    limit = timedelta(hours=stack.referral.runtime.settings.acceptance_sla_hours)  # type: ignore[attr-defined]
    first = await sla.escalate_unaccepted(rest, datetime.now(UTC), limit)
    second = await sla.escalate_unaccepted(rest, datetime.now(UTC), limit)
    assert first >= 1 and second == 0

    async def escalations() -> list[Any]:
        async with store.connect() as connection:
            o = store.tables.outbox
            rows = (await connection.execute(sa.select(o.c.key, o.c.value, o.c.published_at))).all()
        return [r for r in rows if orjson.loads(r.value).get("subject") == f"Task/{task['id']}"
                and orjson.loads(r.value)["type"] == topics.REFERRAL_ACCEPTANCE_OVERDUE_EVENT]  # fmt: skip

    [row] = await escalations()
    assert row.key == referral["patient"]["id"].encode()
    await eventually(lambda: _published(escalations))


async def _published(escalations: Any) -> bool:
    return all(r.published_at is not None for r in await escalations())
