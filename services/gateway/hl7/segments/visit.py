"""PV1/PV2 -> Encounter; DG1 -> Condition and Encounter.diagnosis.

Follows the V2-to-FHIR IG segment maps PV1[Encounter], PV2[Encounter], DG1[Condition] and
DG1[Encounter] (hl7.fhir.uv.v2mappings 1.0.0), with the status of the visit read from the
trigger event (IG ConceptMap "Event[EncounterStatus]", see `tables.ENCOUNTER_STATUS_BY_EVENT`).

A psychiatric stay is one Encounter across its messages: the A01 that opens it, A08 updates,
and the A03 that ends it all carry the same visit number (PV1-19), so they update one resource
(`Output.add` and the owner's conditional update key it by that identifier), and the A03 lays
status "finished", period.end and the discharge disposition over what the A01 wrote. An A13
takes them back: it writes period without end and hospitalization without the discharge
elements, which replace the stored ones (top-level elements replace, `shared.fhir.inbound`).
"""

from __future__ import annotations

from typing import Any

from services.gateway.hl7 import tables
from services.gateway.hl7.context import Context, Identity, Produced, conditional_url, segment_label
from services.gateway.hl7.datatypes import (
    codeable_concept,
    entity_identifier,
    identifier,
    identity_of,
    location_display,
    period,
    practitioner_reference,
)
from services.gateway.hl7.er7 import Segment, Timestamp

#: Triggers that take back a discharge (A13 cancel discharge / end visit).
_CANCEL_DISCHARGE = "A13"


def _produced(ctx: Context, resource_type: str, ref: dict[str, Any] | None) -> Produced | None:
    """The resource of this message a conditional reference points at."""
    if not ref:
        return None
    url = ref.get("reference")
    for produced in ctx.out.produced:
        if (
            produced.resource_type == resource_type
            and conditional_url(resource_type, produced.identity) == url
        ):
            return produced
    return None


# --- identity -------------------------------------------------------------------------------


def _visit_identifiers(pv1: Segment, ctx: Context) -> list[dict[str, Any]]:
    """PV1-19 visit number (type VN when the sender gives none, IG PV1[Encounter]), then the
    alternate visit ids PV1-50. Without an assigning authority a visit number is unique within
    the sending facility."""
    out: list[dict[str, Any]] = []
    visit = identifier(pv1.field(19), ctx, default_system=ctx.facility_system("visit"))
    if visit is not None:
        visit.setdefault("type", _visit_number_type())
        out.append(visit)
    for rep in pv1.repetitions(50):
        alternate = identifier(rep, ctx, default_system=ctx.facility_system("alternate-visit"))
        if alternate is not None:
            out.append(alternate)
    return out


def _visit_number_type() -> dict[str, Any]:
    return {"coding": [{"system": tables.v2_system("0203"), "code": "VN", "display": "Visit number"}]}


def _encounter_identity(
    identifiers: list[dict[str, Any]], admitted: Timestamp | None, ctx: Context, patient: Identity | None
) -> Identity | None:
    """PV1-19, else PV1-50, else the patient and the admit time PV1-44 (one patient is not
    admitted twice at the same instant); None when the visit has none of them."""
    for ident in identifiers:
        if (identity := identity_of(ident)) is not None:
            return identity
    if admitted is not None and admitted.value and patient is not None:
        return ctx.local_identity("visit", patient.token, admitted.value)
    return None


# --- status ---------------------------------------------------------------------------------


def _status(ctx: Context, patient_class: str, discharged: bool) -> str:
    """Encounter.status. An ADT event that says what happened to the visit decides it
    (`tables.ENCOUNTER_STATUS_BY_EVENT`). Any other message - A08, and the ORU/ORM/OML/REF/SIU
    messages that only refer to a visit - follows the IG's PV1 segment rule: finished when PV1-45
    (discharge) is valued, else by patient class (table 0004: P planned, U unknown, others
    in-progress); a visit without a class is taken to be in progress, as the message is about it.
    A result or referral after discharge that omits PV1-45 therefore says in-progress; the owner
    should not let such a message reopen a finished stay."""
    if ctx.message_type == "ADT" and ctx.trigger in tables.ENCOUNTER_STATUS_BY_EVENT:
        return tables.ENCOUNTER_STATUS_BY_EVENT[ctx.trigger]
    if discharged:
        return "finished"
    return tables.PATIENT_CLASS_STATUS.get(patient_class, "in-progress")


