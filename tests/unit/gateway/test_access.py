"""Access decisions at the gateway, without HTTP: scopes per interaction, the patient compartment
of patient/ scopes and the clinic rule."""

from __future__ import annotations

from typing import Any

import pytest

from services.gateway.access import (
    AccessPolicy,
    Restriction,
    permits,
    reference_target,
    search_restrictions,
)
from shared.auth import Principal, Scope
from shared.errors import Forbidden


def principal(*scopes: str, patient: str | None = None, organization: str | None = None) -> Principal:
    parsed = tuple(s for s in (Scope.parse(t) for t in scopes) if s)
    return Principal("someone", parsed, patient=patient, organization=organization)


def plan_for(patient_id: str) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "id": "cp", "subject": {"reference": f"Patient/{patient_id}"}}


@pytest.mark.parametrize(
    ("reference", "target"),
    [
        ("Patient/123", ("Patient", "123")),
        ("Patient/123/_history/4", ("Patient", "123")),
        ("https://carebridge.example/fhir/Patient/123", ("Patient", "123")),
        ("#contained", None),
        ("urn:uuid:abc", None),
    ],
)
def test_references_are_read_in_their_relative_absolute_and_versioned_forms(
    reference: str, target: tuple[str, str] | None
) -> None:
    assert reference_target(reference) == target


def test_system_and_user_scopes_are_not_restricted() -> None:
    policy = AccessPolicy(principal("system/*.cruds", "user/CarePlan.rs"))
    assert policy.restriction("CarePlan", "search").unrestricted
    assert policy.restriction("Practitioner", "delete").unrestricted


def test_a_missing_permission_letter_is_forbidden() -> None:
    policy = AccessPolicy(principal("user/CarePlan.rs"))
    with pytest.raises(Forbidden, match="update on CarePlan"):
        policy.restriction("CarePlan", "update")


def test_patient_scopes_restrict_to_the_patient_claim() -> None:
    policy = AccessPolicy(principal("patient/*.rs", patient="p1"))
    assert policy.restriction("CarePlan", "search") == Restriction(patient="p1")


def test_a_user_scope_covering_the_same_type_lifts_the_patient_restriction() -> None:
    policy = AccessPolicy(principal("patient/*.rs", "user/CarePlan.rs", patient="p1"))
    assert policy.restriction("CarePlan", "read").unrestricted
    assert policy.restriction("Goal", "read") == Restriction(patient="p1")


@pytest.mark.parametrize("rtype", ["Practitioner", "Organization", "Questionnaire", "Location"])
def test_patient_scopes_refuse_types_without_a_patient_link(rtype: str) -> None:
    with pytest.raises(Forbidden, match="not in a patient compartment"):
        AccessPolicy(principal("patient/*.rs", patient="p1")).restriction(rtype, "read")


def test_patient_scopes_need_a_patient_claim() -> None:
    with pytest.raises(Forbidden, match="patient claim"):
        AccessPolicy(principal("patient/*.rs")).restriction("CarePlan", "read")


def test_an_organization_claim_restricts_referrals_only() -> None:
    policy = AccessPolicy(principal("system/*.cruds", organization="org-1"))
    assert policy.restriction("ServiceRequest", "search") == Restriction(organization="org-1")
    assert policy.restriction("Task", "read") == Restriction(organization="org-1")
    assert policy.restriction("CarePlan", "read").unrestricted


def test_compartment_membership_follows_the_patient_search_parameter() -> None:
    mine = Restriction(patient="p1")
    appointment = {"resourceType": "Appointment", "participant": [{"actor": {"reference": "Patient/p1"}}]}
    task = {"resourceType": "Task", "for": {"reference": "Patient/p1"}}
    assert permits("CarePlan", plan_for("p1"), mine)
    assert not permits("CarePlan", plan_for("p2"), mine)
    assert permits("Appointment", appointment, mine)
    assert permits("Task", task, mine)
    assert permits("Patient", {"resourceType": "Patient", "id": "p1"}, mine)
    assert not permits("Patient", {"resourceType": "Patient", "id": "p2"}, mine)


def test_referrals_must_be_addressed_to_the_organization() -> None:
    clinic = Restriction(organization="org-1")
    to_us = {"performer": [{"reference": "Organization/org-2"}, {"reference": "Organization/org-1"}]}
    assert permits("ServiceRequest", to_us, clinic)
    assert not permits("ServiceRequest", {"performer": [{"reference": "Organization/org-2"}]}, clinic)
    assert permits("Task", {"owner": {"reference": "Organization/org-1"}}, clinic)
    assert not permits("Task", {}, clinic)


def test_search_restrictions_name_the_patient_or_the_organization() -> None:
    assert search_restrictions("Patient", Restriction(patient="p1")) == [("_id", "p1")]
    assert search_restrictions("Goal", Restriction(patient="p1")) == [("patient", "Patient/p1")]
    both = Restriction(patient="p1", organization="o1")
    assert search_restrictions("Task", both) == [("patient", "Patient/p1"), ("owner", "Organization/o1")]
    assert search_restrictions("ServiceRequest", Restriction(organization="o1")) == [
        ("performer", "Organization/o1")
    ]


def test_may_see_needs_read_or_search_permission_and_the_restriction() -> None:
    policy = AccessPolicy(principal("patient/CarePlan.s", patient="p1"))
    assert policy.may_see("CarePlan", plan_for("p1"))
    assert not policy.may_see("CarePlan", plan_for("p2"))
    assert not policy.may_see("Goal", {"subject": {"reference": "Patient/p1"}})
