"""Caseloads: which programs and case managers the directory holds, who takes a new client, and
the case-management CareTeam that records it. No I/O here.

- A **program** is a HealthcareService (referral's directory) whose `type` has a coding in
  `CASE_MANAGEMENT_MODEL_SYSTEM` (act | icm | clinical | brokerage). Its caseload limit is the
  `CASELOAD_LIMIT` extension (valueInteger; 0 closes the program to new clients), else the
  careplan setting for its model.
- A **case manager** is an active PractitionerRole whose `healthcareService` names a program and
  whose `code`/`specialty` is a case-manager code (`CASE_MANAGER_ROLE_CODES`) or which has no
  `code` at all: a clinic that registers one role per case manager needs no coding, and a
  psychiatrist or peer-support role on the same team (coded as such) carries no caseload.
- **Balancing**: among case managers under their limit, the lowest load relative to the limit
  wins, then the fewest clients, then the role id (stable). A role's load counts its clients in
  every program; each program measures that one load against its own limit.

Codes marked [S] were checked against secondary sources (published IG examples), not a
terminology server; the case-management models and their ratios are in DOMAIN.md §4.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

#: CareBridge's code system for the case-management model a program follows (DOMAIN.md §4).
CASE_MANAGEMENT_MODEL_SYSTEM: Final = "http://carebridge.example/fhir/CodeSystem/case-management-model"
ACT: Final = "act"
ICM: Final = "icm"
CLINICAL: Final = "clinical"
BROKERAGE: Final = "brokerage"
#: Model code -> display. Sources: ACT 10:1 (DACTS H1; SAMHSA ACT toolkit), ICM <=20 (Cochrane
#: CD007906, Dieterich et al.); clinical ~1:20-30 and brokerage 1:30-50+ are typical figures [K].
CASE_MANAGEMENT_MODELS: Final[Mapping[str, str]] = {
    ACT: "Assertive Community Treatment",
    ICM: "Intensive case management",
    CLINICAL: "Clinical case management",
    BROKERAGE: "Brokerage case management",
}

#: Extension on a HealthcareService: its own caseload limit per case manager (valueInteger).
CASELOAD_LIMIT: Final = "http://carebridge.example/fhir/StructureDefinition/caseload-limit"
#: Extensions on the case manager's CareTeam.participant: the PractitionerRole and the program
#: (HealthcareService) the assignment was made under; R4 CareTeam has no element for either.
PARTICIPANT_ROLE: Final = "http://carebridge.example/fhir/StructureDefinition/case-manager-role"
PARTICIPANT_PROGRAM: Final = "http://carebridge.example/fhir/StructureDefinition/case-management-program"

SNOMED: Final = "http://snomed.info/sct"
NUCC: Final = "http://nucc.org/provider-taxonomy"
#: CareTeam.participant.role of the case manager: SNOMED CT 768820003 "Care coordinator
#: (occupation)" [S: MCC eCare Plan IG example CareTeam; no "case manager" occupation concept
#: was found]. Text says what CareBridge means by it.
CASE_MANAGER_ROLE: Final = {"system": SNOMED, "code": "768820003", "display": "Care coordinator"}
#: PractitionerRole codes that mark a case manager: the SNOMED CT occupation above and NUCC
#: 171M00000X "Case Manager/Care Coordinator" (US Core provider-role value set) [S].
CASE_MANAGER_ROLE_CODES: Final = frozenset({(SNOMED, "768820003"), (NUCC, "171M00000X")})
#: CareTeam.category of the case-management team: LOINC LA28865-6 "Longitudinal
#: care-coordination focused care team" (R4 care-team-category value set) [S].
CASE_MANAGEMENT_TEAM_CATEGORY: Final = {
    "system": "http://loinc.org",
    "code": "LA28865-6",
    "display": "Longitudinal care-coordination focused care team",
}


# --- the directory: programs and case managers ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Program:
    id: str
    model: str
    name: str | None = None
    #: The program's own limit (CASELOAD_LIMIT extension), None to use the model's setting.
    own_limit: int | None = None
    #: "Organization/x": HealthcareService.providedBy.
    organization: str | None = None
    active: bool = True

    def limit(self, defaults: Mapping[str, int]) -> int:
        return self.own_limit if self.own_limit is not None else defaults[self.model]


def program_model(service: dict[str, Any]) -> str | None:
    """The case-management model a HealthcareService follows, or None if it is not a program."""
    for system, code in _codings(service.get("type")):
        if system == CASE_MANAGEMENT_MODEL_SYSTEM and code in CASE_MANAGEMENT_MODELS:
            return str(code)
    return None


def _codings(concepts: Any) -> list[tuple[Any, Any]]:
    """(system, code) of every coding in a list of CodeableConcepts."""
    return [
        (coding.get("system"), coding.get("code"))
        for concept in concepts or []
        if isinstance(concept, dict)
        for coding in concept.get("coding") or []
        if isinstance(coding, dict)
    ]


def program_of(service: dict[str, Any]) -> Program | None:
    """The program a HealthcareService is, or None if it names no case-management model."""
    model = program_model(service)
    if model is None or not isinstance(service.get("id"), str):
        return None
    return Program(
        id=service["id"],
        model=model,
        name=service.get("name") if isinstance(service.get("name"), str) else None,
        own_limit=_own_limit(service),
        organization=_organization(service.get("providedBy")),
        active=service.get("active") is not False,
    )


def _own_limit(service: dict[str, Any]) -> int | None:
    for extension in service.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == CASELOAD_LIMIT:
            value = extension.get("valueInteger")
            # bool is an int in Python; a negative limit means nothing: use the model's.
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    return None


@dataclass(frozen=True, slots=True)
class CaseManager:
    role_id: str
    #: "Practitioner/x", or None for a role without a practitioner.
    practitioner: str | None
    #: The HealthcareServices the role serves (programs or not; the store joins them).
    service_ids: tuple[str, ...]
    #: Takes new clients: the role is active and is a case manager.
    active: bool


def is_case_manager_role(role: dict[str, Any]) -> bool:
    """A role coded as case manager, or with no code at all (see the module docstring)."""
    codes = role.get("code") or []
    coded = set(_codings(codes)) | set(_codings(role.get("specialty")))
    return not codes or bool(coded & CASE_MANAGER_ROLE_CODES)


def case_manager_of(role: dict[str, Any]) -> CaseManager:
    """What careplan keeps of a PractitionerRole; `active` says whether it takes clients."""
    services = tuple(
        dict.fromkeys(
            ref
            for item in role.get("healthcareService") or []
            if (ref := _reference(item, "HealthcareService")) is not None
        )
    )
    practitioner = _reference(role.get("practitioner"), "Practitioner")
    return CaseManager(
        role_id=str(role.get("id")),
        practitioner=f"Practitioner/{practitioner}" if practitioner else None,
        service_ids=services,
        active=role.get("active") is not False and bool(services) and is_case_manager_role(role),
    )


def _reference(value: Any, resource_type: str) -> str | None:
    """The id in a Reference to `resource_type` (relative or absolute, version dropped)."""
    text = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(text, str):
        return None
    parts = text.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return parts[-1]
    return None


def _organization(value: Any) -> str | None:
    found = _reference(value, "Organization")
    return f"Organization/{found}" if found else None


# --- choosing a case manager ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caseload:
    """A case manager in one program they serve, with the clients they have now (in all their
    programs): what a choice weighs, and a row of the caseload report."""

    role_id: str
    #: "Practitioner/x", or None for a role without a practitioner.
    practitioner: str | None
    program: Program
    limit: int
    count: int

    @property
    def has_room(self) -> bool:
        return self.count < self.limit

    @property
    def over_limit(self) -> bool:
        """Above the limit (the DOMAIN.md §4 caseload monitor), e.g. after a limit was lowered."""
        return self.count > self.limit


def choose_case_manager(
    caseloads: Iterable[Caseload], *, program_id: str | None = None, model: str | None = None
) -> Caseload | None:
    """The case manager who takes a new client: never one at or over their limit; the lowest
    load relative to the limit, then the fewest clients, then role and program id. None when
    no one (in `program_id` / `model`, if given) has room."""
    eligible = [
        c
        for c in caseloads
        if c.has_room
        and c.program.active
        and (program_id is None or c.program.id == program_id)
        and (model is None or c.program.model == model)
    ]
    if not eligible:
        return None
    return min(eligible, key=lambda c: (Fraction(c.count, c.limit), c.count, c.role_id, c.program.id))


@dataclass(frozen=True, slots=True)
class ProgramStatus:
    """How full a program is: for the program-full event and the caseload report."""

    program: Program
    limit: int
    case_managers: int
    clients: int


def program_statuses(
    programs: Iterable[Program],
    caseloads: Sequence[Caseload],
    defaults: Mapping[str, int],
    *,
    program_id: str | None = None,
    model: str | None = None,
) -> list[ProgramStatus]:
    """The active programs an assignment considered (all, or the one program / model asked for)."""
    statuses = []
    for program in programs:
        if not program.active or (program_id is not None and program.id != program_id):
            continue
        if model is not None and program.model != model:
            continue
        mine = [c for c in caseloads if c.program.id == program.id]
        statuses.append(
            ProgramStatus(program, program.limit(defaults), len(mine), sum(c.count for c in mine))
        )
    return sorted(statuses, key=lambda s: s.program.id)


def program_full_parameters(patient_reference: str, full: Sequence[ProgramStatus]) -> dict[str, Any]:
    """The PROGRAM_FULL_EVENT data: the patient and each program considered, how full it is."""
    parameters: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": patient_reference}}
    ]
    for status in full:
        program = status.program
        parts: list[dict[str, Any]] = [
            {"name": "healthcareService", "valueReference": _program_reference(program)},
            {"name": "model", "valueCoding": model_coding(program.model)},
            {"name": "limit", "valueInteger": status.limit},
            {"name": "caseManagers", "valueInteger": status.case_managers},
            {"name": "clients", "valueInteger": status.clients},
        ]
        parameters.append({"name": "program", "part": parts})
    return {"resourceType": "Parameters", "parameter": parameters}


def model_coding(model: str) -> dict[str, str]:
    return {"system": CASE_MANAGEMENT_MODEL_SYSTEM, "code": model, "display": CASE_MANAGEMENT_MODELS[model]}


def _program_reference(program: Program) -> dict[str, str]:
    reference = {"reference": f"HealthcareService/{program.id}"}
    return {**reference, "display": program.name} if program.name else reference


# --- the case-management CareTeam -------------------------------------------------------------


def case_manager_participant(
    practitioner_reference: str | None, role_reference: str, program: Program, *, start: str
) -> dict[str, Any]:
    """The case manager as a CareTeam participant: the Practitioner as member (the role when
    there is none), the role and program in extensions."""
    member = practitioner_reference or role_reference
    participant: dict[str, Any] = {
        "extension": [
            {"url": PARTICIPANT_ROLE, "valueReference": {"reference": role_reference}},
            {"url": PARTICIPANT_PROGRAM, "valueReference": _program_reference(program)},
        ],
        "role": [{"coding": [CASE_MANAGER_ROLE], "text": "Case manager"}],
        "member": {"reference": member},
        "period": {"start": start},
    }
    # ctm-1: onBehalfOf only when the member is a Practitioner (R4 CareTeam invariants).
    if program.organization and member.startswith("Practitioner/"):
        participant["onBehalfOf"] = {"reference": program.organization}
    return participant


def case_management_team(
    patient_reference: str,
    practitioner_reference: str | None,
    role_reference: str,
    program: Program,
    *,
    start: str,
) -> dict[str, Any]:
    """A new case-management CareTeam for the patient with its case manager (US Core CareTeam
    shape: status, subject, participant.role and member)."""
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "status": "active",
        "category": [{"coding": [CASE_MANAGEMENT_TEAM_CATEGORY]}],
        "name": f"Case management: {program.name or CASE_MANAGEMENT_MODELS[program.model]}",
        "subject": {"reference": patient_reference},
        "period": {"start": start},
        "participant": [
            case_manager_participant(practitioner_reference, role_reference, program, start=start)
        ],
    }
    if program.organization:
        team["managingOrganization"] = [{"reference": program.organization}]
    return team


def with_case_manager(
    careteam: dict[str, Any],
    practitioner_reference: str | None,
    role_reference: str,
    program: Program,
    *,
    start: str,
) -> dict[str, Any]:
    """A copy of a CareTeam without a case manager, with one added."""
    if has_case_manager(careteam):
        raise ValueError("The CareTeam already has a case manager")
    participant = case_manager_participant(practitioner_reference, role_reference, program, start=start)
    return {**careteam, "participant": [*(careteam.get("participant") or []), participant]}


def current_case_manager(careteam: dict[str, Any]) -> dict[str, Any] | None:
    """The CareTeam's case-manager participant whose period has not ended, if any."""
    for participant in careteam.get("participant") or []:
        if not isinstance(participant, dict) or (participant.get("period") or {}).get("end"):
            continue
        if set(_codings(participant.get("role"))) & CASE_MANAGER_ROLE_CODES and (
            participant.get("member") or {}
        ).get("reference"):
            return participant
    return None


