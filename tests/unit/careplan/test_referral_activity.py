"""A referral on the plan follows its Task (services/careplan/domain/referral_activity.py)."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.careplan import CarePlan

from services.careplan.domain.plans import new_case_management_plan
from services.careplan.domain.referral_activity import follow_task, referral_activity

SERVICE_REQUEST = {
    "resourceType": "ServiceRequest", "id": "sr1", "status": "active", "intent": "order",
    "code": {"text": "Housing navigation"}, "subject": {"reference": "Patient/p"},
    "authoredOn": "2026-11-02T09:00:00+00:00", "priority": "urgent",
    "performer": [{"reference": "Organization/o", "display": "Harbor Housing"}],
}  # fmt: skip


def plan_with_referral() -> dict[str, Any]:
    activity = referral_activity(SERVICE_REQUEST)
    assert activity is not None
    return {**new_case_management_plan("Patient/p", "2026-11-02"), "activity": [activity]}


def task(status: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": status, "focus": {"reference": "ServiceRequest/sr1"}, **extra}


def test_a_referral_becomes_a_valid_activity_due_in_30_days_with_the_requests_priority() -> None:
    plan = plan_with_referral()
    CarePlan.model_validate(plan)
    (activity,) = plan["activity"]
    assert activity["detail"]["description"] == "Referral: Housing navigation (Harbor Housing)"
    assert activity["detail"]["scheduledPeriod"]["end"] == "2026-12-02T09:00:00+00:00"
    assert {
        "url": "http://carebridge.example/fhir/StructureDefinition/activity-priority",
        "valueCode": "urgent",
    } in (activity["extension"])


@pytest.mark.parametrize(
    ("task_status", "activity_status"),
    [("requested", None), ("received", None), ("accepted", "scheduled"), ("in-progress", "in-progress"),
     ("on-hold", "on-hold")],
)  # fmt: skip
def test_the_activity_mirrors_the_task(task_status: str, activity_status: str | None) -> None:
    followed = follow_task(plan_with_referral(), task(task_status))
    if activity_status is None:
        assert followed is None  # not-started already: nothing to write
    else:
        assert followed is not None and followed["activity"][0]["detail"]["status"] == activity_status


def test_completion_carries_the_output_and_a_rejection_its_reason() -> None:
    done = follow_task(
        plan_with_referral(), task("completed", output=[{"type": {"text": "resulting-activity"},
                                                         "valueReference": {"reference": "Procedure/x"}}])
    )  # fmt: skip
    assert done is not None
    assert done["activity"][0]["detail"]["status"] == "completed"
    assert done["activity"][0]["outcomeReference"] == [{"reference": "Procedure/x"}]
    refused = follow_task(plan_with_referral(), task("rejected", statusReason={"text": "No capacity"}))
    assert refused is not None and refused["activity"][0]["detail"]["statusReason"] == {"text": "No capacity"}
    CarePlan.model_validate(done)
    CarePlan.model_validate(refused)


def test_a_task_for_another_request_changes_nothing() -> None:
    other = {**task("accepted"), "focus": {"reference": "ServiceRequest/other"}}
    assert follow_task(plan_with_referral(), other) is None
