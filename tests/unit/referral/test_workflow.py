"""The closed-loop referral state machine (services/referral/domain/workflow.py): the Gravity SDOHCC
Task for Referral Management's statuses by role, the transitions, what a status needs, and the
profile. Synthetic references only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.referral.domain import workflow
from services.referral.domain.workflow import OWNER, REQUESTER
from shared.errors import BusinessRuleViolation, Forbidden, InvalidInput

CLINIC = "clinic-1"


def task(status: str = "requested", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": "t1",
        "status": status,
        "intent": "order",
        "code": {"coding": [dict(workflow.FULFILL)]},
        "focus": {"reference": "ServiceRequest/sr1"},
        "for": {"reference": "Patient/p1"},
        "authoredOn": "2026-11-01T09:00:00+00:00",
        "requester": {"reference": "PractitionerRole/cm1"},
        "owner": {"reference": f"Organization/{CLINIC}"},
    }
    if status in workflow.NEEDS_REASON:
        body["statusReason"] = {"text": "a reason"}
    if status == "completed":
        body["output"] = [
            {"type": {"coding": [workflow.RESULTING_ACTIVITY]}, "valueString": "Housing intake done"}
        ]
    body.update(overrides)
    return body


# --- every allowed transition, by role -------------------------------------------------------------

ALLOWED = [
    (None, "draft", REQUESTER),
    (None, "requested", REQUESTER),
    ("draft", "requested", REQUESTER),
    ("draft", "cancelled", REQUESTER),
    ("requested", "received", OWNER),
    ("requested", "accepted", OWNER),
    ("requested", "rejected", OWNER),
    ("received", "accepted", OWNER),
    ("received", "rejected", OWNER),
    ("accepted", "in-progress", OWNER),
    ("accepted", "on-hold", OWNER),
    ("accepted", "completed", OWNER),
    ("accepted", "failed", OWNER),
    ("in-progress", "on-hold", OWNER),
    ("in-progress", "completed", OWNER),
    ("in-progress", "failed", OWNER),
    ("on-hold", "in-progress", OWNER),
    ("on-hold", "completed", OWNER),
    ("on-hold", "failed", OWNER),
    *[(s, "cancelled", r) for s in workflow.OPEN - {"draft"} for r in (REQUESTER, OWNER)],
    *[(s, "entered-in-error", REQUESTER) for s in workflow.STATUSES - {"entered-in-error"}],
]  # fmt: skip


@pytest.mark.parametrize(("before", "after", "role"), ALLOWED)
def test_each_transition_of_the_table_is_allowed_to_its_role(
    before: str | None, after: str, role: str
) -> None:
    workflow.check_transition(before, after, role)  # type: ignore[arg-type]
    written = task(after)
    workflow.check_task_write(None if before is None else task(before), written, role)  # type: ignore[arg-type]


def test_the_table_lists_exactly_the_edges_of_the_state_machine() -> None:
    edges = {(b, a) for b, targets in workflow.NEXT.items() for a in targets}
    assert edges == {(b, a) for b, a, _ in ALLOWED}


@pytest.mark.parametrize(
    ("before", "after", "role"),
    [
        ("requested", "draft", OWNER),  # a clinic setting draft
        ("draft", "requested", OWNER),
        ("requested", "accepted", REQUESTER),  # the referrer cannot accept for the clinic
        ("accepted", "completed", REQUESTER),
        ("requested", "entered-in-error", OWNER),
        (None, "requested", OWNER),  # creating is the requester's act
    ],
)
def test_a_status_set_by_the_other_role_is_forbidden(before: str | None, after: str, role: str) -> None:
    with pytest.raises(Forbidden) as raised:
        workflow.check_transition(before, after, role)  # type: ignore[arg-type]
    assert raised.value.expression == ["Task.status"]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("cancelled", "completed"),  # completing a cancelled Task
        ("completed", "in-progress"),
        ("rejected", "accepted"),
        ("failed", "in-progress"),
        ("requested", "in-progress"),  # accept first
        ("requested", "completed"),
        ("received", "on-hold"),
        ("draft", "accepted"),
        ("on-hold", "received"),
    ],
)
def test_an_edge_the_state_machine_lacks_is_a_business_rule_violation(before: str, after: str) -> None:
    with pytest.raises(BusinessRuleViolation) as raised:
        workflow.check_transition(before, after, OWNER)
    assert f"that is {before} cannot become {after}" in raised.value.diagnostics


def test_entered_in_error_is_final_even_for_the_requester() -> None:
    with pytest.raises(BusinessRuleViolation, match="entered-in-error"):
        workflow.check_transition("entered-in-error", "entered-in-error", REQUESTER)
    with pytest.raises(BusinessRuleViolation, match="nothing"):
        workflow.check_transition("entered-in-error", "requested", REQUESTER)


def test_an_update_that_keeps_the_status_is_allowed_to_either_side() -> None:
    before = task("in-progress")
    workflow.check_task_write(before, {**before, "note": [{"text": "first visit booked"}]}, OWNER)
    done = task("completed")
    report = {"type": {"text": "report"}, "valueReference": {"reference": "DocumentReference/d1"}}
    workflow.check_task_write(done, {**done, "output": [*done["output"], report]}, REQUESTER)


# --- roles -----------------------------------------------------------------------------------------


def test_no_organization_is_the_requester_and_the_owner_organization_the_owner() -> None:
    assert workflow.role_of(task(), None) == REQUESTER
    assert workflow.role_of(task(), CLINIC) == OWNER


def test_a_clinic_that_does_not_own_the_task_can_do_nothing() -> None:
    with pytest.raises(Forbidden, match="not addressed to Organization/other"):
        workflow.role_of(task(), "other")
    practitioner_owned = task(owner={"reference": f"Practitioner/{CLINIC}"})
    with pytest.raises(Forbidden):
        workflow.role_of(practitioner_owned, CLINIC)


# --- what a status needs ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", sorted(workflow.NEEDS_REASON))
def test_rejected_cancelled_on_hold_and_failed_need_a_status_reason_text(status: str) -> None:
    before = task("accepted") if status != "rejected" else task("requested")
    for reason in (None, {"coding": [{"code": "x"}]}, {"text": "  "}):
        after = task(status)
        after.pop("statusReason")
        if reason is not None:
            after["statusReason"] = reason
        with pytest.raises(BusinessRuleViolation) as raised:
            workflow.check_task_write(before, after, OWNER if status != "cancelled" else REQUESTER)
        assert raised.value.expression == ["Task.statusReason.text"]


@pytest.mark.parametrize(
    "output",
    [
        {"type": {"coding": [workflow.RESULTING_ACTIVITY]}, "valueReference": {"reference": "Procedure/pr1"}},
        {"type": {"coding": [workflow.RESULTING_ACTIVITY]}, "valueCodeableConcept": {"text": "Food pantry"}},
        {"type": {"text": "services delivered"}, "valueString": "Three counselling sessions"},
    ],
)  # fmt: skip
def test_completion_takes_a_reference_a_code_or_a_text_of_what_was_delivered(output: dict[str, Any]) -> None:
    workflow.check_task_write(task("in-progress"), task("completed", output=[output]), OWNER)


@pytest.mark.parametrize(
    "outputs",
    [
        None,
        [],
        [{"type": {"text": "x"}, "valueString": " "}],
        [{"type": {"text": "x"}, "valueBoolean": True}],
    ],
)
def test_completion_without_what_was_delivered_is_refused(outputs: Any) -> None:
    after = task("completed")
    after.pop("output")
    if outputs is not None:
        after["output"] = outputs
    with pytest.raises(BusinessRuleViolation) as raised:
        workflow.check_task_write(task("in-progress"), after, OWNER)
    assert raised.value.expression == ["Task.output"]


# --- what never changes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("focus", {"reference": "ServiceRequest/sr2"}),
        ("for", {"reference": "Patient/p2"}),
        ("requester", {"reference": "Organization/o9"}),
        ("authoredOn", "2026-11-02"),
    ],
)
def test_the_referral_a_task_is_about_never_changes(element: str, value: Any) -> None:
    with pytest.raises(BusinessRuleViolation) as raised:
        workflow.check_task_write(task("requested"), task("requested", **{element: value}), REQUESTER)
    assert raised.value.expression == [f"Task.{element}"]


def test_a_display_may_be_added_to_a_fixed_reference() -> None:
    after = task(requester={"reference": "PractitionerRole/cm1", "display": "Case manager"})
    workflow.check_task_write(task(), after, REQUESTER)


def test_only_the_requester_reassigns_and_only_before_the_clinic_acts() -> None:
    elsewhere = {"reference": "Organization/clinic-2"}
    workflow.check_task_write(task("requested"), task("requested", owner=elsewhere), REQUESTER)
    with pytest.raises(Forbidden, match="Only the requester"):
        workflow.check_task_write(task("requested"), task("requested", owner=elsewhere), OWNER)
    with pytest.raises(BusinessRuleViolation, match="draft or requested"):
        workflow.check_task_write(task("accepted"), task("accepted", owner=elsewhere), REQUESTER)


# --- the profile -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "element"),
    [
        ({"intent": "plan"}, "Task.intent"),
        ({"code": {"coding": [{"system": workflow.TASK_CODE_SYSTEM, "code": "approve"}]}}, "Task.code"),
        ({"code": None}, "Task.code"),
        ({"focus": {"reference": "CarePlan/c1"}}, "Task.focus"),
        ({"focus": None}, "Task.focus"),
        ({"for": {"reference": "Group/g1"}}, "Task.for"),
        ({"authoredOn": None}, "Task.authoredOn"),
        ({"requester": {"display": "someone"}}, "Task.requester"),
        ({"owner": None}, "Task.owner"),
        ({"status": "ready"}, "Task.status"),
    ],
)
def test_a_task_outside_the_gravity_profile_is_invalid(change: dict[str, Any], element: str) -> None:
    body = {k: v for k, v in {**task(), **change}.items() if v is not None}
    with pytest.raises(InvalidInput) as raised:
        workflow.check_task_write(None, body, REQUESTER)
    assert raised.value.expression == [element]


# --- the Task of a referral ------------------------------------------------------------------------


def service_request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "subject": {"reference": "Patient/p1", "display": "Sam Sample"},
        "requester": {"reference": "PractitionerRole/cm1"},
        "performer": [
            {"reference": "Practitioner/x"},
            {"reference": f"Organization/{CLINIC}", "display": "Clinic"},
        ],
    }
    body.update(overrides)
    return body


def test_a_referral_makes_a_requested_gravity_task_owned_by_the_receiving_organization() -> None:
    now = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    made = workflow.new_referral_task(service_request(), now)
    assert made == {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [workflow.FULFILL]},
        "focus": {"reference": "ServiceRequest/sr1"},
        "for": {"reference": "Patient/p1", "display": "Sam Sample"},
        "authoredOn": "2026-11-01T09:30:00+00:00",
        "requester": {"reference": "PractitionerRole/cm1"},
        "owner": {"reference": f"Organization/{CLINIC}", "display": "Clinic"},
        "priority": "urgent",
    }
    workflow.check_task_write(None, made, REQUESTER)


def test_which_service_requests_are_referrals() -> None:
    assert workflow.is_referral(service_request())
    assert not workflow.is_referral(service_request(status="draft"))
    assert not workflow.is_referral(service_request(intent="plan"))
    assert not workflow.is_referral(service_request(performer=[]))
    assert workflow.referral_owner(service_request(performer=[{"reference": "Practitioner/x"}])) is None


@pytest.mark.parametrize(
    ("change", "element"),
    [
        ({"requester": None}, "ServiceRequest.requester"),
        ({"subject": {"reference": "Group/g"}}, "ServiceRequest.subject"),
        ({"performer": [{"reference": "Practitioner/x"}]}, "ServiceRequest.performer"),
    ],
)
def test_a_referral_without_requester_patient_or_receiving_organization_gets_no_task(
    change: dict[str, Any], element: str
) -> None:
    body = {k: v for k, v in {**service_request(), **change}.items() if v is not None}
    with pytest.raises(BusinessRuleViolation) as raised:
        workflow.new_referral_task(body, datetime(2026, 11, 1, tzinfo=UTC))
    assert raised.value.expression == [element]


def test_cancelling_keeps_the_task_and_says_why() -> None:
    cancelled = workflow.cancelled(task("accepted"), "ServiceRequest revoked")
    assert cancelled["status"] == "cancelled" and cancelled["statusReason"] == {
        "text": "ServiceRequest revoked"
    }
    workflow.check_task_write(task("accepted"), cancelled, REQUESTER)
