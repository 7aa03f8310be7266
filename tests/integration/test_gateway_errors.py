"""Bad input at the door: every failure is an OperationOutcome with the right status, and the
system keeps serving afterwards."""

from __future__ import annotations

import orjson
import pytest

from shared.auth import mint_token
from tests.integration.stack import Stack

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def assert_outcome(response, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    return str(body["issue"][0].get("diagnostics", ""))


async def test_malformed_json_body_gets_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/fhir/Patient", content=b'{"resourceType": "Patient",', headers=FHIR_JSON)
    assert "not valid JSON" in assert_outcome(response, 400, "invalid")


async def test_json_that_is_not_an_object_gets_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post("/fhir/Patient", content=b"[1, 2]", headers=FHIR_JSON)
    assert_outcome(response, 400, "invalid")


async def test_wrong_content_type_gets_415(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post(
            "/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"}
        )
    assert_outcome(response, 415, "not-supported")


async def test_oversized_body_gets_413_before_it_is_read(stack: Stack) -> None:
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"x" * 2_000_000 + b'"}}'
    async with stack.client() as http:
        response = await http.post("/fhir/Patient", content=big, headers=FHIR_JSON)
    assert_outcome(response, 413, "too-costly")


async def test_invalid_resource_gets_400_naming_each_problem(stack: Stack) -> None:
    patient = {"resourceType": "Patient", "gender": "femal", "active": "yes"}
    async with stack.client() as http:
        response = await http.post("/fhir/Patient", content=orjson.dumps(patient), headers=FHIR_JSON)
    text = assert_outcome(response, 400, "invalid")
    assert "Patient.gender" in text and "Patient.active" in text


async def test_missing_token_gets_401(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Patient/x", headers={"Authorization": ""})
    assert_outcome(response, 401, "login")


async def test_token_signed_with_another_secret_gets_401(stack: Stack) -> None:
    forged = mint_token("not-the-secret-but-just-as-long-as-one-32b", "system/*.cruds")
    async with stack.client() as http:
        response = await http.get("/fhir/Patient/x", headers={"Authorization": f"Bearer {forged}"})
    assert_outcome(response, 401, "login")


async def test_scope_that_does_not_cover_the_interaction_gets_403(stack: Stack) -> None:
    read_only = mint_token(stack.settings.jwt_hs256_secret, "user/CarePlan.rs")
    async with stack.client() as http:
        response = await http.post(
            "/fhir/Patient", content=b"{}", headers={**FHIR_JSON, "Authorization": f"Bearer {read_only}"}
        )
    assert_outcome(response, 403, "forbidden")


@pytest.mark.parametrize("path", ["/fhir/Patient/does-not-exist", "/fhir/NoSuchType/1"])
async def test_unknown_resource_or_type_gets_404(stack: Stack, path: str) -> None:
    async with stack.client() as http:
        response = await http.get(path)
    assert_outcome(response, 404, "not-found")


async def test_unacceptable_accept_header_gets_406(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Patient/x", headers={"Accept": "application/fhir+xml"})
    assert_outcome(response, 406, "not-supported")


async def test_unsupported_search_parameter_gets_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Patient", params={"favourite-colour": "blue"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] in ("invalid", "not-supported")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/fhir", 404, "not-found"),
        ("GET", "/fhir/Patient/x/y/z/w", 404, "not-found"),
        ("POST", "/fhir/metadata", 405, "not-supported"),
        ("POST", "/fhir/Patient/x", 405, "not-supported"),
        ("DELETE", "/fhir/Patient/x/_history/1", 405, "not-supported"),
    ],
)
async def test_requests_that_are_no_fhir_interaction_get_an_outcome(
    stack: Stack, method: str, path: str, status: int, code: str
) -> None:
    async with stack.client() as http:
        response = await http.request(method, path)
    assert_outcome(response, status, code)


async def test_audit_events_are_served_by_the_gateway_itself(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/AuditEvent", params={"_count": "1"})
        patient_token = mint_token(stack.settings.jwt_hs256_secret, "patient/*.rs", patient="p1")
        refused = await http.get("/fhir/AuditEvent", headers={"Authorization": f"Bearer {patient_token}"})
    assert response.status_code == 200 and response.json()["type"] == "searchset"
    assert_outcome(refused, 403, "forbidden")


async def test_service_keeps_serving_after_bad_input(stack: Stack) -> None:
    async with stack.client() as http:
        await http.post("/fhir/Patient", content=b"\xff\xfe garbage", headers=FHIR_JSON)
        response = await http.post(
            "/fhir/Patient", content=orjson.dumps({"resourceType": "Patient"}), headers=FHIR_JSON
        )
    assert response.status_code == 201


_BATCH_OF_ODD_ENTRIES = orjson.dumps(
    {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            1,
            {"request": 5},
            {"request": {"method": 5, "url": "Patient"}},
            {"request": {"method": "GET", "url": "http://elsewhere.example/Patient"}},
            {"request": {"method": "TRACE", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/x/$everything"}},
        ],
    }
)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/fhir/CarePlan?subject.=x", None),
        ("GET", "/fhir/CarePlan?subject:Nope.name=1", None),
        ("GET", "/fhir/CarePlan?_include=CarePlan:subject:Patient:x", None),
        ("GET", "/fhir/Patient?_revinclude=CarePlan:subject:Goal", None),
        ("GET", "/fhir/Patient/%20x/$everything", None),
        ("GET", "/fhir/Patient/%ff", None),
        ("GET", "/fhir/Patient?name=%ff%fe", None),
        ("POST", "/fhir", b"[]"),
        ("POST", "/fhir", b'{"resourceType":"Bundle","type":"batch","entry":"x"}'),
        ("POST", "/fhir", _BATCH_OF_ODD_ENTRIES),
        ("GET", "/fhir/Observation?subject:Patient.identifier=" + "x," * 2000, None),
    ],
)
async def test_odd_requests_get_an_answer_not_a_crash(
    stack: Stack, method: str, path: str, body: bytes | None
) -> None:
    async with stack.client() as http:
        response = await http.request(method, path, content=body, headers=FHIR_JSON)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"
