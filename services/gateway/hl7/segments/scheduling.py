"""SIU^S12..S26 -> Appointment.

Follows the V2-to-FHIR IG (hl7.fhir.uv.v2mappings 1.0.0): message map SIU_S12; segment maps
SCH[Appointment], AIS/AIG/AIL/AIP[Appointment] and NTE[Appointment-Comment]; ConceptMap
FillerStatusCodes[Appointment] for table 0278 (`tables.FILLER_STATUS`).

Appointment is careplan's, and careplan resolves references only to the Patient (through its
projection) and to its own types. So the patient participant is the conditional patient
reference, and every other actor (AIP practitioners, AIL locations, AIG resources) and the
orders an appointment fulfils (SCH-26/27) are logical references or text.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from services.gateway.hl7 import tables
from services.gateway.hl7.context import Context, Identity, segment_label
from services.gateway.hl7.datatypes import (
    codeable_concept,
    entity_identifier,
    identity_of,
    location_display,
    practitioner_reference,
)
from services.gateway.hl7.er7 import Segment, Value
from services.gateway.hl7.segments.orders import local_identity, logical_reference, note_text

_V2_0203 = tables.v2_system("0203")

#: What each trigger says of the appointment (v2.5.1 10.3: S12 new booking, S13 rescheduled,
#: S14 modified, S15 cancelled, S17 deleted, S26 patient did not show up) -> appointmentstatus.
STATUS_BY_TRIGGER = {
    "S12": "booked",
    "S13": "booked",
    "S14": "booked",
    "S15": "cancelled",
    "S17": "entered-in-error",
    "S26": "noshow",
}

#: Triggers whose own meaning is the status whatever SCH-25 says; for the others (S12-S14,
#: "booked" by default) the filler status SCH-25 is more precise (pending, waitlist, started...).
_DECISIVE_TRIGGERS = frozenset({"S15", "S17", "S26"})

#: Table 0276 Appointment Reason codes (v2.5.1): an SCH-7 code from this table is what FHIR
#: calls the appointment type (R4 Appointment.appointmentType binds v2-0276; IG SCH[Appointment]
#: maps SCH-7 "to either reasonCode or appointmentType" depending on the table used).
APPOINTMENT_REASON_0276 = {
    "CHECKUP": "A routine check-up, such as an annual physical",
    "EMERGENCY": "Emergency appointment",
    "FOLLOWUP": "A follow up visit from a previous appointment",
    "ROUTINE": "Routine appointment - default if not valued",
    "WALKIN": "A previously unscheduled walk-in visit",
}

#: Table 0278 filler status of one resource (AIP-12, AIL-12, AIG-14) -> participationstatus:
#: CareBridge's reading, the IG maps AIP-12 to participant.status without a ConceptMap.
_PARTICIPATION = {
    "BOOKED": "accepted",
    "CONFIRMED": "accepted",
    "STARTED": "accepted",
    "COMPLETE": "accepted",
    "PENDING": "tentative",
    "WAITLIST": "tentative",
    "CANCELLED": "declined",
    "DELETED": "declined",
    "NOSHOW": "declined",
}

#: Duration units (SCH-10, AIS-8, AIG-12, AIL-10, AIP-10: CNE, ISO+/ANSI or UCUM codes as
#: senders write them) -> minutes. "m" is minutes here, as in the IG's SIU sample (AIP-10
#: "m^Minutes"): a duration is never in metres.
_MINUTES_PER_UNIT = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1 / 60),
    **dict.fromkeys(("min", "m", "mi", "minute", "minutes", "mins"), 1.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 60.0),
    **dict.fromkeys(("d", "day", "days"), 1440.0),
    **dict.fromkeys(("wk", "week", "weeks"), 10080.0),
}


# --- time ---------------------------------------------------------------------------------


def add_minutes(start: str, minutes: float) -> str | None:
    """A FHIR dateTime with a time plus some minutes, in the same offset; None for a date."""
    if "T" not in start:
        return None
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return None
    text = (moment + timedelta(minutes=minutes)).isoformat()
    return text.replace("+00:00", "Z") if start.endswith("Z") else text


def _minutes(amount: str, units: Value, ctx: Context, location: str) -> float | None:
    """A duration and its unit in minutes. A duration without a unit is taken as minutes, the
    unit scheduling systems count in (CareBridge's assumption, reported); an unknown unit is
    reported and the duration left out."""
    try:
        number = float(amount)
    except ValueError:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    unit = units.get(1) or units.get(2)
    if not unit:
        ctx.warn(location, "a duration without a unit; taken as minutes")
        return number
    factor = _MINUTES_PER_UNIT.get(unit.lower()) or _MINUTES_PER_UNIT.get(units.get(2).lower())
    if factor is None:
        ctx.warn(location, f"duration unit {unit!r} is not one CareBridge reads; duration left out")
        return None
    return number * factor


def _when(segment: Segment, number: int, ctx: Context) -> str | None:
    ts = ctx.timestamp(segment.field(number), f"{segment_label(segment)} {segment.name}-{number}")
    return ts.value if ts is not None else None


def _resource_period(
    segment: Segment, start_field: int, duration_field: int, ctx: Context
) -> tuple[str | None, str | None]:
    """A resource's own start (AIS-4, AIG-8, AIL-6, AIP-6) and its end from the duration that
    follows three fields later with its unit (IG: participant.period.start + duration)."""
    start = _when(segment, start_field, ctx)
    if start is None:
        return None, None
    duration = segment.get(duration_field)
    label = f"{segment_label(segment)} {segment.name}-{duration_field + 1}"
    minutes = _minutes(duration, segment.field(duration_field + 1), ctx, label) if duration else None
    return start, add_minutes(start, minutes) if minutes else None


#: Each resource segment: (start field, duration field, filler status field).
_RESOURCE_FIELDS = {"AIS": (4, 7, 10), "AIG": (8, 11, 14), "AIL": (6, 9, 12), "AIP": (6, 9, 12)}


def _start_end(sch: Segment, resources: list[Segment], ctx: Context) -> tuple[str | None, str | None]:
    """Appointment start/end: TQ1-7/TQ1-8 (v2.5+), else the TQ of SCH-11 (start TQ-4, end TQ-5,
    deprecated since v2.5 and still sent), else the first resource with a start time and its
    duration."""
    tq1 = ctx.message.first("TQ1")
    if tq1 is not None and (start := _when(tq1, 7, ctx)):
        return start, _when(tq1, 8, ctx)
    timing = sch.field(11)
    if start_text := timing.get(4):
        start_ts = ctx.timestamp(start_text, "SCH-11.4")
        end_ts = ctx.timestamp(timing.get(5), "SCH-11.5")
        if start_ts is not None and start_ts.value:
            return start_ts.value, end_ts.value if end_ts is not None else None
    for segment in resources:
        start_field, duration_field, _ = _RESOURCE_FIELDS[segment.name]
        start, end = _resource_period(segment, start_field, duration_field, ctx)
        if start is not None:
            return start, end
    return None, None


# --- status and codes -----------------------------------------------------------------------


def _status(sch: Segment, ctx: Context) -> str:
    """The trigger's status (STATUS_BY_TRIGGER); for S12-S14 the filler status SCH-25 (table
    0278, IG ConceptMap FillerStatusCodes[Appointment]) refines it when it maps."""
    status = STATUS_BY_TRIGGER.get(ctx.trigger, "booked")
    if ctx.trigger in _DECISIVE_TRIGGERS:
        return status
    filler = sch.field(25)
    code = (filler.get(1) or filler.get(2)).upper()
    if code and code not in tables.FILLER_STATUS:
        ctx.warn("SCH-25", f"filler status {code!r} has no appointment status (table 0278); {status}")
    return tables.FILLER_STATUS.get(code, status)


def _reason_and_type(sch: Segment, ctx: Context, body: dict[str, Any]) -> None:
    """SCH-7 appointment reason: a table 0276 code (CHECKUP, EMERGENCY, FOLLOWUP, ROUTINE,
    WALKIN) is the appointmentType, any other reason a reasonCode; SCH-8 appointment type
    (table 0277) is the appointmentType when SCH-7 did not give one (IG SCH[Appointment])."""
    reason = sch.field(7)
    code = reason.get(1).upper()
    if code in APPOINTMENT_REASON_0276 and reason.get(3).upper() in ("", "HL70276"):
        display = reason.get(2) or APPOINTMENT_REASON_0276[code]
        body["appointmentType"] = {
            "coding": [{"system": tables.v2_system("0276"), "code": code, "display": display}]
        }
    elif concept := codeable_concept(reason, ctx, table="0276"):
        body["reasonCode"] = [concept]
    if "appointmentType" not in body and (kind := codeable_concept(sch.field(8), ctx, table="0277")):
        body["appointmentType"] = kind


def _appointment_identifiers(sch: Segment, ctx: Context) -> list[dict[str, Any]]:
    """SCH-2 filler appointment id (FILL), SCH-1 placer appointment id (PLAC) (IG SCH[Appointment]
    identifier[1], [2]); without a namespace unique within the sending facility."""
    out = []
    for number, kind in ((2, "FILL"), (1, "PLAC")):
        system = ctx.facility_system(f"appointment-{kind.lower()}")
        ident = entity_identifier(sch.field(number), ctx, default_system=system)
        if ident is not None:
            ident["type"] = {"coding": [{"system": _V2_0203, "code": kind}]}
            out.append(ident)
    return out


def _identity(
    identifiers: list[dict[str, Any]], ctx: Context, patient_ref: dict[str, Any], start: str | None
) -> Identity:
    """The filler's appointment id, else the placer's; else the patient and the start time (one
    patient is not booked twice for the same instant), else the message, with a warning."""
    for ident in identifiers:
        if (identity := identity_of(ident)) is not None:
            return identity
    ctx.warn("SCH-1", "no placer or filler appointment id (SCH-1, SCH-2); identified by patient and start")
    patient = logical_reference(patient_ref, "Patient")
    token = f"{patient['identifier']['system']}|{patient['identifier']['value']}" if patient else ""
    return local_identity(ctx, "appointment", ctx.sending_facility, token, start or ctx.control_id)


def _based_on(sch: Segment, ctx: Context) -> list[dict[str, Any]]:
    """SCH-26 placer / SCH-27 filler order numbers -> logical ServiceRequest references (IG
    SCH[Appointment] basedOn; ServiceRequest is referral's), in the systems orders.py gives them."""
    out = []
    for number, kind in ((26, "plac"), (27, "fill")):
        for rep in sch.repetitions(number):
            ident = entity_identifier(rep, ctx, default_system=ctx.facility_system(f"order-{kind}"))
            if ident is not None:
                out.append({"identifier": ident, "type": "ServiceRequest"})
    return out


# --- participants -------------------------------------------------------------------------


def _participant(segment: Segment, actor: dict[str, Any], kind: Value | None, ctx: Context) -> dict[str, Any]:
    start_field, duration_field, status_field = _RESOURCE_FIELDS[segment.name]
    out: dict[str, Any] = {}
    if kind is not None and (concept := codeable_concept(kind, ctx)):
        out["type"] = [concept]
    out["actor"] = actor
    out["required"] = "required"
    code = segment.field(status_field)
    out["status"] = _PARTICIPATION.get((code.get(1) or code.get(2)).upper(), "accepted")
    start, end = _resource_period(segment, start_field, duration_field, ctx)
    if start:
        out["period"] = {"start": start, "end": end} if end else {"start": start}
    return out


def _actor(segment: Segment, ctx: Context) -> tuple[dict[str, Any] | None, Value | None]:
    """The actor and participant type of an AIP (IG AIP-3 actor, AIP-4 type), AIL (AIL-3, a
    location as text) or AIG (AIG-3 resource id, AIG-4 type)."""
    if segment.name == "AIP":
        return practitioner_reference(segment.field(3), ctx), segment.field(4)
    if segment.name == "AIL":
        where = location_display(segment.field(3))
        return ({"display": where, "type": "Location"} if where else None), None
    resource = segment.field(3)
    name = resource.get(2) or resource.get(1)
    return ({"display": name} if name else None), segment.field(4)


def _participants(
    resources: list[Segment], ctx: Context, patient_ref: dict[str, Any]
) -> list[dict[str, Any]]:
    """The patient (required, accepted), then each AIP, AIL and AIG resource (IG AIP/AIL/AIG
    [Appointment]); AIS is the service, not a participant. A resource named in two resource
    groups (RGS) is one participant."""
    out: list[dict[str, Any]] = [{"actor": patient_ref, "required": "required", "status": "accepted"}]
    seen: set[str] = set()
    for segment in resources:
        if segment.name == "AIS":
            continue
        actor, kind = _actor(segment, ctx)
        if actor is None:
            continue
        key = repr(sorted(actor.items()))
        if key in seen:
            continue
        seen.add(key)
        out.append(_participant(segment, actor, kind, ctx))
    return out


# --- the message --------------------------------------------------------------------------


def _comment(ctx: Context) -> str | None:
    """NTE right after SCH (and its TQ1) -> Appointment.comment (IG NTE[Appointment-Comment]).
    NTE after a resource segment (AIS, AIG, AIL, AIP) are notes for that resource's staff and
    are not mapped: Appointment has one comment, for the appointment."""
    lines: list[str] = []
    owner = ""
    for segment in ctx.message.segments:
        if segment.name != "NTE":
            owner = segment.name
        elif owner in ("SCH", "TQ1") and (text := note_text(segment)):
            lines.append(text)
    return "\n".join(lines) or None


def map_appointment(ctx: Context, patient_ref: dict[str, Any], encounter_ref: dict[str, Any] | None) -> None:
    """SCH + TQ1 + RGS/AIS/AIG/AIL/AIP + NTE -> one Appointment (SIU^S12, S13, S14, S15, S17,
    S26). `encounter_ref` is not used: R4 Appointment has no encounter element."""
    sch = ctx.message.first("SCH")
    if sch is None:
        ctx.warn("SCH", "no SCH segment; no Appointment")
        return
    resources = [s for s in ctx.message.segments if s.name in _RESOURCE_FIELDS]
    identifiers = _appointment_identifiers(sch, ctx)
    start, end = _start_end(sch, resources, ctx)
    identity = _identity(identifiers, ctx, patient_ref, start)
    body: dict[str, Any] = {"identifier": identifiers, "status": _status(sch, ctx)}
    if body["status"] == "cancelled" and (reason := codeable_concept(sch.field(6), ctx)):
        body["cancelationReason"] = reason  # SCH-6 event reason, why it was cancelled
    services = [c for s in resources if s.name == "AIS" and (c := codeable_concept(s.field(3), ctx))]
    if services:
        body["serviceType"] = services  # AIS-3 (IG AIS[Appointment])
    _reason_and_type(sch, ctx, body)
    minutes = _minutes(sch.get(9), sch.field(10), ctx, "SCH-10") if sch.get(9) else None
    if start and not end and minutes:
        end = add_minutes(start, minutes)
    _times(body, start, end, minutes, ctx)
    if comment := _comment(ctx):
        body["comment"] = comment
    if based_on := _based_on(sch, ctx):
        body["basedOn"] = based_on
    body["participant"] = _participants(resources, ctx, patient_ref)
    ctx.out.add("Appointment", body, identity, segment_label(sch))


def _times(
    body: dict[str, Any], start: str | None, end: str | None, minutes: float | None, ctx: Context
) -> None:
    """start, end and minutesDuration (SCH-9 in the units of SCH-10, IG SCH[Appointment]).

    FHIR R4 invariant app-3 lets only proposed, cancelled and waitlist appointments go without
    start and end. When a message gives neither (and no duration to reach an end), the status
    the trigger says is kept rather than turned into "proposed": careplan must know the visit
    is booked, and a missing time is reported for the sender to fix."""
    if start:
        body["start"] = start
    if end:
        body["end"] = end
    if minutes is not None and round(minutes) >= 1:
        body["minutesDuration"] = round(minutes)
    if (not start or not end) and body["status"] not in ("proposed", "cancelled", "waitlist"):
        ctx.warn("SCH-11", "no start and end time (TQ1-7/8, SCH-11, AIS-4 + AIS-7); FHIR app-3 wants both")


__all__ = ["APPOINTMENT_REASON_0276", "STATUS_BY_TRIGGER", "add_minutes", "map_appointment"]
