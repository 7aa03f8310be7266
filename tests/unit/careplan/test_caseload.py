"""Caseload domain rules: what counts as a program and a case manager, who takes a new client,
and the CareTeam that records it. Directory entries are synthetic."""

from __future__ import annotations

from typing import Any

import pytest

from services.careplan.domain.caseload import (
    ACT,
    CASE_MANAGEMENT_MODEL_SYSTEM,
    CASELOAD_LIMIT,
    ICM,
    PARTICIPANT_PROGRAM,
    PARTICIPANT_ROLE,
    Caseload,
    Program,
    ProgramStatus,
    case_management_team,
    case_manager_of,
    case_manager_references,
    choose_case_manager,
    current_case_manager,
    has_case_manager,
    participant_reference,
    program_full_parameters,
    program_of,
    program_statuses,
    with_case_manager,
    without_case_manager,
)
from shared.fhir.validation import validate_resource

DEFAULTS = {"act": 10, "icm": 20, "clinical": 30, "brokerage": 50}


def service(id_: str, model: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "HealthcareService", "id": id_, "name": f"Program {id_}"}
    if model is not None:
        body["type"] = [{"coding": [{"system": CASE_MANAGEMENT_MODEL_SYSTEM, "code": model}]}]
    return {**body, **extra}


def role(id_: str, *services: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": id_,
        "practitioner": {"reference": f"Practitioner/p-{id_}"},
        "healthcareService": [{"reference": f"HealthcareService/{s}"} for s in services],
        **extra,
    }


def candidate(role_id: str, program: Program, count: int) -> Caseload:
    return Caseload(role_id, f"Practitioner/p-{role_id}", program, program.limit(DEFAULTS), count)


# --- programs -----------------------------------------------------------------------------------


def test_a_healthcare_service_coded_with_a_case_management_model_is_a_program() -> None:
    program = program_of(service("act1", ACT, providedBy={"reference": "Organization/clinic"}))
    assert program == Program("act1", ACT, "Program act1", None, "Organization/clinic", True)
    assert program.limit(DEFAULTS) == 10


def test_a_healthcare_service_without_a_model_coding_is_not_a_program() -> None:
    assert program_of(service("food-bank", None)) is None
    other = service("x", None, type=[{"coding": [{"system": "http://other", "code": "act"}]}])
    assert program_of(other) is None


def test_a_program_s_own_limit_extension_wins_over_the_model_setting() -> None:
    body = service("icm1", ICM, extension=[{"url": CASELOAD_LIMIT, "valueInteger": 12}])
    program = program_of(body)
    assert program is not None and program.own_limit == 12 and program.limit(DEFAULTS) == 12


@pytest.mark.parametrize("value", [-1, True, "12"])
def test_a_meaningless_limit_extension_falls_back_to_the_model_setting(value: Any) -> None:
    program = program_of(service("icm1", ICM, extension=[{"url": CASELOAD_LIMIT, "valueInteger": value}]))
    assert program is not None and program.limit(DEFAULTS) == 20


def test_an_inactive_healthcare_service_is_an_inactive_program() -> None:
    program = program_of(service("act1", ACT, active=False))
    assert program is not None and not program.active


# --- case managers ------------------------------------------------------------------------------


def test_an_uncoded_role_of_a_program_is_a_case_manager() -> None:
    manager = case_manager_of(role("r1", "act1"))
    assert manager.active and manager.service_ids == ("act1",) and manager.practitioner == "Practitioner/p-r1"


def test_a_role_coded_as_case_manager_by_nucc_or_snomed_is_a_case_manager() -> None:
    nucc = {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "171M00000X"}]}
    snomed = {"coding": [{"system": "http://snomed.info/sct", "code": "768820003"}]}
    assert case_manager_of(role("r1", "act1", code=[nucc])).active
    assert case_manager_of(role("r2", "act1", code=[snomed])).active


