"""Batch and transaction Bundles at the gateway: a transaction is atomic within one service and is
refused when it spans services; a batch is split by service and answered in the request's order."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from services.gateway.client import BackendPool
from shared.auth import mint_token
from tests.integration.stack import Stack
from tests.integration.test_gateway_errors import assert_outcome

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def bundle(kind: str, *entries: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)})


def post(rtype: str, resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": {"resourceType": rtype, **resource},
        "request": {"method": "POST", "url": rtype},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def identifier(tag: str) -> list[dict[str, str]]:
    return [{"system": "urn:carebridge:test", "value": tag}]


async def test_transaction_within_one_service_is_forwarded_whole(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    body = bundle(
        "transaction",
        post("Patient", {"identifier": identifier(tag)}, patient_url),
        post("Condition", {"subject": {"reference": patient_url}, "code": {"text": "Depression"}}),
    )
    async with stack.client() as http:
        response = await http.post("/fhir", content=body, headers=FHIR_JSON)
        assert response.status_code == 200, response.text
        answer = response.json()
        patient_location = answer["entry"][0]["response"]["location"]
        conditions = (
            await http.get("/fhir/Condition", params={"subject.identifier": f"urn:carebridge:test|{tag}"})
        ).json()
    assert answer["type"] == "transaction-response"
    assert [e["response"]["status"].split()[0] for e in answer["entry"]] == ["201", "201"]
    patient_id = patient_location.split("/Patient/")[1].split("/")[0]
    assert conditions["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"


async def test_transaction_spanning_services_is_refused_and_nothing_is_written(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    body = bundle(
        "transaction",
        post("Patient", {"identifier": identifier(tag)}, patient_url),
        post("CarePlan", {"status": "active", "intent": "plan", "subject": {"reference": patient_url}}),
    )
    async with stack.client() as http:
        response = await http.post("/fhir", content=body, headers=FHIR_JSON)
        found = (await http.get("/fhir/Patient", params={"identifier": f"urn:carebridge:test|{tag}"})).json()
    text = assert_outcome(response, 400, "invalid")
    assert (
        "atomic within one service" in text and "intake (Patient)" in text and "careplan (CarePlan)" in text
    )
    assert found.get("entry") is None


async def test_transaction_with_an_entry_the_token_may_not_perform_is_refused_whole(stack: Stack) -> None:
    token = mint_token(stack.settings.jwt_hs256_secret, "user/Patient.crus")
    body = bundle("transaction", post("Patient", {}), {"request": {"method": "DELETE", "url": "Patient/x"}})
    async with stack.client() as http:
        response = await http.post(
            "/fhir", content=body, headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
        )
    assert "Entry 1" in assert_outcome(response, 403, "forbidden")


async def test_batch_is_split_by_service_and_answered_in_the_request_order(stack: Stack) -> None:
    tag = uuid.uuid4().hex
    async with stack.client() as http:
        patient = (
            await http.post(
                "/fhir/Patient",
                content=orjson.dumps({"resourceType": "Patient", "identifier": identifier(tag)}),
                headers=FHIR_JSON,
            )
        ).json()
        subject = {"reference": f"Patient/{patient['id']}"}
        body = bundle(
            "batch",
            post("CarePlan", {"status": "active", "intent": "plan", "subject": subject}),
            get(f"Patient/{patient['id']}"),
            post("ServiceRequest", {"status": "draft", "intent": "order", "subject": subject}),
            get("Goal/does-not-exist"),
            post("Observation", {"status": "final", "code": {"text": "PHQ-9"}, "subject": subject}),
            get(f"CarePlan?subject=Patient/{patient['id']}"),
        )
        response = await http.post("/fhir", content=body, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in answer["entry"]]
    assert statuses == ["201", "200", "201", "404", "201", "200"]
    assert answer["entry"][1]["resource"]["id"] == patient["id"]
    assert answer["entry"][0]["resource"]["resourceType"] == "CarePlan"
    assert answer["entry"][2]["resource"]["resourceType"] == "ServiceRequest"
    assert answer["entry"][4]["resource"]["resourceType"] == "Observation"
    assert answer["entry"][5]["resource"]["type"] == "searchset"


async def test_batch_entries_the_token_may_not_perform_are_refused_alone(stack: Stack) -> None:
    token = mint_token(stack.settings.jwt_hs256_secret, "user/Patient.cr")
    body = bundle(
        "batch",
        post("Patient", {}),
        post("CarePlan", {"status": "active", "intent": "plan"}),
        get("NoSuchType/1"),
    )
    async with stack.client() as http:
        response = await http.post(
            "/fhir", content=body, headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
        )
    entries = response.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in entries] == ["201", "403", "404"]
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "forbidden"


async def test_patient_scoped_batch_search_is_confined_to_the_compartment(stack: Stack) -> None:
    async with stack.client() as http:
        mine = (
            await http.post("/fhir/Patient", content=b'{"resourceType":"Patient"}', headers=FHIR_JSON)
        ).json()
        other = (
            await http.post("/fhir/Patient", content=b'{"resourceType":"Patient"}', headers=FHIR_JSON)
        ).json()
        token = mint_token(stack.settings.jwt_hs256_secret, "patient/*.rs", patient=mine["id"])
        body = bundle("batch", get(f"Patient?_id={mine['id']},{other['id']}"), get(f"Patient/{other['id']}"))
        response = await http.post(
            "/fhir", content=body, headers={**FHIR_JSON, "Authorization": f"Bearer {token}"}
        )
    search, read = response.json()["entry"]
    assert [e["resource"]["id"] for e in search["resource"]["entry"]] == [mine["id"]]
    assert read["response"]["status"].startswith("403")


async def test_a_bundle_that_is_neither_batch_nor_transaction_gets_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/fhir", content=bundle("collection"), headers=FHIR_JSON)
        not_json = await http.post("/fhir", content=b"{nope", headers=FHIR_JSON)
    assert "batch or transaction" in assert_outcome(response, 400, "invalid")
    assert_outcome(not_json, 400, "invalid")


async def test_batch_entry_for_a_service_that_is_down_gets_503_and_the_rest_still_run(stack: Stack) -> None:
    pools = stack.gateway.app.state.gateway.clients.pools
    referral = pools["referral"]
    pools["referral"] = BackendPool("referral", "http://127.0.0.1:1")  # nothing listens there
    try:
        body = bundle("batch", post("Patient", {}), post("Task", {"status": "requested", "intent": "order"}))
        async with stack.client() as http:
            response = await http.post("/fhir", content=body, headers=FHIR_JSON)
    finally:
        pools["referral"] = referral
    entries = response.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in entries] == ["201", "503"]
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "transient"
