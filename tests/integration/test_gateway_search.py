"""What the gateway adds to search because no single service can: chains and includes whose types
live in other services, Patient/$everything, and the merged CapabilityStatement."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest

from services.gateway import everything, search
from services.gateway.client import BackendPool
from tests.integration.stack import Stack
from tests.integration.test_gateway_errors import assert_outcome

FHIR_JSON = {"Content-Type": "application/fhir+json"}
SYSTEM = "urn:carebridge:test:mrn"


async def create(http: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def by_mode(bundle: dict[str, Any], mode: str) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    }


@pytest.fixture(scope="module")
async def record(stack: Stack) -> dict[str, Any]:
    """One patient's record spread over the services, and a second patient with a plan."""
    tag = uuid.uuid4().hex
    async with stack.client() as http:
        patient = await create(
            http, {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]}
        )
        other = await create(
            http, {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"{tag}-2"}]}
        )
        ref = {"reference": f"Patient/{patient['id']}"}
        goal = await create(
            http,
            {
                "resourceType": "Goal",
                "lifecycleStatus": "active",
                "description": {"text": "Sleep"},
                "subject": ref,
            },
        )
        plans = [
            await create(
                http,
                {
                    "resourceType": "CarePlan",
                    "status": "active",
                    "intent": "plan",
                    "subject": ref,
                    "goal": [{"reference": f"Goal/{goal['id']}"}],
                },
            )
            for _ in range(3)
        ]
        other_plan = await create(
            http,
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": f"Patient/{other['id']}"},
            },
        )
        condition = await create(
            http, {"resourceType": "Condition", "code": {"text": "Depression"}, "subject": ref}
        )
        request = await create(
            http, {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": ref}
        )
        task = await create(
            http,
            {  # a Gravity Task for Referral Management (what referral accepts as a Task)
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "code": {
                    "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
                },
                "for": ref,
                "focus": {"reference": f"ServiceRequest/{request['id']}"},
                "authoredOn": "2026-11-01T09:00:00+00:00",
                "requester": {"reference": "Organization/search-referrer"},
                "owner": {"reference": "Organization/search-clinic"},
            },
        )
    return {
        "tag": tag,
        "patient": patient,
        "other": other,
        "goal": goal,
        "plans": plans,
        "other_plan": other_plan,
        "condition": condition,
        "request": request,
        "task": task,
    }


# --- chains ------------------------------------------------------------------------------------


async def test_chain_to_a_type_another_service_owns_is_resolved_by_the_gateway(
    stack: Stack, record: dict[str, Any]
) -> None:
    async with stack.client() as http:
        found = (
            await http.get(
                "/fhir/CarePlan", params={"subject:Patient.identifier": f"{SYSTEM}|{record['tag']}"}
            )
        ).json()
        untyped = (
            await http.get("/fhir/CarePlan", params={"patient.identifier": f"{SYSTEM}|{record['tag']}"})
        ).json()
    assert by_mode(found, "match") == {f"CarePlan/{p['id']}" for p in record["plans"]}
    assert by_mode(untyped, "match") == by_mode(found, "match")


async def test_chain_matching_no_target_gives_an_empty_searchset(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get(
            "/fhir/Task", params={"patient.identifier": f"{SYSTEM}|nobody-{uuid.uuid4().hex}"}
        )
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "searchset" and body["total"] == 0 and "entry" not in body


async def test_chain_with_a_bad_target_parameter_gets_the_owners_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/CarePlan", params={"subject:Patient.favourite-colour": "blue"})
    assert "chained search" in assert_outcome(response, 400, "invalid")


async def test_ambiguous_chain_across_services_asks_for_the_type(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Observation", params={"performer.name": "Smith"})
    assert "name the type" in assert_outcome(response, 400, "invalid")


# --- _include / _revinclude ---------------------------------------------------------------------


async def test_include_of_a_type_another_service_owns(stack: Stack, record: dict[str, Any]) -> None:
    patient = record["patient"]["id"]
    async with stack.client() as http:
        response = await http.get(
            "/fhir/CarePlan",
            params={"subject": f"Patient/{patient}", "_include": ["CarePlan:subject", "CarePlan:goal"]},
        )
    bundle = response.json()
    assert by_mode(bundle, "match") == {f"CarePlan/{p['id']}" for p in record["plans"]}
    # the Patient from intake (once, though three plans point at it), the Goal from careplan itself
    assert by_mode(bundle, "include") == {f"Patient/{patient}", f"Goal/{record['goal']['id']}"}
    assert [e["resource"]["resourceType"] for e in bundle["entry"]].count("Patient") == 1


async def test_revinclude_from_types_other_services_own(stack: Stack, record: dict[str, Any]) -> None:
    patient = record["patient"]["id"]
    params = {"_id": patient, "_revinclude": ["CarePlan:subject", "Task:patient", "Condition:subject"]}
    async with stack.client() as http:
        bundle = (await http.get("/fhir/Patient", params=params)).json()
    assert by_mode(bundle, "match") == {f"Patient/{patient}"}
    assert by_mode(bundle, "include") == {
        *(f"CarePlan/{p['id']}" for p in record["plans"]),
        f"Task/{record['task']['id']}",
        f"Condition/{record['condition']['id']}",
    }


async def test_paging_links_keep_the_cross_service_includes(stack: Stack, record: dict[str, Any]) -> None:
    patient = record["patient"]["id"]
    async with stack.client() as http:
        first = (
            await http.get(
                "/fhir/CarePlan",
                params={"subject": f"Patient/{patient}", "_include": "CarePlan:subject", "_count": "2"},
            )
        ).json()
        links = {link["relation"]: link["url"] for link in first["link"]}
        assert ("_include", "CarePlan:subject") in parse_qsl(urlsplit(links["next"]).query)
        second = (await http.get(links["next"])).json()
    assert len(by_mode(first, "match")) == 2 and len(by_mode(second, "match")) == 1
    assert by_mode(first, "match").isdisjoint(by_mode(second, "match"))
    assert by_mode(second, "include") == {f"Patient/{patient}"}


async def test_included_resources_of_types_the_token_may_not_read_are_left_out(
    stack: Stack, record: dict[str, Any]
) -> None:
    from shared.auth import mint_token

    token = mint_token(stack.settings.jwt_hs256_secret, "user/CarePlan.rs")
    async with stack.client() as http:
        bundle = (
            await http.get(
                "/fhir/CarePlan",
                params={"subject": f"Patient/{record['patient']['id']}", "_include": "CarePlan:subject"},
                headers={"Authorization": f"Bearer {token}"},
            )
        ).json()
    assert by_mode(bundle, "include") == set()
    assert len(by_mode(bundle, "match")) == 3


# --- Patient/$everything -----------------------------------------------------------------------


async def test_everything_gathers_the_patients_record_from_every_service(
    stack: Stack, record: dict[str, Any]
) -> None:
    patient = record["patient"]["id"]
    async with stack.client() as http:
        bundle = (await http.get(f"/fhir/Patient/{patient}/$everything")).json()
    assert bundle["type"] == "searchset"
    assert bundle["entry"][0]["resource"]["id"] == patient
    found = by_mode(bundle, "match")
    assert found == {
        f"Patient/{patient}",
        f"Goal/{record['goal']['id']}",
        *(f"CarePlan/{p['id']}" for p in record["plans"]),
        f"Condition/{record['condition']['id']}",
        f"ServiceRequest/{record['request']['id']}",
        f"Task/{record['task']['id']}",
    }
    assert bundle["total"] == len(found)
    assert f"CarePlan/{record['other_plan']['id']}" not in found


async def test_everything_can_be_limited_to_some_types(stack: Stack, record: dict[str, Any]) -> None:
    patient = record["patient"]["id"]
    async with stack.client() as http:
        bundle = (
            await http.get(f"/fhir/Patient/{patient}/$everything", params={"_type": "Goal,Task"})
        ).json()
        bad = await http.get(f"/fhir/Patient/{patient}/$everything", params={"_type": "Practitioner"})
    assert by_mode(bundle, "match") == {
        f"Patient/{patient}",
        f"Goal/{record['goal']['id']}",
        f"Task/{record['task']['id']}",
    }
    assert_outcome(bad, 400, "invalid")


async def test_everything_respects_the_token_scopes(stack: Stack, record: dict[str, Any]) -> None:
    from shared.auth import mint_token

    token = mint_token(stack.settings.jwt_hs256_secret, "user/Patient.rs user/CarePlan.rs")
    patient = record["patient"]["id"]
    async with stack.client() as http:
        bundle = (
            await http.get(
                f"/fhir/Patient/{patient}/$everything", headers={"Authorization": f"Bearer {token}"}
            )
        ).json()
    assert {k.split("/")[0] for k in by_mode(bundle, "match")} == {"Patient", "CarePlan"}


async def test_everything_for_an_unknown_patient_gets_404(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get(f"/fhir/Patient/{uuid.uuid4()}/$everything")
    assert_outcome(response, 404, "not-found")


# --- the CapabilityStatement -------------------------------------------------------------------


async def test_metadata_merges_what_every_service_declares(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url) as http:
        statement = (await http.get("/fhir/metadata")).json()
    rest = statement["rest"][0]
    types = {r["type"] for r in rest["resource"]}
    assert {
        "Patient",
        "Condition",
        "CarePlan",
        "Goal",
        "ServiceRequest",
        "Task",
        "Organization",
        "AuditEvent",
    } <= types
    assert {i["code"] for i in rest["interaction"]} == {"batch", "transaction"}
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {
        "name": "everything",
        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
    } in patient["operation"]
    assert "CarePlan:subject" in patient["searchRevInclude"]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert statement["implementation"]["url"] == stack.fhir


async def test_metadata_is_served_again_while_a_service_is_down_and_503_when_never_known(
    stack: Stack,
) -> None:
    state = stack.gateway.app.state.gateway
    pools = state.clients.pools
    careplan = pools["careplan"]
    async with httpx.AsyncClient(base_url=stack.gateway.url) as http:
        before = (await http.get("/fhir/metadata")).json()
        pools["careplan"] = BackendPool("careplan", "http://127.0.0.1:1")
        try:
            state.capability._cached = {
                base: (0.0, body) for base, (_, body) in state.capability._cached.items()
            }
            stale = await http.get("/fhir/metadata")
            state.capability._cached = {}
            unknown = await http.get("/fhir/metadata")
        finally:
            pools["careplan"] = careplan
    assert stale.status_code == 200 and stale.json()["rest"] == before["rest"]
    assert "careplan did not answer" in assert_outcome(unknown, 503, "transient")


async def test_everything_follows_each_services_next_links(
    stack: Stack, record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(everything, "_PAGE", 2)  # three CarePlans: two pages
    patient = record["patient"]["id"]
    async with stack.client() as http:
        bundle = (await http.get(f"/fhir/Patient/{patient}/$everything", params={"_type": "CarePlan"})).json()
    assert by_mode(bundle, "match") == {
        f"Patient/{patient}",
        *(f"CarePlan/{p['id']}" for p in record["plans"]),
    }


async def test_everything_past_its_limit_says_it_was_cut_short(
    stack: Stack, record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(everything, "EVERYTHING_LIMIT", 3)
    patient = record["patient"]["id"]
    async with stack.client() as http:
        bundle = (await http.get(f"/fhir/Patient/{patient}/$everything")).json()
    assert len(by_mode(bundle, "match")) == 3
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert outcome["resource"]["issue"][0]["code"] == "too-costly"


async def test_chain_matching_too_many_targets_is_refused(
    stack: Stack, record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "CHAIN_LIMIT", 1)
    async with stack.client() as http:
        response = await http.get("/fhir/CarePlan", params={"subject:Patient.identifier": f"{SYSTEM}|"})
    assert "narrow it" in assert_outcome(response, 400, "too-costly")


async def test_chain_resolving_to_many_targets_is_sent_on_as_post_search(stack: Stack) -> None:
    system = f"urn:carebridge:test:{uuid.uuid4().hex}"
    entries = [
        {
            "resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": str(i)}]},
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(160)
    ]
    async with stack.client() as http:
        created = await http.post(
            "/fhir",
            content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}),
            headers=FHIR_JSON,
        )
        last = created.json()["entry"][-1]["resource"]["id"]
        plan = await create(
            http,
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": f"Patient/{last}"},
            },
        )
        found = (await http.get("/fhir/CarePlan", params={"subject:Patient.identifier": f"{system}|"})).json()
    assert by_mode(found, "match") == {f"CarePlan/{plan['id']}"}