def _encounter_class(patient_class: str, ctx: Context) -> dict[str, str]:
    """PV1-2 -> Encounter.class (IG ConceptMap "Table HL70004 to V3 ActCode"). A class outside
    table 0004 stays a code of the sender's; a missing one (PV1-2 is required) is UNK, because
    Encounter.class is 1..1."""
    if patient_class in tables.PATIENT_CLASS:
        system, code, display = tables.PATIENT_CLASS[patient_class]
        return {"system": system, "code": code, "display": display}
    if patient_class:
        return {"system": tables.v2_system("0004"), "code": patient_class}
    ctx.warn("PV1-2", "no patient class; Encounter.class is UNK")
    return {"system": tables.V3_NULL_FLAVOR, "code": "UNK", "display": "unknown"}


# --- elements -------------------------------------------------------------------------------


def _locations(pv1: Segment, status: str, patient_class: str) -> list[dict[str, Any]]:
    """PV1-3 assigned location (planned for a preadmit, IG PV1[Encounter]; completed once the
    visit is finished, CareBridge's reading), and PV1-6 prior location (completed), e.g. the
    unit an A02 transfers from. Locations are text: no Location resources are made."""
    out: list[dict[str, Any]] = []
    if assigned := location_display(pv1.field(3)):
        state = "planned" if patient_class == "P" else "completed" if status == "finished" else "active"
        out.append({"location": {"display": assigned}, "status": state})
    if prior := location_display(pv1.field(6)):
        out.append({"location": {"display": prior}, "status": "completed"})
    return out


def _participants(pv1: Segment, ctx: Context) -> list[dict[str, Any]]:
    """PV1-7 attending, PV1-8 referring, PV1-9 consulting, PV1-17 admitting, PV1-52 other
    (IG PV1[Encounter], v3-ParticipationType), each a logical Practitioner reference."""
    out: list[dict[str, Any]] = []
    for field, (code, display) in tables.PARTICIPANT_TYPE.items():
        for rep in pv1.repetitions(field):
            individual = practitioner_reference(rep, ctx)
            if individual is not None:
                kind = {
                    "coding": [{"system": tables.V3_PARTICIPATION_TYPE, "code": code, "display": display}]
                }
                out.append({"type": [kind], "individual": individual})
    return out


def _hospitalization(pv1: Segment, ctx: Context, cancel_discharge: bool) -> dict[str, Any]:
    """PV1-5 preadmit number, PV1-14 admit source (0023), PV1-13 re-admission (0092), PV1-36
    discharge disposition (0112, kept as v2 codes: the IG's map has no v2 source codes) and
    PV1-37 discharged-to location (IG PV1[Encounter]). An A13 leaves the discharge out."""
    out: dict[str, Any] = {}
    if preadmit := identifier(pv1.field(5), ctx, default_system=ctx.facility_system("preadmit")):
        out["preAdmissionIdentifier"] = preadmit
    if source := codeable_concept(pv1.field(14), ctx, table="0023"):
        out["admitSource"] = source
    if readmission := codeable_concept(pv1.field(13), ctx, table="0092"):
        out["reAdmission"] = readmission
    if cancel_discharge:
        return out
    if disposition := codeable_concept(pv1.field(36), ctx, table="0112"):
        out["dischargeDisposition"] = disposition
    if destination := pv1.get(37):
        out["destination"] = {"display": destination}
    return out


def _pv2(pv2: Segment | None, ctx: Context, body: dict[str, Any]) -> None:
    """PV2-3 admit reason -> reasonCode; PV2-8/PV2-9 expected admit/discharge -> the R5
    plannedStartDate/plannedEndDate extensions (IG PV2[Encounter])."""
    if pv2 is None:
        return
    if reason := codeable_concept(pv2.field(3), ctx):
        body["reasonCode"] = [reason]
    extensions = []
    for field, url in ((8, tables.ENCOUNTER_PLANNED_START), (9, tables.ENCOUNTER_PLANNED_END)):
        planned = ctx.timestamp(pv2.field(field), f"PV2-{field}")
        if planned is not None and planned.value:
            extensions.append({"url": url, "valueDateTime": planned.value})
    if extensions:
        body["extension"] = extensions


