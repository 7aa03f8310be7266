"""How the gateway splits a search between the owning service and itself (no HTTP): which chains
and includes cross services, and what the owner is sent."""

from __future__ import annotations

import pytest

from services.gateway.proxy import route
from services.gateway.search import RemoteChain, RemoteInclude, RemoteRevInclude, plan_search
from shared.errors import InvalidInput, MethodNotAllowed, NotFound


def test_a_search_within_one_service_is_sent_as_it_is() -> None:
    params = [("status", "active"), ("_include", "CarePlan:goal"), ("goal.lifecycle-status", "active")]
    plan = plan_search("CarePlan", params)
    assert plan.forward == params and not plan.changed and not plan.includes


def test_a_typed_chain_to_another_service_is_resolved_by_the_gateway() -> None:
    plan = plan_search("CarePlan", [("subject:Patient.identifier", "sys|1"), ("status", "active")])
    assert plan.chains == [
        RemoteChain("subject:Patient.identifier", "sys|1", "subject", "Patient", "identifier")
    ]
    assert plan.forward == [("status", "active")]


def test_an_untyped_chain_uses_the_only_served_target_type() -> None:
    # CarePlan.subject may be a Patient or a Group; no service serves Group.
    plan = plan_search("CarePlan", [("subject.name:exact", "Ann")])
    assert plan.chains == [RemoteChain("subject.name:exact", "Ann", "subject", "Patient", "name:exact")]


def test_a_chain_that_could_reach_several_services_needs_its_type() -> None:
    with pytest.raises(InvalidInput, match="name the type"):
        plan_search("Observation", [("performer.name", "Smith")])


def test_a_chain_of_two_levels_across_services_is_refused() -> None:
    with pytest.raises(InvalidInput, match="more than one level"):
        plan_search("CarePlan", [("subject:Patient.organization.name", "X")])


def test_an_include_only_another_service_can_answer_is_withheld_from_the_owner() -> None:
    plan = plan_search("CarePlan", [("_include", "CarePlan:subject")])
    assert plan.includes == [RemoteInclude("CarePlan", "subject", frozenset({"Patient"}))]
    assert plan.withheld == [("_include", "CarePlan:subject")] and plan.forward == []


def test_an_include_that_may_point_anywhere_goes_to_the_owner_too() -> None:
    plan = plan_search("CarePlan", [("_include", "CarePlan:activity-reference")])
    assert plan.includes == [RemoteInclude("CarePlan", "activity-reference", None)]
    assert plan.forward == [("_include", "CarePlan:activity-reference")] and not plan.withheld


def test_an_include_with_a_target_type_decides_by_that_type() -> None:
    plan = plan_search("Observation", [("_include", "Observation:performer:Practitioner")])
    assert plan.includes == [RemoteInclude("Observation", "performer", frozenset({"Practitioner"}))]
    local = plan_search("Observation", [("_include", "Observation:performer:Patient")])
    assert not local.includes and local.forward == [("_include", "Observation:performer:Patient")]


def test_a_revinclude_from_another_services_type_is_done_by_the_gateway() -> None:
    plan = plan_search("Patient", [("_revinclude", "CarePlan:subject"), ("_revinclude", "Condition:subject")])
    assert plan.revincludes == [RemoteRevInclude("CarePlan", "subject")]
    assert plan.forward == [("_revinclude", "Condition:subject")]


def test_a_revinclude_naming_no_reference_parameter_is_refused() -> None:
    with pytest.raises(InvalidInput, match="no reference search parameter"):
        plan_search("Patient", [("_revinclude", "CarePlan:status")])


@pytest.mark.parametrize(
    ("method", "path", "interaction", "id_"),
    [
        ("GET", "Patient", "search", None),
        ("POST", "Patient/_search", "search", None),
        ("POST", "Patient", "create", None),
        ("PUT", "Patient", "update", None),
        ("GET", "Patient/1", "read", "1"),
        ("HEAD", "Patient/1", "read", "1"),
        ("PATCH", "Patient/1", "patch", "1"),
        ("GET", "Patient/_history", "history", None),
        ("GET", "Patient/1/_history", "history", "1"),
        ("GET", "Patient/1/_history/2", "vread", "1"),
        ("GET", "Patient/1/$everything", "everything", "1"),
    ],
)
def test_requests_are_routed_to_their_interaction(
    method: str, path: str, interaction: str, id_: str | None
) -> None:
    found = route(method, path)
    assert (found.service, found.interaction, found.id) == ("intake", interaction, id_)


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("GET", "NoSuchType", NotFound),
        ("GET", "Patient/1/2/3/4", NotFound),
        ("GET", "CarePlan/1/$everything", NotFound),
        ("POST", "Patient/1", MethodNotAllowed),
        ("DELETE", "Patient/1/_history/2", MethodNotAllowed),
    ],
)
def test_requests_that_are_no_fhir_interaction_are_refused(
    method: str, path: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        route(method, path)