def has_case_manager(careteam: dict[str, Any]) -> bool:
    return current_case_manager(careteam) is not None


def participant_reference(participant: dict[str, Any], url: str) -> str | None:
    """The reference in one of the participant's extensions (PARTICIPANT_ROLE, ..._PROGRAM)."""
    for extension in participant.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == url:
            reference = (extension.get("valueReference") or {}).get("reference")
            return reference if isinstance(reference, str) else None
    return None


def case_manager_references(participant: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(Practitioner reference, PractitionerRole id, program id) of a case-manager participant."""
    member = str((participant.get("member") or {}).get("reference") or "")
    role = participant_reference(participant, PARTICIPANT_ROLE) or member
    program = participant_reference(participant, PARTICIPANT_PROGRAM) or ""
    return (
        member if member.startswith("Practitioner/") else None,
        _reference({"reference": role}, "PractitionerRole"),
        _reference({"reference": program}, "HealthcareService"),
    )


def without_case_manager(careteam: dict[str, Any], *, end: str) -> dict[str, Any]:
    """A copy of the CareTeam whose current case manager's period ends at `end`."""
    current = current_case_manager(careteam)
    participants: list[Any] = []
    for participant in careteam.get("participant") or []:
        if current is not None and participant is current:
            participant = {**current, "period": {**(current.get("period") or {}), "end": end}}
        participants.append(participant)
    return {**careteam, "participant": participants}
