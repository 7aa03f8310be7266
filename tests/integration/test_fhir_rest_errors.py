"""Every failure of the REST interactions is an OperationOutcome with the right status, as a
client sees it through the gateway (R4 http.html, "Errors"); the service's own
CapabilityStatement lists what works."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.stack import Stack

FHIR = {"Content-Type": "application/fhir+json"}


def assert_outcome(response: httpx.Response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    if code is not None:
        assert body["issue"][0]["code"] == code
    return str(body["issue"][0].get("diagnostics", ""))


async def new_patient(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post(
        "/fhir/Patient", content=orjson.dumps({"resourceType": "Patient"}), headers=FHIR
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


async def test_an_update_whose_body_id_differs_from_the_url_is_400(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        response = await http.put(
            f"/fhir/Patient/{created['id']}",
            content=orjson.dumps({**created, "id": "someone-else"}),
            headers=FHIR,
        )
    assert "not the id in the URL" in assert_outcome(response, 400, "invalid")


async def test_an_update_without_an_id_in_the_body_is_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.put(
            "/fhir/Patient/x1", content=orjson.dumps({"resourceType": "Patient"}), headers=FHIR
        )
    assert "needs the resource id" in assert_outcome(response, 400, "invalid")


async def test_a_resource_of_another_type_than_the_url_is_400(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.post(
            "/fhir/Patient", content=orjson.dumps({"resourceType": "Observation"}), headers=FHIR
        )
    assert "does not match" in assert_outcome(response, 400, "invalid")


@pytest.mark.parametrize(
    ("path", "params"),
    [("/fhir/Patient/_history", {"_since": "last tuesday"}), ("/fhir/Patient/_history", {"_at": "2024"})],
)
async def test_bad_history_parameters_are_400(stack: Stack, path: str, params: dict[str, str]) -> None:
    async with stack.client() as http:
        response = await http.get(path, params=params)
    assert_outcome(response, 400, "invalid")


async def test_an_if_match_that_is_not_a_version_is_400(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        response = await http.put(
            f"/fhir/Patient/{created['id']}",
            content=orjson.dumps(created),
            headers={**FHIR, "If-Match": "yesterday"},
        )
    assert "If-Match" in assert_outcome(response, 400, "invalid")


@pytest.mark.parametrize("path", ["/fhir/Patient/missing-one", "/fhir/Patient/missing-one/_history/1"])
async def test_reading_what_never_existed_is_404(stack: Stack, path: str) -> None:
    async with stack.client() as http:
        response = await http.get(path)
    assert_outcome(response, 404, "not-found")


async def test_a_version_that_does_not_exist_is_404(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        missing = await http.get(f"/fhir/Patient/{created['id']}/_history/9")
        not_a_number = await http.get(f"/fhir/Patient/{created['id']}/_history/latest")
    assert_outcome(missing, 404, "not-found")
    assert_outcome(not_a_number, 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/fhir/Patient/some-id"),  # create goes to the type
        ("DELETE", "/fhir/Patient"),  # a type-level delete needs criteria
        ("PUT", "/fhir/Patient"),  # a type-level update needs criteria
        ("PATCH", "/fhir/Patient"),
        ("PUT", "/fhir/Patient/x/_history/1"),  # versions are immutable
    ],
)
async def test_interactions_that_do_not_exist_on_an_endpoint_are_405(
    stack: Stack, method: str, path: str
) -> None:
    async with stack.client() as http:
        response = await http.request(method, path, content=b"{}", headers=FHIR)
    assert_outcome(response, 405, "not-supported")


async def test_asking_for_xml_is_406(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Patient", headers={"Accept": "application/fhir+xml"})
    assert_outcome(response, 406, "not-supported")


async def test_a_deleted_resource_reads_as_410_with_an_outcome(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        await http.delete(f"/fhir/Patient/{created['id']}")
        response = await http.get(f"/fhir/Patient/{created['id']}")
    assert "deleted" in assert_outcome(response, 410, "deleted")


async def test_a_stale_if_match_on_delete_is_412(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        response = await http.delete(f"/fhir/Patient/{created['id']}", headers={"If-Match": 'W/"3"'})
        still_there = await http.get(f"/fhir/Patient/{created['id']}")
    assert_outcome(response, 412, "conflict")
    assert still_there.status_code == 200


async def test_a_body_over_the_limit_is_413(stack: Stack) -> None:
    big = orjson.dumps({"resourceType": "Patient", "id": "big", "name": [{"text": "x" * 2_000_000}]})
    async with stack.client() as http:
        response = await http.put("/fhir/Patient/big", content=big, headers=FHIR)
    assert_outcome(response, 413, "too-costly")


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("PATCH", "/fhir/Patient/{id}", "application/fhir+json"),  # FHIRPath patch is not offered
        ("PUT", "/fhir/Patient/{id}", "text/plain"),
        ("POST", "/fhir/Patient/_search", "application/json"),
    ],
)
async def test_a_body_in_a_format_the_interaction_does_not_take_is_415(
    stack: Stack, method: str, path: str, content_type: str
) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        response = await http.request(
            method, path.format(id=created["id"]), content=b"[]", headers={"Content-Type": content_type}
        )
    assert_outcome(response, 415, "not-supported")


async def test_a_patch_that_cannot_apply_is_422(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
        response = await http.patch(
            f"/fhir/Patient/{created['id']}",
            content=orjson.dumps([{"op": "remove", "path": "/birthDate"}]),
            headers={"Content-Type": "application/json-patch+json"},
        )
    assert "/birthDate does not exist" in assert_outcome(response, 422, "processing")


async def test_conditional_criteria_with_an_unknown_parameter_are_400_never_half_applied(
    stack: Stack,
) -> None:
    async with stack.client() as http:
        response = await http.post(
            "/fhir/Patient",
            content=orjson.dumps({"resourceType": "Patient"}),
            headers={
                **FHIR,
                "If-None-Exist": f"favourite-colour={uuid.uuid4().hex}",
                "Prefer": "handling=lenient",
            },
        )
    assert_outcome(response, 400)


async def test_each_service_serves_its_own_capability_statement_at_metadata(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.careplan.url) as direct:
        response = await direct.get(
            "/fhir/metadata", headers={"x-forwarded-fhir-base": "https://public.example/fhir"}
        )
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["fhirVersion"] == "4.0.1"
    assert statement["implementation"]["url"] == "https://public.example/fhir"
    assert [r["type"] for r in statement["rest"][0]["resource"]] == [
        "CarePlan",
        "Goal",
        "CareTeam",
        "Appointment",
        "Measure",
        "MeasureReport",
    ]
    plan = statement["rest"][0]["resource"][0]
    assert {
        "name": "patient",
        "definition": "http://hl7.org/fhir/SearchParameter/CarePlan-patient",
        "type": "reference",
    } in plan["searchParam"]


async def test_system_history_of_a_service_spans_its_types(stack: Stack) -> None:
    async with stack.client() as http:
        created = await new_patient(http)
    async with httpx.AsyncClient(base_url=stack.intake.url) as direct:
        response = await direct.get("/fhir/_history", params={"_count": "5"})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "history"
    assert created["id"] in {e["fullUrl"].rsplit("/", 1)[1] for e in response.json()["entry"]}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/fhir/Patient/some-id"),
        ("DELETE", "/fhir/Patient"),
        ("PUT", "/fhir/Patient"),
        ("GET", "/fhir"),
    ],
)
async def test_the_service_itself_refuses_interactions_an_endpoint_does_not_have_with_405(
    stack: Stack, method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=stack.intake.url) as direct:
        response = await direct.request(method, path, content=b"{}", headers=FHIR)
    assert_outcome(response, 405, "not-supported")