def test_a_psychiatrist_on_the_team_carries_no_caseload() -> None:
    psychiatrist = {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "2084P0800X"}]}
    assert not case_manager_of(role("r1", "act1", code=[psychiatrist])).active


def test_an_inactive_role_or_one_without_a_service_takes_no_clients() -> None:
    assert not case_manager_of(role("r1", "act1", active=False)).active
    assert not case_manager_of(role("r2")).active


def test_service_references_may_be_absolute_or_versioned_and_are_listed_once() -> None:
    body = role("r1")
    body["healthcareService"] = [
        {"reference": "https://directory.example/fhir/HealthcareService/act1"},
        {"reference": "HealthcareService/act1/_history/3"},
        {"reference": "Location/nope"},
    ]
    assert case_manager_of(body).service_ids == ("act1",)


# --- choosing -----------------------------------------------------------------------------------

ACT_PROGRAM = Program("act1", ACT, "ACT team", 3)
ICM_PROGRAM = Program("icm1", ICM, "ICM team", 5)


def test_the_lowest_load_relative_to_the_limit_takes_the_client() -> None:
    # 2/3 of the ACT limit against 2/5 of the ICM limit: the ICM case manager is less loaded.
    chosen = choose_case_manager([candidate("a", ACT_PROGRAM, 2), candidate("c", ICM_PROGRAM, 2)])
    assert chosen is not None and chosen.role_id == "c"


def test_equal_relative_loads_go_to_the_fewest_clients_then_the_role_id() -> None:
    wide = Program("wide", ICM, None, 6)
    chosen = choose_case_manager([candidate("b", wide, 2), candidate("a", ACT_PROGRAM, 1)])
    assert chosen is not None and chosen.role_id == "a"  # 1/3 == 2/6, one client fewer
    tie = [candidate("b", ACT_PROGRAM, 1), candidate("a", ACT_PROGRAM, 1)]
    assert choose_case_manager(tie) == choose_case_manager(list(reversed(tie))) == tie[1]


def test_no_one_at_their_limit_is_chosen() -> None:
    full = [candidate("a", ACT_PROGRAM, 3), candidate("c", ICM_PROGRAM, 5), candidate("d", ICM_PROGRAM, 6)]
    assert choose_case_manager(full) is None
    assert [c.over_limit for c in full] == [False, False, True]
    assert choose_case_manager([candidate("closed", Program("z", ACT, None, 0), 0)]) is None


def test_a_choice_can_be_restricted_to_one_program_or_model() -> None:
    pool = [candidate("a", ACT_PROGRAM, 2), candidate("c", ICM_PROGRAM, 0)]
    by_program = choose_case_manager(pool, program_id="act1")
    by_model = choose_case_manager(pool, model=ACT)
    assert by_program is not None and by_program.role_id == "a"
    assert by_model is not None and by_model.role_id == "a"
    assert choose_case_manager([candidate("a", ACT_PROGRAM, 3), *pool[1:]], model=ACT) is None


def test_filling_a_program_one_client_at_a_time_keeps_loads_balanced() -> None:
    loads = {"a": 0, "b": 0, "c": 0}
    programs = {"a": ACT_PROGRAM, "b": ACT_PROGRAM, "c": ICM_PROGRAM}
    taken = 0
    while (
        chosen := choose_case_manager([candidate(r, programs[r], n) for r, n in loads.items()])
    ) is not None:
        loads[chosen.role_id] += 1
        taken += 1
        assert abs(loads["a"] - loads["b"]) <= 1
    assert taken == 11 and loads == {"a": 3, "b": 3, "c": 5}


