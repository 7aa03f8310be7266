"""ORC/OBR -> ServiceRequest and DiagnosticReport; OBX -> Observation.

Follows the V2-to-FHIR IG (hl7.fhir.uv.v2mappings 1.0.0): message maps ORU_R01, ORM_O01 and
OML_O21; segment maps ORC[ServiceRequest], OBR[ServiceRequest], OBR[DiagnosticReport],
OBX[Observation] and NTE[Observation]; the ConceptMaps behind `tables` for tables 0038, 0119,
0123, 0085 and 0078.

Ownership decides the references (DESIGN.md, "Services and what each owns"): Observation and
DiagnosticReport are intake's, like Patient and Encounter, so theirs are conditional references
intake resolves; ServiceRequest and Practitioner are referral's, so a reference across that line
(DiagnosticReport.basedOn, Observation.basedOn and performer, ServiceRequest.encounter) is a
logical one, by identifier (R4 references.html#logical), which no owner has to resolve.

The value of a result (OBX-2, OBX-5, OBX-6) is read by the functions at the end of the module.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from services.gateway.hl7 import tables
from services.gateway.hl7.context import Context, Identity, segment_label
from services.gateway.hl7.datatypes import (
    codeable_concept,
    entity_identifier,
    identifier,
    identity_of,
    organization_name_and_id,
    practitioner_reference,
    quantity,
)
from services.gateway.hl7.er7 import Segment, Value

#: Message types whose ORC/OBR groups are orders (map_orders); in the others every OBX is a
#: result of its own (map_observations).
ORDER_MESSAGES = frozenset({"ORU", "ORM", "OML"})

#: Segments of the patient and visit: one of them ends an order group (ORU_R01 PATIENT_RESULT,
#: ORM_O01 PATIENT, OML_O21 PATIENT; v2.5.1 7.3.1, 4.4.1, 4.4.6).
_ENDS_ORDER = frozenset(
    {"MSH", "SFT", "PID", "PD1", "PV1", "PV2", "NK1", "IN1", "IN2", "IN3", "GT1", "AL1", "ARV"}
)

_V2_0203 = tables.v2_system("0203")
_V2_0074 = tables.v2_system("0074")
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
_LOINC = "http://loinc.org"
#: The R5 Observation.value[x] carried into R4 (FHIR cross-version extensions), for ED and RP
#: values, as the IG's OBX[Observation] map does (R4 value[x] has no Attachment).
_VALUE_ATTACHMENT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value"

#: The LOINC codes of the R4 vital signs profile (observation-vitalsigns.html, "Vital Signs"
#: table): a result with one of these codes is in category vital-signs.
VITAL_SIGN_CODES = frozenset(
    {
        "85353-1",  # vital signs panel
        "9279-1",  # respiratory rate
        "8867-4",  # heart rate
        "2708-6",  # oxygen saturation
        "59408-5",  # oxygen saturation by pulse oximetry
        "8310-5",  # body temperature
        "8302-2",  # body height
        "9843-4",  # head circumference
        "29463-7",  # body weight
        "39156-5",  # body mass index
        "85354-9",  # blood pressure panel
        "8480-6",  # systolic blood pressure
        "8462-4",  # diastolic blood pressure
    }
)

#: LOINC codes of the screening instruments CareBridge scores (PHQ-9, PHQ-2, GAD-7, AUDIT-C
#: panels and total scores): such a result is in category survey.
SURVEY_CODES = frozenset(
    {"44249-1", "44261-6", "55757-9", "55758-7", "69737-5", "70274-6", "72109-2", "75626-2"}
)

#: OBR-24 diagnostic service section (table 0074) -> observation-category of the results. The
#: IG maps OBR-24 only to DiagnosticReport.category; the sections not listed are laboratory.
_CATEGORY_BY_SECTION = {
    **dict.fromkeys(("RAD", "RX", "CT", "NMR", "NMS", "RUS", "OUS", "CUS", "VUS", "XRC"), "imaging"),
    **dict.fromkeys(("PT", "OT", "RT", "RC"), "therapy"),
    **dict.fromkeys(("EC", "EN", "PF", "ICU", "CTH", "AU"), "procedure"),
    **dict.fromkeys(("PHY", "NRS"), "exam"),
}

#: Table 0027 priority (TQ1-9, or TQ-6 in ORC-7/OBR-27) -> request-priority; P (preop),
#: C (callback), T (timing critical) and PRN have no FHIR counterpart.
_PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}


# --- references and notes (shared with referral and scheduling) ------------------------------


def logical_reference(ref: dict[str, Any] | None, resource_type: str) -> dict[str, Any] | None:
    """A conditional reference (`Type?identifier=system|value`, see context.reference) turned
    into a logical one {identifier, type}, for a resource another service owns."""
    if not ref:
        return None
    _, found, token = ref.get("reference", "").partition("identifier=")
    system, bar, value = unquote(token).partition("|")
    if not found or not bar or not value:
        return None
    out: dict[str, Any] = {"identifier": {"system": system, "value": value.replace("\\,", ",")}}
    if display := ref.get("display"):
        out["display"] = display
    out["type"] = resource_type
    return out


def local_identity(ctx: Context, kind: str, *parts: str) -> Identity:
    """Context.local_identity with any "|" in the parts (e.g. another identity's token) written
    as ":", as a search token's value may not hold an unescaped "|" (R4 search.html#token)."""
    return ctx.local_identity(kind, *(p.replace("|", ":") for p in parts))


def identity_reference(identity: Identity, resource_type: str) -> dict[str, Any]:
    """A logical reference to a resource of another service by its business identifier."""
    return {"identifier": identity.as_identifier(), "type": resource_type}


def note_text(nte: Segment) -> str:
    """NTE-3 (FT, repeating) as one text; escapes decoded, \\.br\\ as new lines."""
    return "\n".join(rep.full_text.strip() for rep in nte.repetitions(3)).strip()


def note_annotations(ntes: Iterable[Segment]) -> list[dict[str, str]]:
    """NTE segments -> Annotations (IG NTE[Observation]: NTE-3 -> note.text)."""
    return [{"text": text} for nte in ntes if (text := note_text(nte))]


# --- grouping -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Result:
    obx: Segment
    notes: list[Segment] = field(default_factory=list)


@dataclass(slots=True)
class _Order:
    """One ORDER_OBSERVATION group: an ORC, its OBR, their NTEs and the results under them."""

    orc: Segment | None = None
    obr: Segment | None = None
    notes: list[Segment] = field(default_factory=list)
    timing: Segment | None = None  # the first TQ1
    results: list[_Result] = field(default_factory=list)

    @property
    def label(self) -> str:
        segment = self.obr or self.orc
        return segment_label(segment) if segment is not None else "ORC"


def _order_groups(segments: Sequence[Segment]) -> tuple[list[_Order], list[_Result]]:
    """The order groups in message order, and the OBX that belong to none. An ORC opens a group
    and the next OBR joins it; an OBR with no ORC of its own opens one. An NTE belongs to the
    segment before it: an ORC/OBR (order notes), an OBX (result notes) or anything else
    (e.g. specimen notes after an SPM, not mapped)."""
    orders: list[_Order] = []
    loose: list[_Result] = []
    current: _Order | None = None
    notes_to: list[Segment] | None = None
    for segment in segments:
        name = segment.name
        if name == "ORC":
            current = _Order(orc=segment)
            orders.append(current)
            notes_to = current.notes
        elif name == "OBR":
            if current is None or current.obr is not None:
                current = _Order()
                orders.append(current)
            current.obr = segment
            notes_to = current.notes
        elif name == "OBX":
            result = _Result(segment)
            (current.results if current is not None else loose).append(result)
            notes_to = result.notes
        elif name == "NTE":
            if notes_to is not None:
                notes_to.append(segment)
        elif name in _ENDS_ORDER:
            current, notes_to = None, None
        else:
            if name == "TQ1" and current is not None and current.timing is None:
                current.timing = segment
            notes_to = None
    return orders, loose


# --- identity -----------------------------------------------------------------------------


def _order_identifier(ei: Value, kind: str, ctx: Context) -> dict[str, Any] | None:
    """An EI order number as an Identifier typed PLAC or FILL (IG ORC/OBR[ServiceRequest]);
    without a namespace it is unique within the sending facility."""
    ident = entity_identifier(ei, ctx, default_system=ctx.facility_system(f"order-{kind.lower()}"))
    if ident is not None:
        ident["type"] = {"coding": [{"system": _V2_0203, "code": kind}]}
    return ident


def _order_numbers(order: _Order, ctx: Context) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(placer, filler): ORC-2/ORC-3, else OBR-2/OBR-3 (IG: OBR's when the ORC's are empty)."""
    found: list[dict[str, Any] | None] = []
    for number, kind in ((2, "PLAC"), (3, "FILL")):
        ident = None
        for segment in (order.orc, order.obr):
            if segment is not None and ident is None:
                ident = _order_identifier(segment.field(number), kind, ctx)
        found.append(ident)
    return found[0], found[1]


def _other_numbers(order: _Order, ctx: Context) -> list[dict[str, Any]]:
    """ORC-4 placer group number (EIP's placer part, or an EI before v2.6; typed PGN) and the
    alternate placer order numbers OBR-53, else ORC-33 (CX, typed PLAC) (IG ORC/OBR
    [ServiceRequest] identifier[3..5])."""
    out: list[dict[str, Any]] = []
    if order.orc is not None and (group := order.orc.field(4)):
        sub = ctx.message.encoding.subcomponent
        ei = group[1] if sub in group.raw.split(ctx.message.encoding.component, 1)[0] else group
        if ident := entity_identifier(ei, ctx, default_system=ctx.facility_system("order-group")):
            out.append({**ident, "type": {"coding": [{"system": _V2_0203, "code": "PGN"}]}})
    alternates = order.obr.repetitions(53) if order.obr is not None else []
    if not alternates and order.orc is not None:
        alternates = order.orc.repetitions(33)
    for rep in alternates:
        if ident := identifier(rep, ctx, default_system=ctx.facility_system("order-plac")):
            out.append({**ident, "type": {"coding": [{"system": _V2_0203, "code": "PLAC"}]}})
    return out


def _unused(candidates: Iterable[dict[str, Any] | None], used: set[Identity]) -> Identity | None:
    for ident in candidates:
        identity = identity_of(ident)
        if identity is not None and identity not in used:
            return identity
    return None


def _request_identity(
    order: _Order,
    numbers: tuple[dict[str, Any] | None, ...],
    ctx: Context,
    used: set[Identity],
    position: int,
) -> Identity:
    """The placer order number, else the filler's (IG: ServiceRequest.identifier). Senders give
    one placer number to a requisition of several OBRs (the CDC samples): an order whose numbers
    an earlier order of the message already took is told apart by its test OBR-4 and set id
    OBR-1; an order with no number at all is identified by the message (and warned about)."""
    identity = _unused(numbers, used)
    if identity is None:
        obr = order.obr
        code, set_id = (obr.get(4), obr.get(1)) if obr is not None else ("", "")
        taken = next((i for n in numbers if (i := identity_of(n)) is not None), None)
        if taken is not None:
            identity = local_identity(ctx, "order", taken.token, code, set_id or str(position))
        else:
            ctx.warn(
                order.label, "no placer or filler order number (ORC/OBR-2, -3); identified by the message"
            )
            sender = ctx.sending_facility or ctx.sending_application
            identity = local_identity(ctx, "order", sender, ctx.control_id, set_id or str(position))
    used.add(identity)
    return identity


# --- ServiceRequest -----------------------------------------------------------------------


def _field(order: _Order, orc_field: int, obr_field: int) -> Value | None:
    """An ORC field, else the OBR's counterpart (the IG's "IF ORC-n NOT VALUED" rows)."""
    if order.orc is not None and (value := order.orc.field(orc_field)):
        return value
    if order.obr is not None and (value := order.obr.field(obr_field)):
        return value
    return None


def _request_status(order: _Order, ctx: Context) -> str:
    """ORC-5 order status (table 0038, IG ConceptMap OrderStatus), else ORC-1 order control
    (table 0119, IG ConceptMap OrderControlCode[ServiceRequest.status]); unknown when neither
    says (an OBR without ORC, or RE "observations to follow", which the IG leaves unmapped)."""
    if order.orc is None:
        return "unknown"
    status = order.orc.get(5)
    if status in tables.ORDER_STATUS:
        return tables.ORDER_STATUS[status]
    if status:
        ctx.warn(f"{segment_label(order.orc)} ORC-5", f"order status {status!r} is not in table 0038")
    return tables.ORDER_CONTROL_STATUS.get(order.orc.get(1), "unknown")


def _occurrence(order: _Order, ctx: Context) -> dict[str, Any]:
    """OBR-6 requested date/time -> occurrenceDateTime (IG OBR[ServiceRequest]; OBR-7 is the
    observation time, which the IG keeps off the ServiceRequest), else TQ1-7/TQ1-8 start and
    end -> occurrencePeriod (IG TQ1[ServiceRequest])."""
    if order.obr is not None and (requested := _when(order.obr, 6, ctx)):
        return {"occurrenceDateTime": requested}
    if order.timing is not None:
        span = {k: v for k, n in (("start", 7), ("end", 8)) if (v := _when(order.timing, n, ctx))}
        if span:
            return {"occurrencePeriod": span}
    return {}


def _priority(order: _Order) -> str | None:
    """TQ1-9 priority, else the TQ priority ORC-7.6 / OBR-27.6 of v2.4 and earlier (table 0027)."""
    code = order.timing.field(9).get(1) if order.timing is not None else ""
    if not code and (tq := _field(order, 7, 27)):
        code = tq.get(6)
    return _PRIORITY.get(code.upper())


def _service_request(
    order: _Order,
    numbers: tuple[dict[str, Any] | None, dict[str, Any] | None],
    ctx: Context,
    patient_ref: dict[str, Any],
    encounter_ref: dict[str, Any] | None,
) -> dict[str, Any]:
    obr, orc = order.obr, order.orc
    body: dict[str, Any] = {
        "identifier": [*(i for i in numbers if i), *_other_numbers(order, ctx)],
        "status": _request_status(order, ctx),
        # OBR-11 specimen action G (generated order, reflex) -> reflex-order (IG OBR[ServiceRequest]).
        "intent": "reflex-order" if obr is not None and obr.get(11) == "G" else "order",
    }
    if priority := _priority(order):
        body["priority"] = priority
    if obr is not None and (code := codeable_concept(obr.field(4), ctx)):
        body["code"] = code
    body["subject"] = patient_ref
    # Encounter is intake's: referral, which owns ServiceRequest, cannot resolve a conditional
    # reference to it, so it is a logical reference by the visit number.
    if encounter := logical_reference(encounter_ref, "Encounter"):
        body["encounter"] = encounter
    body.update(_occurrence(order, ctx))
    # ORC-9 is when the order was placed only on a new order (IG: IF ORC-1 IS "NW"); with any
    # other order control (RE, SC, CA...) it is the time of that later transaction.
    if orc is not None and orc.get(1) in ("NW", "") and (authored := _when(orc, 9, ctx)):
        body["authoredOn"] = authored
    if (requester := _field(order, 12, 16)) and (who := practitioner_reference(requester, ctx)):
        body["requester"] = who
    if obr is not None and (
        reasons := [c for rep in obr.repetitions(31) if (c := codeable_concept(rep, ctx))]
    ):
        body["reasonCode"] = reasons
    if notes := note_annotations(order.notes):
        body["note"] = notes
    return body


# --- DiagnosticReport ---------------------------------------------------------------------


def _diagnostic_report(
    obr: Segment,
    numbers: tuple[dict[str, Any] | None, dict[str, Any] | None],
    ctx: Context,
    scope: tuple[dict[str, Any], dict[str, Any] | None],
    order: OrderContext,
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    """IG OBR[DiagnosticReport]: status OBR-25 (table 0123), category OBR-24 (v2-0074; LAB when
    empty), code OBR-4, effective OBR-7/OBR-8, issued OBR-22, resultsInterpreter OBR-32,
    performer OBR-34 (technician); basedOn the order, result the Observations."""
    patient_ref, encounter_ref = scope
    status = obr.get(25)
    if status not in tables.RESULT_STATUS:
        ctx.warn(
            f"{segment_label(obr)} OBR-25", f"result status {status!r} is not in table 0123; status unknown"
        )
    section = obr.get(24)
    category = {"system": _V2_0074, "code": section} if section else {"system": _V2_0074, "code": "LAB"}
    placer, filler = numbers
    body: dict[str, Any] = {
        "identifier": [i for i in (filler, placer) if i],
        "basedOn": [identity_reference(order.order, "ServiceRequest")],
        "status": tables.RESULT_STATUS.get(status, "unknown"),
        "category": [{"coding": [category]}],
    }
    if code := codeable_concept(obr.field(4), ctx):
        body["code"] = code
    body["subject"] = patient_ref
    if encounter_ref:
        body["encounter"] = encounter_ref
    start, end = order.effective, _when(obr, 8, ctx)
    if end:
        body["effectivePeriod"] = {"start": start, "end": end} if start else {"end": end}
    elif start:
        body["effectiveDateTime"] = start
    if order.issued:
        body["issued"] = order.issued
    if interpreter := _ndl_reference(obr.field(32), ctx):
        body["resultsInterpreter"] = [interpreter]
    if performers := [ref for rep in obr.repetitions(34) if (ref := _ndl_reference(rep, ctx))]:
        body["performer"] = performers
    if results:
        body["result"] = results
    return body


def _when(segment: Segment, number: int, ctx: Context) -> str | None:
    """A DTM field as a FHIR dateTime (a bad one is reported by Context.timestamp)."""
    ts = ctx.timestamp(segment.field(number), f"{segment_label(segment)} {segment.name}-{number}")
    return ts.value if ts is not None else None


def _instant(segment: Segment, number: int, ctx: Context) -> str | None:
    """A DTM as a FHIR instant, which needs a time: kept when the DTM gives at least the minute
    (read_timestamp writes missing seconds as :00), left out when it stops at the day or hour,
    as an instant made from a date would claim a precision the sender never had."""
    text = segment.field(number).text
    if len(text) < 12 or not text[:12].isdigit():
        return None
    ts = ctx.timestamp(text, f"{segment_label(segment)} {segment.name}-{number}")
    return ts.datetime if ts is not None else None


def _ndl_reference(ndl: Value, ctx: Context) -> dict[str, Any] | None:
    """NDL (OBR-32..35) -> a logical Practitioner reference. Its first component is a CNN, whose
    parts are subcomponents: id, family, given, middle, suffix, prefix, degree, source table,
    then the assigning authority (namespace, universal id, type)."""
    parts = [p.text for p in ndl[1].parts()] + [""] * 11
    ident_value, family, given = parts[0], parts[1], parts[2]
    display = " ".join(p for p in (given, family) if p)
    if not ident_value and not display:
        return None
    out: dict[str, Any] = {}
    if ident_value:
        hd = Value(ctx.message.encoding.subcomponent.join(parts[8:11]), 1, ctx.message)
        system = ctx.authority_system(hd) or ctx.facility_system("practitioner")
        out["identifier"] = {"system": system, "value": ident_value}
    if display:
        out["display"] = display
    out["type"] = "Practitioner"
    return out


# --- the message --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderContext:
    """What an order gives the results under it."""

    order: Identity  # the ServiceRequest's identity, for basedOn and the results' identities
    effective: str | None = None  # OBR-7, for results without OBX-14
    issued: str | None = None  # OBR-22
    category: str | None = None  # observation-category code of an ORU's results


def map_orders(ctx: Context, patient_ref: dict[str, Any], encounter_ref: dict[str, Any] | None) -> None:
    """ORU^R01, ORM^O01, OML^O21: each order group -> a ServiceRequest; for ORU also a
    DiagnosticReport with its results as Observations (ORM/OML results are the order's
    "ask at order entry" answers, mapped as Observations based on the order). OBX outside any
    order group (e.g. in the patient group) -> Observations of the patient."""
    orders, loose = _order_groups(ctx.message.segments)
    requests: set[Identity] = set()
    reports: set[Identity] = set()
    observations: set[Identity] = set()
    is_result = ctx.message_type == "ORU"
    for position, order in enumerate(orders, start=1):
        numbers = _order_numbers(order, ctx)
        request = _request_identity(order, numbers, ctx, requests, position)
        body = _service_request(order, numbers, ctx, patient_ref, encounter_ref)
        ctx.out.add("ServiceRequest", body, request, order.label)
        obr = order.obr
        context = OrderContext(
            order=request,
            effective=_when(obr, 7, ctx) if obr is not None else None,
            issued=_instant(obr, 22, ctx) if obr is not None else None,
            category=_category_of_section(obr) if is_result else None,
        )
        refs = [
            observation(r.obx, ctx, patient_ref, encounter_ref, context, notes=r.notes, seen=observations)
            for r in order.results
        ]
        if is_result and obr is not None:
            report = _diagnostic_report(obr, numbers, ctx, (patient_ref, encounter_ref), context, refs)
            identity = _unused((numbers[1], numbers[0]), reports) or request
            reports.add(identity)
            ctx.out.add("DiagnosticReport", report, identity, order.label)
    for result in loose:
        observation(result.obx, ctx, patient_ref, encounter_ref, None, notes=result.notes, seen=observations)


def map_observations(
    ctx: Context, patient_ref: dict[str, Any], encounter_ref: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """OBX that map_orders does not map -> Observations; returns their references. In ADT, REF
    and the like that is every OBX (an ADT's height and weight; a REF's results that support the
    referral, even under their OBR, v2.5.1 11.5.1); in ORU/ORM/OML only those outside an order."""
    orders, loose = _order_groups(ctx.message.segments)
    results = loose
    if ctx.message_type not in ORDER_MESSAGES:
        results = sorted([*loose, *(r for order in orders for r in order.results)], key=lambda r: r.obx.index)
    seen: set[Identity] = set()
    return [
        observation(r.obx, ctx, patient_ref, encounter_ref, None, notes=r.notes, seen=seen) for r in results
    ]


# --- Observation --------------------------------------------------------------------------


def _category_of_section(obr: Segment | None) -> str:
    return _CATEGORY_BY_SECTION.get(obr.get(24).upper(), "laboratory") if obr is not None else "laboratory"


def _code_key(code: Value) -> tuple[str, str]:
    """(coding system name, code) of OBX-3: its identifier triplet, else the alternate one."""
    texts = [p.text for p in code.parts()[:6]] + [""] * 6
    if texts[0]:
        return texts[2], texts[0]
    if texts[3]:
        return texts[5], texts[3]
    return "", texts[1]


def _anchor(
    ctx: Context, patient_ref: dict[str, Any], encounter_ref: dict[str, Any] | None, obx: Segment
) -> str:
    """What scopes a result outside any order: the visit, else the patient; with the observation
    time OBX-14 (else, with no visit, the message time MSH-7), so a weight taken at each visit or
    on each day is its own Observation, while a resent message lands on the same one."""
    scope = logical_reference(encounter_ref, "Encounter") or logical_reference(patient_ref, "Patient")
    token = (
        f"{scope['identifier']['system']}|{scope['identifier']['value']}" if scope else ctx.sending_facility
    )
    when = obx.get(14) or ("" if encounter_ref else ctx.message.msh.get(7))
    return f"{token}:{when}" if when else token


def _observation_identity(
    obx: Segment,
    ctx: Context,
    scope: tuple[dict[str, Any], dict[str, Any] | None],
    code_key: tuple[str, str],
    order: OrderContext | None,
    seen: set[Identity],
) -> Identity:
    """OBX-21 observation instance identifier (v2.6+; IG OBX[Observation] identifier), else one
    built from the order (or the visit/patient), the code OBX-3 and the sub-id OBX-4, so a
    corrected result (OBX-11 C) in a later message updates the Observation it corrects. Two OBX
    of one message that would share an identity are told apart by their set id OBX-1."""
    instance = entity_identifier(
        obx.field(21), ctx, default_system=ctx.facility_system("observation-instance")
    )
    identity = identity_of(instance)
    if identity is None or identity in seen:
        system, code = code_key
        anchor = order.order.token if order is not None else _anchor(ctx, *scope, obx)
        identity = local_identity(ctx, "observation", anchor, system, code, obx.get(4))
        if identity in seen:
            identity = local_identity(ctx, "observation", anchor, system, code, obx.get(4), obx.get(1))
    seen.add(identity)
    return identity


def _category(code_key: tuple[str, str], order: OrderContext | None) -> list[dict[str, Any]]:
    """vital-signs for the vital-sign LOINC codes, survey for the screening instruments, else the
    order's (laboratory for an ORU's results unless OBR-24 says otherwise), else none."""
    system, loinc = code_key
    kind = None
    if tables.system_for(system) == _LOINC:
        kind = "vital-signs" if loinc in VITAL_SIGN_CODES else "survey" if loinc in SURVEY_CODES else None
    kind = kind or (order.category if order is not None else None)
    return [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": kind}]}] if kind else []


def _status(obx: Segment, ctx: Context) -> str:
    """OBX-11 (table 0085, IG ConceptMap ObservationResultStatusCodesInterpretation). The codes
    it leaves unmapped (B, I pending, N not asked, O order detail, R, S, U, V) and an empty
    OBX-11 give unknown; a code outside the table is also reported."""
    code = obx.get(11)
    status = tables.OBSERVATION_STATUS.get(code)
    if status is None and code and code not in ("B", "I", "N", "O", "R", "S", "U", "V"):
        ctx.warn(f"{segment_label(obx)} OBX-11", f"result status {code!r} is not in table 0085")
    return status or "unknown"


def _data_absent(obx: Segment) -> dict[str, Any]:
    """An OBX without a value (IG OBX[Observation], OBX-11 rows): X "results cannot be obtained"
    -> cannot-be-obtained, N "not asked" -> not-asked, else unknown (as ReportStream writes it)."""
    code = {"X": "cannot-be-obtained", "N": "not-asked"}.get(obx.get(11), "unknown")
    return {"coding": [{"system": _DATA_ABSENT_REASON, "code": code}]}


def _interpretations(obx: Segment, ctx: Context) -> list[dict[str, Any]]:
    """OBX-8 (table 0078 -> v3 ObservationInterpretation, IG ConceptMap InterpretationCodes); a
    code the map lacks stays as sent."""
    out = []
    for rep in obx.repetitions(8):
        code = rep.get(1)
        if code in tables.INTERPRETATION:
            coding = {"system": tables.V3_OBSERVATION_INTERPRETATION, "code": code}
            out.append({"coding": [{**coding, "display": tables.INTERPRETATION[code]}]})
        elif concept := codeable_concept(rep, ctx):
            out.append(concept)
    return out


def _performers(obx: Segment, ctx: Context) -> list[dict[str, Any]]:
    """OBX-16 responsible observers (logical Practitioner references), then the OBX-23 performing
    organization (IG OBX[Observation] performer; logical, as Organization is referral's)."""
    out = [ref for rep in obx.repetitions(16) if (ref := practitioner_reference(rep, ctx))]
    name, ident = organization_name_and_id(obx.field(23), ctx)
    if name or ident:
        org: dict[str, Any] = {"identifier": ident} if ident else {}
        if name:
            org["display"] = name
        out.append({**org, "type": "Organization"})
    return out


def observation(
    obx: Segment,
    ctx: Context,
    patient_ref: dict[str, Any],
    encounter_ref: dict[str, Any] | None,
    order: OrderContext | None = None,
    *,
    notes: Sequence[Segment] = (),
    seen: set[Identity] | None = None,
) -> dict[str, Any]:
    """One OBX and its NTEs -> an Observation (IG OBX[Observation]); returns its reference.
    `seen` holds the identities already given in this message."""
    code = obx.field(3)
    code_key = _code_key(code)
    scope = (patient_ref, encounter_ref)
    identity = _observation_identity(obx, ctx, scope, code_key, order, set() if seen is None else seen)
    label = segment_label(obx)
    body: dict[str, Any] = {}
    if order is not None:
        body["basedOn"] = [identity_reference(order.order, "ServiceRequest")]
    body["status"] = _status(obx, ctx)
    if category := _category(code_key, order):
        body["category"] = category
    concept = codeable_concept(code, ctx)
    if concept is None:
        ctx.warn(f"{label} OBX-3", "no observation identifier; the code is data-absent-reason unknown")
        concept = {"coding": [{"system": _DATA_ABSENT_REASON, "code": "unknown"}]}
    body["code"] = concept
    body["subject"] = patient_ref
    if encounter_ref:
        body["encounter"] = encounter_ref
    if effective := _when(obx, 14, ctx) or (order.effective if order is not None else None):
        body["effectiveDateTime"] = effective
    # Observation.issued is when the result was released: the report's OBR-22. OBX-19 is the
    # time of the analysis, which the IG keeps off `issued` (an analysisDateTime extension).
    if order is not None and order.issued:
        body["issued"] = order.issued
    if performers := _performers(obx, ctx):
        body["performer"] = performers
    if value := observation_value(obx, ctx, concept):
        body.update(value)
    else:
        body["dataAbsentReason"] = _data_absent(obx)
    if interpretations := _interpretations(obx, ctx):
        body["interpretation"] = interpretations
    if note := note_annotations(notes):
        body["note"] = note
    if site := codeable_concept(obx.field(20), ctx):
        body["bodySite"] = site
    if method := codeable_concept(obx.field(17), ctx):
        body["method"] = method
    if ranges := reference_ranges(obx, ctx):
        body["referenceRange"] = ranges
    return ctx.out.add("Observation", body, identity, label)


# --- values (OBX-2, OBX-5, OBX-6, OBX-7) --------------------------------------------------

ValueMapper = Callable[[list[Value], Segment, Context], dict[str, Any] | None]


def observation_value(
    obx: Segment, ctx: Context, code: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """OBX-5 by its type OBX-2 -> the Observation's value[x] (IG OBX[Observation], OBX-5 rows),
    as {"valueX": ...}; None when there is no value. A value that does not read as its type is
    kept as valueString and reported, never dropped. A single-valued type sent repeated (NM
    "60~120") gives one component per value under the OBX-3 `code`, as R4 value[x] holds one."""
    raw = obx.raw(5)
    if not raw or raw == '""':
        return None
    reps = [Value(r, 0, ctx.message) for r in raw.split(ctx.message.encoding.repetition)]
    kind = obx.get(2).upper()
    if kind and kind not in _VALUES:
        ctx.warn(
            f"{segment_label(obx)} OBX-2", f"value type {kind!r} is not mapped; the value is kept as text"
        )
    if kind in _REPEATING or kind not in _VALUES:
        return _read(kind, reps, obx, ctx)
    filled = [r for r in reps if r]
    if len(filled) > 1 and code is not None and kind not in _ATTACHMENTS:
        values = [v for r in filled if (v := _read(kind, [r], obx, ctx))]
        return {"component": [{"code": code, **v} for v in values]} if values else None
    if len(filled) > 1:
        ctx.warn(f"{segment_label(obx)} OBX-5", f"{kind} value repeats; only the first is kept")
    return _read(kind, filled[:1], obx, ctx)


def _read(kind: str, reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """One value of a type; as text (reported) when it does not read as that type."""
    mapper = _VALUES.get(kind)
    if mapper is None:
        return _plain_text(reps)
    value = mapper(reps, obx, ctx) if reps else None
    if value is None and reps and kind not in _ATTACHMENTS:
        ctx.warn(f"{segment_label(obx)} OBX-5", f"value does not read as {kind}; kept as text")
        return _plain_text(reps)
    return value


def _plain_text(reps: list[Value]) -> dict[str, Any] | None:
    """A value of an unmapped or unreadable type as text: its components, space-separated."""
    lines = [" ".join(p.text for p in rep.parts() if p.text) for rep in reps]
    text = "\n".join(line for line in lines if line)
    return {"valueString": text} if text else None


def _text(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """ST/TX/FT -> valueString: every repetition, one line each, escapes decoded (\\.br\\ is a new
    line; \\S\\ a literal ^, so the whole value is read, not just its first component)."""
    text = "\n".join(rep.full_text.rstrip() for rep in reps).strip("\n")
    return {"valueString": text} if text.strip() else None


def _numeric(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """NM -> valueQuantity with the OBX-6 unit (UCUM when it is UCUM, datatypes.quantity).
    A number sent with a comparator ("<5") is read as SN."""
    text = reps[0].text
    if text[:1] in "<>":
        return _structured(reps, obx, ctx)
    q = quantity(text, obx.field(6), ctx) if _is_number(text) else None
    return {"valueQuantity": q} if q else None


#: SN comparators FHIR's Quantity.comparator takes ("=" is just a number; "<>" has no match).
_COMPARATORS = frozenset({"<", "<=", ">", ">="})


def _structured(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """SN comparator^num1^separator^num2 (IG SN[Quantity], SN[Ratio], SN[Range]): ":" or "/" a
    ratio, "-" a range, "+" text; else a quantity with its comparator. "<0.10" sent in one
    component is read as comparator and number. The OBX-6 unit goes on every number."""
    parts = [p.text for p in reps[0].parts()[:4]] + [""] * 4
    comparator, first, separator, second = parts[:4]
    if comparator and not first and not separator:
        number = comparator.lstrip("<>=")
        comparator, first = comparator[: len(comparator) - len(number)], number
    units = obx.field(6)
    if separator in (":", "/", "-"):
        low = quantity(first, units, ctx) if _is_number(first) else None
        high = quantity(second, units, ctx) if _is_number(second) else None
        if low is None or high is None:
            return None
        if separator == "-":
            return {"valueRange": {"low": low, "high": high}}
        return {"valueRatio": {"numerator": low, "denominator": high}}
    if separator == "+":
        return {"valueString": " ".join(p for p in (comparator, first, separator, second) if p)}
    if comparator == "<>" or not _is_number(first):
        return None
    q = quantity(first, units, ctx)
    if q is not None and comparator in _COMPARATORS:
        q["comparator"] = comparator
    return {"valueQuantity": q} if q else None


def _coded(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """CE/CWE/CNE/CF/IS/ID -> valueCodeableConcept (IG CWE[CodeableConcept])."""
    concept = codeable_concept(reps[0], ctx)
    return {"valueCodeableConcept": concept} if concept else None


def _datetime(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """DTM/TS -> valueDateTime; DT -> valueDateTime holding the date only."""
    ts = ctx.timestamp(reps[0].text, f"{segment_label(obx)} OBX-5")
    if ts is None or not ts.value:
        return None
    return {"valueDateTime": ts.date if obx.get(2).upper() == "DT" else ts.value}


def _time(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """TM HHMM[SS[.S+]][+/-ZZZZ] -> valueTime hh:mm:ss. FHIR's time has no zone, so an offset
    is dropped (it is the sender's wall-clock time, as TM is)."""
    text = reps[0].text
    for sign in "+-":
        text = text.split(sign, 1)[0]
    clock, _, fraction = text.partition(".")
    if len(clock) not in (2, 4, 6) or not clock.isdigit() or (fraction and not fraction.isdigit()):
        return None
    h, m, s = clock[:2], clock[2:4] or "00", clock[4:6] or "00"
    if int(h) > 23 or int(m) > 59 or int(s) > 59:
        return None
    return {"valueTime": f"{h}:{m}:{s}" + (f".{fraction}" if fraction else "")}


def _numeric_range(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """NR low^high -> valueRange (IG NR[Range])."""
    low_text, high_text = reps[0].get(1), reps[0].get(2)
    units = obx.field(6)
    span = {
        k: q
        for k, t in (("low", low_text), ("high", high_text))
        if _is_number(t) and (q := quantity(t, units, ctx))
    }
    return {"valueRange": span} if span else None


def _date_range(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """DR start^end -> valuePeriod (IG DR[Period])."""
    span = {}
    for key, index in (("start", 1), ("end", 2)):
        ts = ctx.timestamp(reps[0].get(index), f"{segment_label(obx)} OBX-5")
        if ts is not None and ts.value:
            span[key] = ts.value
    return {"valuePeriod": span} if span else None


def _identifier_text(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """CX/EI -> valueString of the id (the IG leaves EI "to be mapped"; R4 value[x] has no
    Identifier)."""
    text = reps[0].get(1)
    return {"valueString": text} if text else None


def _numeric_array(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """NA -> valueString of the numbers. The IG points at SampledData, whose period and origin
    an NA does not carry, so the numbers are kept as text rather than invented into one."""
    numbers = [p.text for rep in reps for p in rep.parts() if p.text]
    return {"valueString": " ".join(numbers)} if numbers else None


#: ED-3 data subtypes (and RP-4) -> MIME types for Attachment.contentType.
_MIME_TYPES = {
    "PDF": "application/pdf",
    "RTF": "application/rtf",
    "HTML": "text/html",
    "XML": "application/xml",
    "PLAIN": "text/plain",
    "JPEG": "image/jpeg",
    "JPG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "OCTET-STREAM": "application/octet-stream",
}


def _content_type(subtype: str) -> str | None:
    return subtype if "/" in subtype else _MIME_TYPES.get(subtype.upper())


def _attachment_value(attachment: dict[str, Any]) -> dict[str, Any]:
    return {"extension": [{"url": _VALUE_ATTACHMENT, "valueAttachment": attachment}]}


def _encapsulated(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """ED source^type^subtype^encoding^data -> an Attachment in the R5 value extension (IG
    OBX[Observation] ED rows and ED[Attachment]): contentType from ED-3, data base64 from ED-5
    as Base64, Hex or A (ASCII) encoding says. Without data there is no value."""
    parts = [p.text for p in reps[0].parts()[:5]] + [""] * 5
    subtype, encoding, data = parts[2], parts[3].upper(), parts[4]
    if not data:
        return None
    try:
        if encoding == "HEX":
            data = base64.b64encode(bytes.fromhex(data)).decode("ascii")
        elif encoding == "A":
            data = base64.b64encode(data.encode("utf-8")).decode("ascii")
        else:
            data = base64.b64encode(base64.b64decode("".join(data.split()), validate=True)).decode("ascii")
    except (ValueError, binascii.Error):
        ctx.warn(f"{segment_label(obx)} OBX-5", f"ED data is not valid {encoding or 'Base64'}; left out")
        return None
    attachment: dict[str, Any] = {"contentType": ct} if (ct := _content_type(subtype)) else {}
    return _attachment_value({**attachment, "data": data})


def _pointer(reps: list[Value], obx: Segment, ctx: Context) -> dict[str, Any] | None:
    """RP pointer^application^type^subtype -> an Attachment with the pointer as its url (IG
    OBX[Observation] RP rows: the same R5 value extension as ED)."""
    pointer, subtype = reps[0].get(1), reps[0].get(4)
    if not pointer:
        return None
    attachment: dict[str, Any] = {"contentType": ct} if (ct := _content_type(subtype)) else {}
    attachment["url" if "://" in pointer else "title"] = pointer
    return _attachment_value(attachment)


_VALUES: dict[str, ValueMapper] = {
    "NM": _numeric,
    "SN": _structured,
    "ST": _text,
    "TX": _text,
    "FT": _text,
    **dict.fromkeys(("CE", "CWE", "CNE", "CF", "IS", "ID"), _coded),
    **dict.fromkeys(("DT", "DTM", "TS"), _datetime),
    "TM": _time,
    "NR": _numeric_range,
    "DR": _date_range,
    "CX": _identifier_text,
    "EI": _identifier_text,
    "NA": _numeric_array,
    "ED": _encapsulated,
    "RP": _pointer,
}

#: Types whose repetitions are all one value (text lines, array members).
_REPEATING = frozenset({"ST", "TX", "FT", "NA"})
#: Types whose unreadable value is left out rather than kept as text (binary data, pointers).
_ATTACHMENTS = frozenset({"ED", "RP"})


def reference_ranges(obx: Segment, ctx: Context | None = None) -> list[dict[str, Any]]:
    """OBX-7 -> referenceRange: "3.5-5.0", "4.3 to 6.2", ">10", "<0.10" give low/high in the
    OBX-6 unit (IG OBX[Observation]: "if OBX-7 is sufficiently parseable"); the text is kept."""
    text = obx.get(7)
    if not text:
        return []
    out: dict[str, Any] = {}
    unit: dict[str, Any] | None = None  # the OBX-6 unit, read once for both bounds
    for key, bound in zip(("low", "high"), _range_bounds(text), strict=True):
        if bound is None or (number := quantity(bound, None)) is None:
            continue
        if unit is None:
            unit = quantity(bound, obx.field(6), ctx) or number
        out[key] = {**unit, "value": number["value"]}
    out["text"] = text
    return [out]


def _range_bounds(text: str) -> tuple[str | None, str | None]:
    """(low, high) of a range written "a-b", "a - b", "a to b", "<b", "<=b", ">a", ">=a"."""
    text = text.strip()
    if text[:1] in "<>":
        bound = text.lstrip("<>=").strip()
        if not _is_number(bound):
            return None, None
        return (bound, None) if text[0] == ">" else (None, bound)
    for separator in (" to ", " - ", "-", "\u2013"):
        at = text.find(separator, 1)  # from 1: a leading minus is a sign
        if at != -1:
            low, high = text[:at].strip(), text[at + len(separator) :].strip()
            return (low, high) if _is_number(low) and _is_number(high) else (None, None)
    return None, None


def _is_number(text: str) -> bool:
    """A finite decimal as FHIR's decimal allows (no exponent, NaN or infinity)."""
    body = text.strip().lstrip("+-")
    whole, _, fraction = body.partition(".")
    return bool(whole or fraction) and (whole.isdigit() or not whole) and (fraction.isdigit() or not fraction)


__all__ = [
    "ORDER_MESSAGES",
    "OrderContext",
    "identity_reference",
    "local_identity",
    "logical_reference",
    "map_observations",
    "map_orders",
    "note_annotations",
    "note_text",
    "observation",
    "observation_value",
    "reference_ranges",
]
