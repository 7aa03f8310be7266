"""batch and transaction Bundles through the gateway (R4 http.html#transaction): a transaction
is all or nothing within its service, resolves urn:uuid references to the ids it assigns, and
runs in R4 order; a batch answers every entry on its own."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson

from tests.integration.stack import Stack

FHIR = {"Content-Type": "application/fhir+json"}
PATCH_TYPE = "application/json-patch+json"


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)})


def new_patient(mrn: str, full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test:tx", "value": mrn}]},
        "request": {"method": "POST", "url": "Patient", **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def observation_of(subject: str) -> dict[str, Any]:
    return {
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "PHQ-9 total"},
            "subject": {"reference": subject},
        },
        "request": {"method": "POST", "url": "Observation"},
    }


async def test_a_transaction_resolves_urn_uuid_references_to_the_ids_it_assigns(stack: Stack) -> None:
    mrn = uuid.uuid4().hex[:10]
    body = transaction(observation_of("urn:uuid:pat-1"), new_patient(mrn, "urn:uuid:pat-1"))
    async with stack.client() as http:
        response = await http.post("/fhir", content=body, headers=FHIR)
        assert response.status_code == 200, response.text
        bundle = response.json()
        obs_entry, patient_entry = bundle["entry"]
        patient_id = patient_entry["resource"]["id"]
        observation = (
            await http.get("/fhir" + obs_entry["response"]["location"].split("/fhir", 1)[1])
        ).json()
    assert bundle["type"] == "transaction-response"
    assert patient_entry["response"]["status"] == "201 Created"
    assert patient_entry["response"]["etag"] == 'W/"1"'
    assert patient_entry["response"]["location"].endswith(f"/Patient/{patient_id}/_history/1")
    assert observation["subject"] == {"reference": f"Patient/{patient_id}"}


async def test_a_failing_entry_rolls_back_the_whole_transaction_and_is_the_answer(stack: Stack) -> None:
    mrn = uuid.uuid4().hex[:10]
    bad = {
        "resource": {"resourceType": "Patient", "gender": "femal"},
        "request": {"method": "POST", "url": "Patient"},
    }
    body = transaction(new_patient(mrn), bad)
    pending_before = await stack.intake.runtime.store.outbox_pending_count()
    async with stack.client() as http:
        response = await http.post("/fhir", content=body, headers=FHIR)
        search = (await http.get("/fhir/Patient", params={"identifier": f"urn:test:tx|{mrn}"})).json()
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["code"] == "invalid" and "entry 1" in issue["diagnostics"]
    assert issue["expression"][0] == "Bundle.entry[1]"
    assert "entry" not in search  # the valid first entry was not kept either
    assert await stack.intake.runtime.store.outbox_pending_count() <= pending_before  # and no event left


async def test_a_transaction_runs_deletes_before_creates_before_updates_before_reads(stack: Stack) -> None:
    mrn = uuid.uuid4().hex[:10]
    async with stack.client() as http:
        doomed = (
            await http.post("/fhir/Patient", content=orjson.dumps(new_patient(mrn)["resource"]), headers=FHIR)
        ).json()
        updated_id = f"tx-{uuid.uuid4().hex[:8]}"
        body = transaction(
            {"request": {"method": "GET", "url": f"Patient?identifier=urn:test:tx|{mrn}"}},
            {"resource": {**new_patient(mrn)["resource"], "id": updated_id},
             "request": {"method": "PUT", "url": f"Patient/{updated_id}"}},
            new_patient(mrn),
            {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
        )  # fmt: skip
        response = await http.post("/fhir", content=body, headers=FHIR)
    assert response.status_code == 200, response.text
    search, put, post, delete = response.json()["entry"]
    assert delete["response"]["status"] == "200 OK"
    assert put["response"]["status"] == "201 Created" and post["response"]["status"] == "201 Created"
    # The search ran last: it sees the two new patients and not the deleted one.
    found = {e["resource"]["id"] for e in search["resource"].get("entry", [])}
    assert found == {put["resource"]["id"], post["resource"]["id"]}


async def test_a_conditional_create_in_a_transaction_points_references_at_the_existing_match(
    stack: Stack,
) -> None:
    mrn = uuid.uuid4().hex[:10]
    async with stack.client() as http:
        existing = (
            await http.post("/fhir/Patient", content=orjson.dumps(new_patient(mrn)["resource"]), headers=FHIR)
        ).json()
        body = transaction(
            new_patient(mrn, "urn:uuid:p", ifNoneExist=f"identifier=urn:test:tx|{mrn}"),
            observation_of("urn:uuid:p"),
        )
        response = await http.post("/fhir", content=body, headers=FHIR)
    patient_entry, obs_entry = response.json()["entry"]
    assert patient_entry["response"]["status"] == "200 OK"
    assert patient_entry["resource"]["id"] == existing["id"]
    assert obs_entry["resource"]["subject"] == {"reference": f"Patient/{existing['id']}"}


async def test_a_batch_answers_each_entry_on_its_own(stack: Stack) -> None:
    mrn = uuid.uuid4().hex[:10]
    body = transaction(
        new_patient(mrn),
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {
            "resource": {"resourceType": "Patient", "active": "yes"},
            "request": {"method": "POST", "url": "Patient"},
        },
        kind="batch",
    )
    async with stack.client() as http:
        response = await http.post("/fhir", content=body, headers=FHIR)
        search = (await http.get("/fhir/Patient", params={"identifier": f"urn:test:tx|{mrn}"})).json()
    assert response.status_code == 200, response.text
    created, missing, invalid = response.json()["entry"]
    assert response.json()["type"] == "batch-response"
    assert created["response"]["status"].startswith("201")
    assert missing["response"]["status"].startswith("404")
    assert missing["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert invalid["response"]["status"].startswith("400")
    assert len(search["entry"]) == 1  # the good entry was kept


async def test_a_malformed_batch_entry_is_answered_on_its_own_by_the_service(stack: Stack) -> None:
    body = transaction(
        {"resource": {"resourceType": "Patient"}}, new_patient(uuid.uuid4().hex[:10]), kind="batch"
    )
    async with httpx.AsyncClient(base_url=stack.intake.url) as direct:
        response = await direct.post("/fhir", content=body, headers=FHIR)
    malformed, created = response.json()["entry"]
    assert malformed["response"]["status"] == "400 Bad Request"
    assert "request is required" in malformed["response"]["outcome"]["issue"][0]["diagnostics"]
    assert created["response"]["status"] == "201 Created"


async def test_a_bundle_that_is_neither_batch_nor_transaction_is_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/fhir", content=transaction(kind="collection"), headers=FHIR)
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"


async def test_a_transaction_patches_through_a_binary_and_resolves_conditional_references(
    stack: Stack,
) -> None:
    mrn = uuid.uuid4().hex[:10]
    patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/active", "value": True}])).decode()
    async with stack.client() as http:
        pid = (
            await http.post("/fhir/Patient", content=orjson.dumps(new_patient(mrn)["resource"]), headers=FHIR)
        ).json()["id"]
        body = transaction(
            {"resource": {"resourceType": "Binary", "contentType": PATCH_TYPE, "data": patch},
             "request": {"method": "PATCH", "url": f"Patient/{pid}"}},
            observation_of(f"Patient?identifier=urn:test:tx|{mrn}"),
        )  # fmt: skip
        response = await http.post("/fhir", content=body, headers=FHIR)
    assert response.status_code == 200, response.text
    patched, observation = response.json()["entry"]
    assert patched["resource"]["active"] is True and patched["response"]["etag"] == 'W/"2"'
    assert observation["resource"]["subject"] == {"reference": f"Patient/{pid}"}


async def test_a_conditional_reference_that_matches_nothing_fails_the_transaction_with_404(
    stack: Stack,
) -> None:
    body = transaction(observation_of(f"Patient?identifier=urn:test:tx|{uuid.uuid4().hex}"))
    async with stack.client() as http:
        response = await http.post("/fhir", content=body, headers=FHIR)
    assert response.status_code == 404
    assert "matches no resource" in response.json()["issue"][0]["diagnostics"]
