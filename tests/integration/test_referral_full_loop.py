"""Issue 7's whole loop through the gateway with real HTTP on every side: a case manager refers a
client to a clinic's housing service; the clinic's rest-hook endpoint (a real HTTP server) gets
the handshake and an id-only notification; the clinic, with its own token, accepts, starts and
completes the Task; the client's care plan shows the referral completed; the metrics count it.
Synthetic people, clinic and service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.devstack import free_port
from tests.integration.stack import InProcessServer, Stack, eventually
from tests.integration.test_referral_closed_loop import (
    DELIVERED,
    HOUSING,
    clinic_headers,
    created,
    put,
    task_of,
)
from tests.integration.test_referral_subscriptions import ClinicEndpoint, subscription
from tests.synthetic import letters_tag


@pytest.fixture
async def endpoint() -> AsyncIterator[ClinicEndpoint]:
    clinic = ClinicEndpoint()
    clinic.server = InProcessServer(clinic.app(), free_port())
    await clinic.server.start()
    yield clinic
    await clinic.server.stop()


def referral_activity(plan: dict[str, Any], request_id: str) -> dict[str, Any] | None:
    for activity in plan.get("activity") or []:
        refs = [e.get("valueReference", {}).get("reference") for e in activity.get("extension", [])]
        if f"ServiceRequest/{request_id}" in refs:
            return activity
    return None


async def test_a_housing_referral_closes_the_loop_and_everyone_sees_it(
    stack: Stack, endpoint: ClinicEndpoint
) -> None:
    tag = letters_tag()
    async with stack.client() as http:
        clinic = await created(http, {"resourceType": "Organization", "name": f"Harbor Housing {tag}"})
        service = await created(http, {
            "resourceType": "HealthcareService", "active": True, "name": f"Housing navigation {tag}",
            "providedBy": {"reference": f"Organization/{clinic['id']}"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-category",
                                      "code": "18", "display": "Housing/Homelessness"}]}],
        })  # fmt: skip
        sub = await created(
            http, subscription(endpoint.url("harbor"), f"Task?owner=Organization/{clinic['id']}")
        )
        await eventually(lambda: _received(endpoint, "harbor"))
        assert endpoint.at("harbor")[0].kind == "handshake"

        name = [{"family": f"Loop{tag}", "given": ["Rae"]}]
        patient = await created(http, {"resourceType": "Patient", "name": name, "birthDate": "1979-04-04"})
        manager = await created(http, {"resourceType": "Practitioner", "name": [{"family": f"Manager{tag}"}]})
        request = await created(http, {
            "resourceType": "ServiceRequest", "status": "active", "intent": "order",
            "category": [{"coding": [HOUSING]}], "code": {"text": "Housing navigation"},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "requester": {"reference": f"Practitioner/{manager['id']}"},
            "performer": [{"reference": f"HealthcareService/{service['id']}"}],
            "authoredOn": datetime.now(UTC).isoformat(timespec="seconds"),
        })  # fmt: skip
        task = await task_of(http, request["id"])
        assert task["owner"] == {"reference": f"Organization/{clinic['id']}"}

        await eventually(lambda: _notified(endpoint, "harbor"))
        [note] = endpoint.notifications("harbor")
        assert [focus.rsplit("/", 2)[-2:] for _, focus in note.events] == [["Task", task["id"]]]
        assert "resource" not in note.bundle["entry"][1]  # id-only

        clinic_token = clinic_headers(stack, clinic["id"])
        for status, extra in (("accepted", {}), ("in-progress", {}), ("completed", {"output": DELIVERED})):
            answer = await put(http, task, clinic_token, status=status, **extra)
            assert answer.status_code == 200, answer.text
            task = answer.json()

        async def plan_completed() -> dict[str, Any] | None:
            found = await http.get("/fhir/CarePlan", params={"patient": patient["id"], "status": "active"})
            plans = [e["resource"] for e in found.json().get("entry", [])]
            activity = referral_activity(plans[0], request["id"]) if plans else None
            return activity if activity and activity["detail"]["status"] == "completed" else None

        activity = await eventually(plan_completed, timeout=30)
        assert activity["detail"]["description"].startswith("Referral: Housing navigation")

        metrics = await http.get("/referral-metrics", params={"organization": clinic["id"]})
        clinic_view = await http.get("/referral-metrics", headers=clinic_token)
        status = await http.get(f"/fhir/Subscription/{sub['id']}/$status")
        await http.delete(f"/fhir/Subscription/{sub['id']}")  # the endpoint goes away with this test
    assert metrics.status_code == 200, metrics.text
    overall = metrics.json()["overall"]
    assert {k: overall[k] for k in ("sent", "accepted", "in-progress", "completed", "closedLoopRate")} == {
        "sent": 1, "accepted": 1, "in-progress": 1, "completed": 1, "closedLoopRate": 1.0
    }  # fmt: skip
    assert clinic_view.status_code == 200 and clinic_view.json()["overall"] == overall  # its own only
    assert [g["category"]["code"] for g in metrics.json()["byCategory"]] == ["housing-instability"]
    assert status.status_code == 200, status.text
    [subscription_status] = [e["resource"] for e in status.json()["entry"]]
    assert subscription_status["resourceType"] == "Parameters"


async def _received(endpoint: ClinicEndpoint, name: str) -> bool:
    return bool(endpoint.at(name))


async def _notified(endpoint: ClinicEndpoint, name: str) -> bool:
    return bool(endpoint.notifications(name))


async def test_metrics_with_a_bad_date_get_a_400_operation_outcome(stack: Stack) -> None:
    async with stack.client() as http:
        answer = await http.get("/referral-metrics", params={"since": "last tuesday"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome" and "since" in answer.text
