"""Auth at the door: bearer tokens, SMART v2 scopes per interaction, the patient compartment of
patient/ scopes, and the clinic rule for tokens carrying an organization. Every refusal is an
OperationOutcome with its status."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from shared.auth import mint_token
from tests.integration.stack import Stack
from tests.integration.test_gateway_errors import assert_outcome

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def bearer(stack: Stack, scope: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(stack.settings.jwt_hs256_secret, scope, **claims)}"}


async def create(http: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def care_plan(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def ids(bundle: dict[str, Any], rtype: str | None = None) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if rtype is None or e["resource"]["resourceType"] == rtype
    }


@pytest.fixture(scope="module")
async def two_patients(stack: Stack) -> dict[str, Any]:
    """Patients A and B, a CarePlan and an Observation each, and a Practitioner."""
    tag = uuid.uuid4().hex[:8]
    async with stack.client() as http:
        a = await create(http, {"resourceType": "Patient", "name": [{"family": f"Alpha{tag}"}]})
        b = await create(http, {"resourceType": "Patient", "name": [{"family": f"Beta{tag}"}]})
        plans = {p["id"]: await create(http, care_plan(p["id"])) for p in (a, b)}
        observations = {
            p["id"]: await create(
                http,
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "PHQ-9 total"},
                    "subject": {"reference": f"Patient/{p['id']}"},
                },
            )
            for p in (a, b)
        }
        practitioner = await create(http, {"resourceType": "Practitioner", "name": [{"family": f"Doc{tag}"}]})
    return {"a": a, "b": b, "plans": plans, "observations": observations, "practitioner": practitioner}


# --- tokens ------------------------------------------------------------------------------------


async def test_metadata_is_served_without_a_token(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url) as http:
        response = await http.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Patient"),
        ("GET", "/fhir/CarePlan/x"),
        ("GET", "/fhir/Patient/x/_history"),
        ("GET", "/fhir/Patient/x/$everything"),
        ("POST", "/fhir"),
        ("DELETE", "/fhir/Task/x"),
    ],
)
async def test_every_other_fhir_call_without_a_token_gets_401(stack: Stack, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway.url) as http:
        response = await http.request(method, path)
    assert "bearer token is required" in assert_outcome(response, 401, "login")


async def test_expired_token_gets_401(stack: Stack) -> None:
    expired = mint_token(stack.settings.jwt_hs256_secret, "system/*.cruds", ttl_seconds=-5)
    async with stack.client() as http:
        response = await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {expired}"})
    assert "expired" in assert_outcome(response, 401, "login")


# --- scopes per interaction --------------------------------------------------------------------


async def test_each_interaction_needs_its_own_permission(stack: Stack, two_patients: dict[str, Any]) -> None:
    plan = two_patients["plans"][two_patients["a"]["id"]]
    path = f"/fhir/CarePlan/{plan['id']}"
    async with stack.client() as http:
        read_only = bearer(stack, "user/CarePlan.r")
        assert (await http.get(path, headers=read_only)).status_code == 200
        assert (await http.get(f"{path}/_history", headers=read_only)).status_code == 200
        assert_outcome(await http.get("/fhir/CarePlan", headers=read_only), 403, "forbidden")
        search_only = bearer(stack, "user/CarePlan.s")
        assert (await http.get("/fhir/CarePlan", headers=search_only)).status_code == 200
        assert_outcome(await http.get(path, headers=search_only), 403, "forbidden")
        body = orjson.dumps(care_plan(two_patients["a"]["id"]))
        no_create = {**FHIR_JSON, **bearer(stack, "user/CarePlan.rus")}
        assert_outcome(await http.post("/fhir/CarePlan", content=body, headers=no_create), 403, "forbidden")
        assert_outcome(await http.delete(path, headers=no_create), 403, "forbidden")
        no_update = {**FHIR_JSON, **bearer(stack, "user/CarePlan.crds")}
        update = orjson.dumps({**plan, "status": "completed"})
        assert_outcome(await http.put(path, content=update, headers=no_update), 403, "forbidden")


async def test_a_scope_for_one_type_does_not_reach_another(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Goal", headers=bearer(stack, "user/CarePlan.rs"))
    assert "search on Goal" in assert_outcome(response, 403, "forbidden")


# --- patient/ scopes ---------------------------------------------------------------------------


async def test_patient_scope_search_returns_only_the_patients_compartment(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    a, b = two_patients["a"]["id"], two_patients["b"]["id"]
    headers = bearer(stack, "patient/*.rs", patient=a)
    async with stack.client() as http:
        plans = (await http.get("/fhir/CarePlan", headers=headers)).json()
        asking_for_b = (
            await http.get("/fhir/CarePlan", params={"subject": f"Patient/{b}"}, headers=headers)
        ).json()
        patients = (await http.get("/fhir/Patient", headers=headers)).json()
    assert ids(plans) == {two_patients["plans"][a]["id"]}
    assert ids(asking_for_b) == set()
    assert ids(patients) == {a}


async def test_patient_scope_search_with_elements_keeps_the_compartments_matches(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    a = two_patients["a"]["id"]
    headers = bearer(stack, "patient/*.rs", patient=a)
    async with stack.client() as http:
        found = (await http.get("/fhir/Observation", params={"_elements": "status"}, headers=headers)).json()
    assert ids(found) == {two_patients["observations"][a]["id"]}


async def test_patient_scope_read_outside_the_compartment_gets_403(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    a, b = two_patients["a"]["id"], two_patients["b"]["id"]
    headers = bearer(stack, "patient/*.rs", patient=a)
    async with stack.client() as http:
        own = await http.get(f"/fhir/CarePlan/{two_patients['plans'][a]['id']}", headers=headers)
        other = await http.get(f"/fhir/CarePlan/{two_patients['plans'][b]['id']}", headers=headers)
        other_patient = await http.get(f"/fhir/Patient/{b}", headers=headers)
    assert own.status_code == 200
    assert "outside the patient compartment" in assert_outcome(other, 403, "forbidden")
    assert_outcome(other_patient, 403, "forbidden")


async def test_patient_scope_conditional_read_outside_the_compartment_gets_403_not_304(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    b_plan = two_patients["plans"][two_patients["b"]["id"]]
    headers = {**bearer(stack, "patient/*.rs", patient=two_patients["a"]["id"]), "If-None-Match": 'W/"1"'}
    async with stack.client() as http:
        response = await http.get(f"/fhir/CarePlan/{b_plan['id']}", headers=headers)
    assert_outcome(response, 403, "forbidden")


async def test_patient_scope_cannot_reach_types_without_a_patient_link(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    a = two_patients["a"]["id"]
    async with stack.client() as http:
        alone = await http.get("/fhir/Practitioner", headers=bearer(stack, "patient/*.rs", patient=a))
        with_user_scope = await http.get(
            "/fhir/Practitioner", headers=bearer(stack, "patient/*.rs user/Practitioner.rs", patient=a)
        )
    assert "not in a patient compartment" in assert_outcome(alone, 403, "forbidden")
    assert with_user_scope.status_code == 200


async def test_patient_scope_without_a_patient_claim_gets_403(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/CarePlan", headers=bearer(stack, "patient/*.rs"))
    assert "patient claim" in assert_outcome(response, 403, "forbidden")


async def test_patient_scope_includes_and_everything_stay_in_the_compartment(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    a, b = two_patients["a"]["id"], two_patients["b"]["id"]
    headers = bearer(stack, "patient/*.rs", patient=a)
    async with stack.client() as http:
        revinclude = (
            await http.get("/fhir/Patient", params={"_revinclude": "CarePlan:subject"}, headers=headers)
        ).json()
        everything = (await http.get(f"/fhir/Patient/{a}/$everything", headers=headers)).json()
        someone_else = await http.get(f"/fhir/Patient/{b}/$everything", headers=headers)
    assert ids(revinclude) == {a, two_patients["plans"][a]["id"]}
    assert ids(everything) == {a, two_patients["plans"][a]["id"], two_patients["observations"][a]["id"]}
    assert_outcome(someone_else, 403, "forbidden")


async def test_patient_scope_writes_stay_in_the_compartment(
    stack: Stack, two_patients: dict[str, Any]
) -> None:
    a, b = two_patients["a"]["id"], two_patients["b"]["id"]
    headers = {**FHIR_JSON, **bearer(stack, "patient/*.cruds", patient=a)}
    b_plan = two_patients["plans"][b]
    async with stack.client() as http:
        for_b = await http.post("/fhir/CarePlan", content=orjson.dumps(care_plan(b)), headers=headers)
        for_a = await http.post("/fhir/CarePlan", content=orjson.dumps(care_plan(a)), headers=headers)
        update_b = await http.put(
            f"/fhir/CarePlan/{b_plan['id']}",
            content=orjson.dumps({**b_plan, "status": "revoked"}),
            headers=headers,
        )
        delete_b = await http.delete(f"/fhir/CarePlan/{b_plan['id']}", headers=headers)
        still_there = await http.get(f"/fhir/CarePlan/{b_plan['id']}")
    assert_outcome(for_b, 403, "forbidden")
    assert for_a.status_code == 201
    assert_outcome(update_b, 403, "forbidden")
    assert_outcome(delete_b, 403, "forbidden")
    assert still_there.json()["status"] == "active"


# --- the clinic rule ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def referrals(stack: Stack, two_patients: dict[str, Any]) -> dict[str, Any]:
    """A ServiceRequest addressed to clinic X with its Task (referral makes it), and one to clinic Y."""
    subject = {"reference": f"Patient/{two_patients['a']['id']}"}
    async with stack.client() as http:
        x = await create(http, {"resourceType": "Organization", "name": "Clinic X"})
        y = await create(http, {"resourceType": "Organization", "name": "Clinic Y"})
        found: dict[str, Any] = {"x": x, "y": y}
        for org in (x, y):
            request = await create(
                http,
                {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "subject": subject,
                    "requester": {"reference": f"Practitioner/{two_patients['practitioner']['id']}"},
                    "performer": [{"reference": f"Organization/{org['id']}"}],
                },
            )
            made = await http.get("/fhir/Task", params={"focus": f"ServiceRequest/{request['id']}"})
            [task] = [e["resource"] for e in made.json()["entry"]]
            found[f"request_{org['name'][-1].lower()}"] = request
            found[f"task_{org['name'][-1].lower()}"] = task
    return found


async def test_a_clinic_token_sees_only_referrals_addressed_to_it(
    stack: Stack, referrals: dict[str, Any]
) -> None:
    headers = bearer(stack, "user/ServiceRequest.rs user/Task.rs", organization=referrals["x"]["id"])
    async with stack.client() as http:
        requests = (await http.get("/fhir/ServiceRequest", headers=headers)).json()
        tasks = (await http.get("/fhir/Task", headers=headers)).json()
        own = await http.get(f"/fhir/Task/{referrals['task_x']['id']}", headers=headers)
        other_request = await http.get(
            f"/fhir/ServiceRequest/{referrals['request_y']['id']}", headers=headers
        )
        other_task = await http.get(f"/fhir/Task/{referrals['task_y']['id']}", headers=headers)
    assert ids(requests) == {referrals["request_x"]["id"]}
    assert ids(tasks) == {referrals["task_x"]["id"]}
    assert own.status_code == 200
    assert "not addressed to the token's organization" in assert_outcome(other_request, 403, "forbidden")
    assert_outcome(other_task, 403, "forbidden")


async def test_a_clinic_token_cannot_update_a_task_addressed_elsewhere(
    stack: Stack, referrals: dict[str, Any]
) -> None:
    headers = {**FHIR_JSON, **bearer(stack, "user/Task.rus", organization=referrals["x"]["id"])}
    other = referrals["task_y"]
    async with stack.client() as http:
        response = await http.put(
            f"/fhir/Task/{other['id']}",
            content=orjson.dumps({**other, "status": "accepted"}),
            headers=headers,
        )
    assert_outcome(response, 403, "forbidden")
