"""A Patient POSTed at the gateway is routed to intake, stored, published, and kept by careplan
and referral: the bus end to end, on real HTTP, a real broker, Redis and SQLite."""

from __future__ import annotations

from typing import Any

import orjson

from services.careplan.handlers import PATIENTS
from tests.integration.stack import Stack, eventually
from tests.synthetic import letters_tag, synthetic_ssn_identifier

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5.99"


def walker() -> dict[str, Any]:
    """A person of this test alone (a new MRN and name), so identity matching creates them."""
    tag = letters_tag()
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": f"MRN-WALK-{tag}"}, synthetic_ssn_identifier()],
        "name": [{"family": f"Testwalker{tag}", "given": ["Sam"]}],
        "gender": "other",
        "birthDate": "1990-04-05",
    }


async def test_gateway_is_ready_only_with_every_service_ready_and_reports_each(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert set(body["services"]) == {"intake", "careplan", "referral"}
    assert all(s["ready"] for s in body["services"].values())
    assert body["checks"] == {"database": "ok", "redis": "ok", "broker": "ok"}


async def test_patient_posted_at_the_gateway_is_readable_and_reaches_careplan_and_referral(
    stack: Stack, span_exporter: Any
) -> None:
    walking = walker()
    async with stack.client() as http:
        created = await http.post(
            "/fhir/Patient", content=orjson.dumps(walking), headers={"Content-Type": "application/fhir+json"}
        )
        assert created.status_code == 201, created.text
        patient = created.json()
        pid = patient["id"]
        assert created.headers["location"] == f"{stack.fhir}/Patient/{pid}/_history/1"
        assert created.headers["etag"] == 'W/"1"'

        read = await http.get(f"/fhir/Patient/{pid}")
        assert read.status_code == 200
        assert read.json() == patient
        assert read.json()["meta"]["versionId"] == "1"

        found = await http.get(
            "/fhir/Patient", params={"identifier": f"{MRN_SYSTEM}|{walking['identifier'][0]['value']}"}
        )
        bundle = found.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        assert [e["resource"]["id"] for e in bundle["entry"]] == [pid]
        assert bundle["entry"][0]["fullUrl"] == f"{stack.fhir}/Patient/{pid}"

    for service in (stack.careplan, stack.referral):
        store = service.runtime.store
        kept = await eventually(lambda store=store: store.get_projection(PATIENTS, pid))
        assert kept.version == 1 and kept.change_count == 1
        assert orjson.loads(kept.data)["name"] == walking["name"]
    # careplan keeps what a caseload needs; referral also keeps contact details.
    careplan_copy = orjson.loads((await stack.careplan.runtime.store.get_projection(PATIENTS, pid)).data)
    assert "telecom" not in careplan_copy


async def test_one_trace_links_the_http_request_to_the_consumer_spans(
    stack: Stack, span_exporter: Any
) -> None:
    span_exporter.clear()
    async with stack.client() as http:
        created = await http.post(
            "/fhir/Patient", content=orjson.dumps(walker()), headers={"Content-Type": "application/fhir+json"}
        )
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    for service in (stack.careplan, stack.referral):
        await eventually(lambda s=service: s.runtime.store.get_projection(PATIENTS, pid))

    spans = span_exporter.get_finished_spans()
    gateway_request = next(
        s for s in spans if s.attributes.get("carebridge.service") == "gateway" and s.name.startswith("POST")
    )
    trace_id = gateway_request.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    services = {s.attributes.get("carebridge.service") for s in in_trace}
    assert {"gateway", "intake", "careplan", "referral"} <= services
    consumer_spans = [s for s in in_trace if s.name.startswith("consume")]
    assert {s.attributes.get("carebridge.service") for s in consumer_spans} >= {"careplan", "referral"}