# --- Encounter ------------------------------------------------------------------------------


def map_encounter(ctx: Context, patient_ref: dict[str, Any]) -> dict[str, Any] | None:
    """PV1 (+ PV2) -> Encounter; returns its conditional reference, or None when the message
    has no PV1 or the PV1 identifies no visit (no PV1-19, PV1-50 or PV1-44)."""
    pv1 = ctx.message.first("PV1")
    if pv1 is None:
        return None
    identifiers = _visit_identifiers(pv1, ctx)
    admitted = ctx.timestamp(pv1.field(44), "PV1-44")
    patient = _produced(ctx, "Patient", patient_ref)
    identity = _encounter_identity(identifiers, admitted, ctx, patient.identity if patient else None)
    if identity is None:
        ctx.warn(
            "PV1-19",
            "no visit number (PV1-19), alternate visit id (PV1-50) or admit time (PV1-44); no Encounter",
        )
        return None
    body = _encounter_body(pv1, ctx, patient_ref, identifiers, admitted)
    _pv2(ctx.message.first("PV2"), ctx, body)
    return ctx.out.add("Encounter", body, identity, segment_label(pv1))


def _encounter_body(
    pv1: Segment,
    ctx: Context,
    patient_ref: dict[str, Any],
    identifiers: list[dict[str, Any]],
    admitted: Timestamp | None,
) -> dict[str, Any]:
    patient_class = pv1.get(2).upper()
    discharged = ctx.timestamp(pv1.field(45), "PV1-45")
    cancel_discharge = ctx.message_type == "ADT" and ctx.trigger == _CANCEL_DISCHARGE
    status = _status(ctx, patient_class, discharged is not None and bool(discharged.value))
    if status == "finished" and discharged is None and ctx.trigger == "A03":
        ctx.warn("PV1-45", "a discharge (A03) without a discharge date/time; period.end left out")
    body: dict[str, Any] = {
        "identifier": identifiers,
        "status": status,
        "class": _encounter_class(patient_class, ctx),
        "subject": patient_ref,
    }
    types = [
        t
        for t in (codeable_concept(pv1.field(4), ctx, table="0007"), codeable_concept(pv1.field(18), ctx))
        if t
    ]
    if types:
        body["type"] = types
    if service := codeable_concept(pv1.field(10), ctx, table="0069"):
        body["serviceType"] = service
    visit_period = period(admitted, None if cancel_discharge else discharged)
    if visit_period or cancel_discharge:
        # An A13 always writes period: without end it replaces the stored one (None if no start).
        body["period"] = visit_period
        if cancel_discharge and visit_period is None:
            ctx.warn(
                "PV1-44", "a cancelled discharge (A13) without an admit time; the whole period is removed"
            )
    hospitalization = _hospitalization(pv1, ctx, cancel_discharge)
    if hospitalization or cancel_discharge:
        body["hospitalization"] = hospitalization or None
    if locations := _locations(pv1, status, patient_class):
        body["location"] = locations
    if participants := _participants(pv1, ctx):
        body["participant"] = participants
    return body


# --- DG1 -> Condition -----------------------------------------------------------------------


