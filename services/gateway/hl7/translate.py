"""HL7 v2 message -> FHIR R4 transaction Bundle plus a conversion report.

Which segments make which resources follows the HL7 V2-to-FHIR implementation guide
(hl7.fhir.uv.v2mappings 1.0.0, message maps ADT_A01, ADT_A03, ADT_A40 (MRG), REF_I12, ORU_R01,
SIU_S12): PID/PD1 -> Patient, NK1 -> RelatedPerson, PV1/PV2 -> Encounter, DG1 -> Condition,
ORC/OBR -> ServiceRequest and DiagnosticReport, OBX -> Observation, RF1 + PRD -> ServiceRequest
with Practitioner and Organization, SCH/AIS/AIP/AIL -> Appointment, MRG -> a merge of two Patients
(Patient.link). The segment mappers live in `services.gateway.hl7.segments`.

The Bundle is what the gateway publishes for the owning services (intake: Patient, RelatedPerson,
Encounter, Condition, Observation; careplan: Appointment; referral: ServiceRequest, Practitioner,
Organization), each entry a conditional update on the resource's business identifier; see
`services.gateway.hl7.context` for identity and `shared.fhir.inbound` for how owners apply it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.gateway.hl7.context import (
    Context,
    Identity,
    Output,
    TranslationError,
    conditional_url,
)
from services.gateway.hl7.er7 import Message
from services.gateway.hl7.segments import orders, patient, referral, scheduling, visit
from shared.fhir.ownership import OWNER_OF

#: HL7 table 0357, message error condition codes used when a message cannot be translated.
ERR_REQUIRED_SEGMENT_MISSING = ("100", "Segment sequence error")
ERR_UNSUPPORTED_MESSAGE_TYPE = ("200", "Unsupported message type")
ERR_UNSUPPORTED_EVENT_CODE = ("201", "Unsupported event code")

#: Event code -> structure where MSH-9.3 is empty (v2.3 and earlier have no MSH-9.3), from the
#: standard's message structure tables (v2.5.1 Chapter 3, 3.3; Chapter 7, 7.3; Chapter 10).
_STRUCTURE_BY_EVENT = {
    **dict.fromkeys(("A01", "A04", "A08", "A13"), "ADT_A01"),
    "A02": "ADT_A02",
    "A03": "ADT_A03",
    "A05": "ADT_A05",
    "A11": "ADT_A09",
    "A28": "ADT_A05",
    "A31": "ADT_A05",
    "A40": "ADT_A39",
    **dict.fromkeys(("I12", "I13", "I14"), "REF_I12"),
    "R01": "ORU_R01",
    "O01": "ORM_O01",
    "O21": "OML_O21",
    **dict.fromkeys(("S12", "S13", "S14", "S15", "S17", "S26"), "SIU_S12"),
}

#: What each supported message type and trigger produces.
ADT_WITH_VISIT = frozenset({"A01", "A02", "A03", "A04", "A05", "A08", "A11", "A13"})
ADT_REGISTRATION = frozenset({"A28", "A31"})  # person information, no visit
SUPPORTED: dict[str, frozenset[str]] = {
    "ADT": ADT_WITH_VISIT | ADT_REGISTRATION | {"A40"},
    "REF": frozenset({"I12", "I13", "I14"}),
    "ORU": frozenset({"R01"}),
    "ORM": frozenset({"O01"}),
    "OML": frozenset({"O21"}),
    "SIU": frozenset({"S12", "S13", "S14", "S15", "S17", "S26"}),
}


@dataclass(frozen=True, slots=True)
class Translation:
    bundle: dict[str, Any]
    report: dict[str, Any]
    #: The Kafka record key: the patient's business identifier (system|value), so one
    #: patient's messages stay in order (DESIGN.md, Events; the logical id is intake's to assign).
    patient_key: str | None

    @property
    def owners(self) -> list[str]:
        """The services that own something in the Bundle (intake owns a merge)."""
        owners = {p["owner"] for p in self.report["produced"]}
        if self.report["merges"]:
            owners.add("intake")
        return sorted(o for o in owners if o)


def structure_of(message_type: str, trigger: str, declared: str) -> str:
    if declared:
        return declared
    return _STRUCTURE_BY_EVENT.get(trigger, f"{message_type}_{trigger}" if trigger else message_type)


def new_context(
    message: Message,
    *,
    timezone: str = "UTC",
    source: str = "",
) -> Context:
    msh = message.msh
    mtype = msh.field(9)
    message_type, trigger = mtype.get(1), mtype.get(2)
    return Context(
        message=message,
        message_type=message_type,
        trigger=trigger,
        structure=structure_of(message_type, trigger, mtype.get(3)),
        version=msh.get(12, 1),
        sending_application=msh.get(3, 1),
        sending_facility=msh.get(4, 1),
        control_id=msh.get(10),
        timezone=timezone,
        source=source,
    )


def check_supported(ctx: Context) -> None:
    triggers = SUPPORTED.get(ctx.message_type)
    if triggers is None:
        raise TranslationError(
            ERR_UNSUPPORTED_MESSAGE_TYPE,
            f"CareBridge does not take {ctx.message_type} messages (it takes {', '.join(sorted(SUPPORTED))})",
            "MSH^1^9^1",
        )
    if ctx.trigger not in triggers:
        raise TranslationError(
            ERR_UNSUPPORTED_EVENT_CODE,
            f"CareBridge does not take {ctx.message_type}^{ctx.trigger} (it takes "
            f"{', '.join(sorted(triggers))})",
            "MSH^1^9^2",
        )


def translate(message: Message, *, timezone: str = "UTC", source: str = "") -> Translation:
    """Translate one parsed message; raises TranslationError for what cannot be translated."""
    ctx = new_context(message, timezone=timezone, source=source)
    check_supported(ctx)
    patient_identity = _MAPPERS[ctx.message_type](ctx)
    return Translation(bundle(ctx), report(ctx), patient_identity.token if patient_identity else None)


# --- per message type ----------------------------------------------------------------------------


def _require_patient(ctx: Context) -> tuple[dict[str, Any], Identity]:
    mapped = patient.map_patient(ctx)
    if mapped is None:
        raise TranslationError(
            ERR_REQUIRED_SEGMENT_MISSING,
            f"{ctx.message_type}^{ctx.trigger} needs a PID segment with a patient identifier (PID-3)",
            "PID",
        )
    return mapped


def _adt(ctx: Context) -> Identity:
    patient_ref, identity = _require_patient(ctx)
    if ctx.trigger == "A40":
        patient.map_merges(ctx, identity)
        return identity
    encounter_ref = visit.map_encounter(ctx, patient_ref) if ctx.trigger in ADT_WITH_VISIT else None
    visit.map_diagnoses(ctx, patient_ref, encounter_ref)
    orders.map_observations(ctx, patient_ref, encounter_ref)
    return identity


def _visit_of(ctx: Context, patient_ref: dict[str, Any]) -> dict[str, Any] | None:
    """The visit a non-ADT message belongs to, created if unknown but never changed by it."""
    encounter_ref = visit.map_encounter(ctx, patient_ref)
    for produced in ctx.out.produced:
        if produced.resource_type == "Encounter":
            produced.create_only = True
    return encounter_ref


def _ref(ctx: Context) -> Identity:
    patient_ref, identity = _require_patient(ctx)
    encounter_ref = _visit_of(ctx, patient_ref)
    condition_refs = visit.map_diagnoses(ctx, patient_ref, encounter_ref)
    referral.map_referral(ctx, patient_ref, encounter_ref, condition_refs)
    orders.map_observations(ctx, patient_ref, encounter_ref)
    return identity


def _orders(ctx: Context) -> Identity:
    patient_ref, identity = _require_patient(ctx)
    encounter_ref = _visit_of(ctx, patient_ref)
    orders.map_orders(ctx, patient_ref, encounter_ref)
    return identity


def _siu(ctx: Context) -> Identity:
    patient_ref, identity = _require_patient(ctx)
    encounter_ref = _visit_of(ctx, patient_ref)
    scheduling.map_appointment(ctx, patient_ref, encounter_ref)
    return identity


_MAPPERS: dict[str, Callable[[Context], Identity]] = {
    "ADT": _adt,
    "REF": _ref,
    "ORU": _orders,
    "ORM": _orders,
    "OML": _orders,
    "SIU": _siu,
}


# --- the Bundle and the report -------------------------------------------------------------------


def bundle(ctx: Context) -> dict[str, Any]:
    """A transaction Bundle of conditional updates (conditional creates for what the message only
    refers to), then the merges (intake's `$merge`)."""
    entries: list[dict[str, Any]] = []
    for produced in ctx.out.produced:
        resource = produced.resource
        if ctx.source:
            resource = {**resource, "meta": {**resource.get("meta", {}), "source": ctx.source}}
        url = conditional_url(produced.resource_type, produced.identity)
        if produced.create_only:
            request = {"method": "POST", "url": produced.resource_type, "ifNoneExist": url.partition("?")[2]}
        else:
            request = {"method": "PUT", "url": url}
        entries.append({"resource": resource, "request": request})
    for source, target in ctx.out.merges:
        entries.append(merge_entry(source, target))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def merge_entry(source: Identity, target: Identity) -> dict[str, Any]:
    """The merge instruction, in the shape of FHIR's Patient `$merge` operation (R5
    patient-operation-merge): the source record is replaced by the target."""
    return {
        "resource": {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "source-patient-identifier", "valueIdentifier": source.as_identifier()},
                {"name": "target-patient-identifier", "valueIdentifier": target.as_identifier()},
            ],
        },
        "request": {"method": "POST", "url": "Patient/$merge"},
    }


