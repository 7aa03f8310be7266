"""Closed-loop referrals on both databases, through referral's FHIR interactions without HTTP:
a referral ServiceRequest gets its Task in the same transaction, one Task per referral (also when a
transaction Bundle carries both), the state machine by caller role, If-Match required on Task
updates, a revoked referral cancels its Task, the Task index timeline, and the acceptance SLA
escalated once. Synthetic data only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from services.referral import referrals, sla
from services.referral.domain import workflow
from shared.errors import BusinessRuleViolation, Forbidden, PreconditionRequired
from shared.events import topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import Caller, Dispatcher, FhirRest, RestRequest, calling_as
from shared.settings import ReferralSettings
from shared.store import Store

CLINIC = Caller("clinic-user", "clinic-1")
HOUSING = {"system": "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes",
           "code": "housing-instability", "display": "Housing Instability"}  # fmt: skip
FHIR_JSON = {"content-type": "application/fhir+json"}


@dataclass
class Holder:
    store: Store
    settings: ReferralSettings


@pytest.fixture
async def rest(database_url: str) -> AsyncIterator[FhirRest]:
    store = await Store.open(database_url, extra_migrations=(*referrals.MIGRATIONS, *sla.MIGRATIONS))
    yield FhirRest(
        Holder(store, ReferralSettings(database_url="unused")),
        OWNED_TYPES["referral"],
        hooks=referrals.hooks(),
    )
    await store.close()


def service_request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [HOUSING]}],
        "code": {"text": "Housing navigation"},
        "subject": {"reference": "Patient/p1"},
        "requester": {"reference": "PractitionerRole/cm1"},
        "performer": [{"reference": f"Organization/{CLINIC.organization}"}],
    }
    body.update(overrides)
    return body


async def create(rest: FhirRest, resource: dict[str, Any]) -> dict[str, Any]:
    async with rest.store.transaction() as tx:
        written = await rest.create(tx, resource["resourceType"], resource)
    created: dict[str, Any] = orjson.loads(written.stored.content)
    return created


async def tasks_for(rest: FhirRest, request_id: str) -> list[dict[str, Any]]:
    found = await rest.searcher.matches(rest.store, "Task", [("focus", f"ServiceRequest/{request_id}")])
    return [orjson.loads(s.content) for s in found]


async def set_status(rest: FhirRest, task: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    async with rest.store.transaction() as tx:
        written = await rest.update(tx, "Task", task["id"], {**task, "status": status, **extra})
    updated: dict[str, Any] = orjson.loads(written.stored.content)
    return updated


async def index_row(rest: FhirRest, task_id: str) -> Any:
    async with rest.store.connect() as connection:
        t = referrals.referral_tasks
        return (await connection.execute(sa.select(t).where(t.c.task_id == task_id))).first()


# --- a referral gets its Task ----------------------------------------------------------------------


async def test_a_referral_service_request_gets_a_requested_task_for_the_receiving_organization(
    rest: FhirRest,
) -> None:
    request = await create(rest, service_request(priority="urgent"))
    [task] = await tasks_for(rest, request["id"])
    assert task["status"] == "requested" and task["intent"] == "order"
    assert task["code"]["coding"] == [workflow.FULFILL]
    assert task["owner"] == {"reference": "Organization/clinic-1"}
    assert task["requester"] == request["requester"] and task["for"] == request["subject"]
    assert task["priority"] == "urgent"
    row = await index_row(rest, task["id"])
    assert (row.status, row.owner_org, row.patient_id, row.category_code) == (
        "requested", "clinic-1", "p1", "housing-instability"
    )  # fmt: skip
    assert row.requested_at is not None and row.accepted_at is None


async def test_a_healthcare_service_performer_is_received_by_the_organization_providing_it(
    rest: FhirRest,
) -> None:
    service = await create(
        rest,
        {"resourceType": "HealthcareService", "providedBy": {"reference": "Organization/clinic-1"}},
    )
    request = await create(
        rest, service_request(performer=[{"reference": f"HealthcareService/{service['id']}"}])
    )
    [task] = await tasks_for(rest, request["id"])
    assert task["owner"] == {"reference": "Organization/clinic-1"}


async def test_a_request_that_is_no_referral_to_an_organization_gets_no_task(rest: FhirRest) -> None:
    draft = await create(rest, service_request(status="draft"))
    to_a_person = await create(rest, service_request(performer=[{"reference": "Practitioner/x"}]))
    assert await tasks_for(rest, draft["id"]) == []
    assert await tasks_for(rest, to_a_person["id"]) == []
    # Activated later, the draft becomes a referral and gets its Task then (once).
    async with rest.store.transaction() as tx:
        await rest.update(tx, "ServiceRequest", draft["id"], {**draft, "status": "active"})
    async with rest.store.transaction() as tx:
        await rest.update(
            tx, "ServiceRequest", draft["id"], {**draft, "status": "active", "note": [{"text": "x"}]}
        )
    assert len(await tasks_for(rest, draft["id"])) == 1


async def test_a_referral_without_a_requester_is_refused_and_nothing_is_stored(rest: FhirRest) -> None:
    body = service_request()
    del body["requester"]
    with pytest.raises(BusinessRuleViolation) as raised:
        await create(rest, body)
    assert raised.value.expression == ["ServiceRequest.requester"]
    assert await rest.searcher.matches(rest.store, "ServiceRequest", [("subject", "Patient/p1")]) == []


async def test_a_second_task_for_the_same_referral_is_refused(rest: FhirRest) -> None:
    request = await create(rest, service_request())
    [task] = await tasks_for(rest, request["id"])
    duplicate = {k: v for k, v in task.items() if k not in ("id", "meta")}
    with pytest.raises(BusinessRuleViolation, match=f"already has its referral Task \\(Task/{task['id']}\\)"):
        await create(rest, duplicate)


@pytest.mark.parametrize("task_first", [False, True])
async def test_a_transaction_with_the_request_and_its_task_makes_one_task(
    rest: FhirRest, task_first: bool
) -> None:
    request_entry = {
        "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
        "resource": service_request(),
        "request": {"method": "POST", "url": "ServiceRequest"},
    }
    task = workflow.new_referral_task({**service_request(), "id": "x"}, datetime.now(UTC))
    task["focus"] = {"reference": request_entry["fullUrl"]}
    task["description"] = "the client's own Task"
    task_entry = {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222", "resource": task,
                  "request": {"method": "POST", "url": "Task"}}  # fmt: skip
    entries = [task_entry, request_entry] if task_first else [request_entry, task_entry]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = await Dispatcher(rest).handle(
        RestRequest("POST", "", headers=FHIR_JSON, body=orjson.dumps(bundle))
    )
    assert response.status == 200, response.body
    answer = orjson.loads(response.body)
    location = next(
        e["response"]["location"] for e in answer["entry"] if "ServiceRequest/" in e["response"]["location"]
    )
    request_id = location.split("ServiceRequest/")[1].split("/")[0]
    [kept] = await tasks_for(rest, request_id)
    assert kept["description"] == "the client's own Task"
    async with rest.store.connect() as connection:
        t = referrals.referral_tasks
        rows = (
            await connection.execute(sa.select(t.c.task_id).where(t.c.service_request_id == request_id))
        ).all()
    assert [r.task_id for r in rows] == [kept["id"]]


# --- the state machine by role ---------------------------------------------------------------------


async def test_the_clinic_takes_the_referral_to_completion_and_the_index_keeps_the_timeline(
    rest: FhirRest,
) -> None:
    request = await create(rest, service_request())
    [task] = await tasks_for(rest, request["id"])
    with calling_as(CLINIC):
        for status in ("received", "accepted", "in-progress"):
            task = await set_status(rest, task, status)
        output = [
            {"type": {"coding": [workflow.RESULTING_ACTIVITY]}, "valueString": "Housing application filed"}
        ]
        task = await set_status(rest, task, "completed", output=output)
    assert task["meta"]["versionId"] == "5"
    row = await index_row(rest, task["id"])
    assert row.status == "completed" and row.version == 5
    stamps = [row.requested_at, row.received_at, row.accepted_at, row.in_progress_at, row.completed_at]
    assert all(stamps) and stamps == sorted(stamps)
    assert row.rejected_at is None and row.cancelled_at is None


async def test_roles_decide_who_may_set_what(rest: FhirRest) -> None:
    request = await create(rest, service_request())
    [task] = await tasks_for(rest, request["id"])
    with pytest.raises(Forbidden):  # the referrer cannot accept for the clinic
        await set_status(rest, task, "accepted")
    with calling_as(CLINIC), pytest.raises(Forbidden):  # a clinic cannot set draft
        await set_status(rest, task, "draft")
    with calling_as(Caller("other-user", "clinic-2")), pytest.raises(Forbidden, match="not addressed"):
        await set_status(rest, task, "accepted")
    with calling_as(CLINIC), pytest.raises(BusinessRuleViolation, match="statusReason"):
        await set_status(rest, task, "rejected")
    with calling_as(CLINIC):
        rejected = await set_status(rest, task, "rejected", statusReason={"text": "No capacity this month"})
    row = await index_row(rest, task["id"])
    assert (row.status, row.status_reason) == ("rejected", "No capacity this month")
    with calling_as(CLINIC), pytest.raises(BusinessRuleViolation, match="rejected cannot become accepted"):
        await set_status(rest, rejected, "accepted")


async def test_a_client_update_of_a_task_needs_if_match(rest: FhirRest) -> None:
    request = await create(rest, service_request())
    [task] = await tasks_for(rest, request["id"])
    dispatcher = Dispatcher(rest)
    body = orjson.dumps({**task, "status": "accepted"})
    headers = {**FHIR_JSON, "x-carebridge-organization": "clinic-1"}
    with pytest.raises(PreconditionRequired):
        await dispatcher.handle(RestRequest("PUT", f"Task/{task['id']}", headers=headers, body=body))
    response = await dispatcher.handle(
        RestRequest("PUT", f"Task/{task['id']}", headers={**headers, "if-match": 'W/"1"'}, body=body)
    )
    assert response.status == 200 and orjson.loads(response.body)["status"] == "accepted"


async def test_a_revoked_referral_cancels_its_open_task(rest: FhirRest) -> None:
    request = await create(rest, service_request())
    [task] = await tasks_for(rest, request["id"])
    with calling_as(CLINIC):
        await set_status(rest, task, "accepted")
    async with rest.store.transaction() as tx:
        await rest.update(tx, "ServiceRequest", request["id"], {**request, "status": "revoked"})
    [cancelled] = await tasks_for(rest, request["id"])
    assert cancelled["status"] == "cancelled"
    assert "revoked" in cancelled["statusReason"]["text"]
    assert (await index_row(rest, task["id"])).cancelled_at is not None


# --- the acceptance SLA ----------------------------------------------------------------------------


async def test_a_referral_not_accepted_in_time_is_escalated_once(rest: FhirRest) -> None:
    late = await create(rest, service_request(subject={"reference": "Patient/p-late"}))
    accepted = await create(rest, service_request(subject={"reference": "Patient/p-accepted"}))
    [late_task] = await tasks_for(rest, late["id"])
    [accepted_task] = await tasks_for(rest, accepted["id"])
    with calling_as(CLINIC):
        await set_status(rest, late_task, "received")
        await set_status(rest, accepted_task, "accepted")
    limit = timedelta(hours=72)
    now = datetime.now(UTC)
    assert await sla.escalate_unaccepted(rest, now, limit) == 0  # not yet due
    assert await sla.escalate_unaccepted(rest, now + timedelta(hours=73), limit) == 1
    assert await sla.escalate_unaccepted(rest, now + timedelta(hours=80), limit) == 0
    async with rest.store.connect() as connection:
        o = rest.store.tables.outbox
        rows = (await connection.execute(sa.select(o.c.key, o.c.value, o.c.topic))).all()
    events = [(r, orjson.loads(r.value)) for r in rows]
    overdue = [(r, e) for r, e in events if e["type"] == topics.REFERRAL_ACCEPTANCE_OVERDUE_EVENT]
    assert len(overdue) == 1
    row, event = overdue[0]
    assert row.key == b"p-late" and row.topic == rest.settings.topic(topics.REFERRAL)
    assert event["subject"] == f"Task/{late_task['id']}"
    values = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in event["data"]["parameter"]
    }
    assert values["serviceRequest"] == {"reference": f"ServiceRequest/{late['id']}"}
    assert values["owner"] == {"reference": "Organization/clinic-1"}
    assert values["status"] == "received" and values["slaHours"] == 72
    assert values["category"]["code"] == "housing-instability"


async def test_a_deleted_task_no_longer_counts_as_the_referrals_task(rest: FhirRest) -> None:
    request = await create(rest, service_request())
    [task] = await tasks_for(rest, request["id"])
    async with rest.store.transaction() as tx:
        await rest.delete(tx, "Task", task["id"])
    again = await create(rest, {k: v for k, v in task.items() if k not in ("id", "meta")})
    assert await index_row(rest, task["id"]) is None
    assert (await index_row(rest, again["id"])).status == "requested"