def test_the_program_full_event_lists_each_program_considered() -> None:
    pool = [candidate("a", ACT_PROGRAM, 3), candidate("b", ACT_PROGRAM, 3), candidate("c", ICM_PROGRAM, 5)]
    empty = Program("empty", ACT, None, None)
    statuses = program_statuses([ICM_PROGRAM, ACT_PROGRAM, empty], pool, DEFAULTS)
    assert statuses == [
        ProgramStatus(ACT_PROGRAM, 3, 2, 6),
        ProgramStatus(empty, 10, 0, 0),
        ProgramStatus(ICM_PROGRAM, 5, 1, 5),
    ]
    assert program_statuses([ICM_PROGRAM, ACT_PROGRAM], pool, DEFAULTS, model=ICM) == statuses[2:]
    parameters = program_full_parameters("Patient/p1", statuses)
    validate_resource(parameters, "Parameters")
    assert parameters["parameter"][0] == {"name": "patient", "valueReference": {"reference": "Patient/p1"}}
    act = {part["name"]: part for part in parameters["parameter"][1]["part"]}
    assert act["healthcareService"]["valueReference"]["reference"] == "HealthcareService/act1"
    assert (act["limit"]["valueInteger"], act["clients"]["valueInteger"]) == (3, 6)


# --- the CareTeam -------------------------------------------------------------------------------

PROGRAM = Program("act1", ACT, "ACT team", 3, "Organization/clinic")


def test_the_case_management_team_is_a_valid_r4_care_team_with_its_case_manager() -> None:
    team = case_management_team(
        "Patient/p1", "Practitioner/x", "PractitionerRole/r1", PROGRAM, start="2025-03-01T09:00:00+00:00"
    )
    assert validate_resource(team, "CareTeam") == team  # fhir.resources plus required bindings
    assert team["status"] == "active" and team["subject"] == {"reference": "Patient/p1"}
    assert team["category"][0]["coding"][0]["code"] == "LA28865-6"
    assert team["managingOrganization"] == [{"reference": "Organization/clinic"}]
    participant = current_case_manager(team)
    assert participant is not None and participant["member"] == {"reference": "Practitioner/x"}
    assert participant["onBehalfOf"] == {"reference": "Organization/clinic"}
    assert participant_reference(participant, PARTICIPANT_ROLE) == "PractitionerRole/r1"
    assert participant_reference(participant, PARTICIPANT_PROGRAM) == "HealthcareService/act1"
    assert case_manager_references(participant) == ("Practitioner/x", "r1", "act1")


def test_a_role_without_a_practitioner_is_the_member_and_has_no_on_behalf_of() -> None:
    # R4 ctm-1: onBehalfOf only when the member is a Practitioner.
    team = case_management_team("Patient/p1", None, "PractitionerRole/r1", PROGRAM, start="2025-03-01")
    validate_resource(team, "CareTeam")
    participant = team["participant"][0]
    assert participant["member"] == {"reference": "PractitionerRole/r1"} and "onBehalfOf" not in participant
    assert case_manager_references(participant) == (None, "r1", "act1")


def test_a_case_manager_is_added_to_an_existing_team_that_has_none() -> None:
    team = {
        "resourceType": "CareTeam",
        "id": "t1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "participant": [{"role": [{"text": "Peer support"}], "member": {"reference": "Practitioner/peer"}}],
    }
    assert not has_case_manager(team)
    updated = with_case_manager(team, "Practitioner/x", "PractitionerRole/r1", PROGRAM, start="2025-03-01")
    validate_resource(updated, "CareTeam")
    assert has_case_manager(updated) and len(updated["participant"]) == 2 and not has_case_manager(team)
    with pytest.raises(ValueError, match="already has a case manager"):
        with_case_manager(updated, "Practitioner/y", "PractitionerRole/r2", PROGRAM, start="2025-03-02")


def test_an_ended_case_manager_no_longer_counts() -> None:
    team = case_management_team(
        "Patient/p1", "Practitioner/x", "PractitionerRole/r1", PROGRAM, start="2025-03-01"
    )
    ended = without_case_manager(team, end="2025-04-01")
    validate_resource(ended, "CareTeam")
    assert not has_case_manager(ended)
    assert ended["participant"][0]["period"] == {"start": "2025-03-01", "end": "2025-04-01"}