def report(ctx: Context) -> dict[str, Any]:
    """Which segments and fields were mapped and which were not, what was produced, and any
    warnings: stored with the message and readable at GET /hl7v2/messages/{id}."""
    segments = []
    for segment in ctx.message.segments:
        populated = segment.populated()
        mapped = [n for n in populated if n in segment.accessed]
        unmapped = [n for n in populated if n not in segment.accessed]
        segments.append(
            {
                "segment": segment.name,
                "position": segment.index,
                "mapped": [f"{segment.name}-{n}" for n in mapped],
                "unmapped": [f"{segment.name}-{n}" for n in unmapped],
            }
        )
    produced = [
        {
            "resourceType": p.resource_type,
            "identifier": p.identity.token,
            "from": p.segment,
            "owner": OWNER_OF.get(p.resource_type),
        }
        for p in ctx.out.produced
    ]
    merges = [{"source": s.token, "target": t.token} for s, t in ctx.out.merges]
    return {
        "messageType": f"{ctx.message_type}^{ctx.trigger}",
        "structure": ctx.structure,
        "version": ctx.version,
        "segments": segments,
        "produced": produced,
        "merges": merges,
        "issues": [i.as_dict() for i in ctx.issues],
    }


__all__ = ["Output", "Translation", "TranslationError", "translate"]