def map_diagnoses(
    ctx: Context, patient_ref: dict[str, Any], encounter_ref: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Each DG1 -> a Condition (IG DG1[Condition]); returns their references. With a visit,
    the diagnoses also go on the Encounter (IG DG1[Encounter]): diagnosis.condition, .use from
    DG1-6 and .rank from DG1-15 (table 0359: 1 is the principal diagnosis HEDIS FUH reads)."""
    segments = ctx.message.all("DG1")
    if not segments:
        return []
    encounter = _produced(ctx, "Encounter", encounter_ref)
    patient = _produced(ctx, "Patient", patient_ref)
    scope = encounter.identity.token if encounter else patient.identity.token if patient else ""
    refs: list[dict[str, Any]] = []
    diagnoses: dict[str, dict[str, Any]] = {}
    for dg1 in segments:
        ref = _add_condition(dg1, ctx, patient_ref, encounter_ref, scope)
        if ref is None:
            continue
        refs.append(ref)
        entry = _encounter_diagnosis(dg1, ref)
        earlier = diagnoses.get(ref["reference"])
        if earlier is None or entry.get("rank", 1 << 30) < earlier.get("rank", 1 << 30):
            diagnoses[ref["reference"]] = entry
    if encounter is not None and diagnoses:
        ctx.out.add(
            "Encounter",
            {"identifier": encounter.resource["identifier"], "diagnosis": list(diagnoses.values())},
            encounter.identity,
            encounter.segment,
        )
    return refs


def _encounter_diagnosis(dg1: Segment, condition_ref: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"condition": condition_ref}
    kind = dg1.get(6).upper()
    if kind:
        codings = []
        if role := tables.DIAGNOSIS_ROLE_BY_TYPE.get(kind):
            codings.append({"system": role[0], "code": role[1], "display": role[2]})
        v2 = {"system": tables.v2_system("0052"), "code": kind}
        if kind in tables.DIAGNOSIS_TYPE:
            v2["display"] = tables.DIAGNOSIS_TYPE[kind]
        codings.append(v2)
        entry["use"] = {"coding": codings}
    priority = dg1.get(15)
    if priority.isdigit() and int(priority) > 0:  # table 0359: 0 is not ranked
        entry["rank"] = int(priority)
    return entry


def _diagnosis_code(dg1: Segment, ctx: Context) -> dict[str, Any] | None:
    """DG1-3 (CWE; a CE in v2.3) with DG1-4, the v2.3-era description, as its text
    (IG DG1[Condition]: DG1-4 -> code.text)."""
    code = codeable_concept(dg1.field(3), ctx)
    description = dg1.get(4)
    if description:
        code = {**(code or {}), "text": description}
    return code


def _condition_identity(dg1: Segment, code: dict[str, Any], ctx: Context, scope: str) -> Identity:
    """DG1-20 diagnosis identifier when sent; else the visit (or patient) and the code, so a
    resend or an A08 with the same diagnosis updates the same Condition."""
    sent = entity_identifier(dg1.field(20), ctx, default_system=ctx.facility_system("diagnosis"))
    if (identity := identity_of(sent)) is not None:
        return identity
    first = (code.get("coding") or [{}])[0]
    system = first.get("system") or dg1.field(3).get(3)
    return ctx.local_identity("diagnosis", scope, system, first.get("code") or code.get("text", ""))


def _verification(dg1: Segment) -> str | None:
    """DG1-21 "D" (delete) -> entered-in-error (IG DG1[Condition]); else from DG1-6
    (`tables.VERIFICATION_BY_DIAGNOSIS_TYPE`)."""
    if dg1.get(21).upper() == "D":
        return "entered-in-error"
    return tables.VERIFICATION_BY_DIAGNOSIS_TYPE.get(dg1.get(6).upper())


def _add_condition(
    dg1: Segment, ctx: Context, patient_ref: dict[str, Any], encounter_ref: dict[str, Any] | None, scope: str
) -> dict[str, Any] | None:
    code = _diagnosis_code(dg1, ctx)
    if code is None:
        ctx.warn(f"DG1[{dg1.index}]-3", "no diagnosis code; no Condition")
        return None
    verification = _verification(dg1)
    body: dict[str, Any] = {
        # con-5: an entered-in-error Condition has no clinical status (None removes a stored one).
        "clinicalStatus": None
        if verification == "entered-in-error"
        else _concept(tables.CONDITION_CLINICAL, "active"),
        "category": [_concept(tables.CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
        "code": code,
        "subject": patient_ref,
    }
    if verification:
        body["verificationStatus"] = _concept(tables.CONDITION_VER_STATUS, verification)
    if encounter_ref is not None:
        body["encounter"] = encounter_ref
    if (onset := ctx.timestamp(dg1.field(5), "DG1-5")) is not None and onset.value:
        body["onsetDateTime"] = onset.value
    if (recorded := ctx.timestamp(dg1.field(19), "DG1-19")) is not None and recorded.value:
        body["recordedDate"] = recorded.value
    if asserter := practitioner_reference(dg1.field(16), ctx):
        body["asserter"] = asserter
    identity = _condition_identity(dg1, code, ctx, scope)
    return ctx.out.add("Condition", body, identity, segment_label(dg1))


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


__all__ = ["map_diagnoses", "map_encounter"]
