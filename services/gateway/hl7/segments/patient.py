"""PID (+ PD1, NK1) -> Patient and RelatedPerson; MRG -> Patient merges.

Follows the V2-to-FHIR IG segment maps PID[Patient], PD1[Patient], NK1[Patient] and
NK1[RelatedPerson] (hl7.fhir.uv.v2mappings 1.0.0), and the ADT_A39/A40 message map for MRG.

Bodies carry only what the message says: an element the message leaves empty is not written,
so a sparse message does not wipe what an earlier one said (the owner lays top-level elements
over the stored ones, `shared.fhir.inbound`). An explicit HL7 null (`""`, v2.5.1 2.5.3) removes
the element (the key is written with None). Where FHIR has a choice type (deceased[x],
multipleBirth[x]) the sibling is removed when one is set, so a merge never leaves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.gateway.hl7 import tables
from services.gateway.hl7.context import LOCAL_SYSTEM_PREFIX, Context, Identity, segment_label
from services.gateway.hl7.datatypes import (
    address,
    codeable_concept,
    contact_point,
    human_name,
    identifier,
    identifier_type,
    identity_of,
    mapped_concept,
    period,
    practitioner_reference,
)
from services.gateway.hl7.er7 import Segment, Value

#: v2 versions in which PID-2 (Patient ID, external) is still how some senders identify the
#: patient (from v2.3.1 it is kept for backward compatibility only; v2.3.1 senders still use it).
_PID2_VERSIONS = ("2.1", "2.2", "2.3")


def _is_null(segment: Segment, *fields: int) -> bool:
    return any(segment.raw(n) == '""' for n in fields)


def _put(body: dict[str, Any], key: str, value: Any, nulled: bool) -> None:
    """Write a value; write None (remove the element) for an explicit HL7 null."""
    if value:
        body[key] = value
    elif nulled:
        body[key] = None


# --- identity -------------------------------------------------------------------------------


def _pick(reps: list[Value]) -> Value | None:
    """The repetition a patient is matched by: the first medical record number (CX-5 "MR"),
    else the first repetition with an id."""
    with_id = [rep for rep in reps if rep.get(1)]
    return next((rep for rep in with_id if rep.get(5) == "MR"), with_id[0] if with_id else None)


def _patient_identifier(cx: Value, ctx: Context) -> dict[str, Any] | None:
    """A patient CX as an Identifier. Without an assigning authority an MRN is unique within the
    sending facility (urn:carebridge:hl7v2:mrn:<facility>); another type of id within the
    facility and its type."""
    type_code = cx.get(5)
    kind = "mrn" if type_code in ("", "MR") else type_code.lower()
    return identifier(cx, ctx, default_system=ctx.facility_system(kind))


def patient_identity(pid: Segment, ctx: Context) -> Identity | None:
    """The identifier a Patient is matched by: PID-3's MR repetition, else its first; for v2.3
    and earlier, PID-2 (external id) when PID-3 is empty. None when there is none."""
    chosen = _pick(pid.repetitions(3))
    if chosen is None and ctx.version.startswith(_PID2_VERSIONS):
        chosen = _pick(pid.repetitions(2))
    return identity_of(_patient_identifier(chosen, ctx)) if chosen is not None else None


# --- Patient --------------------------------------------------------------------------------


def _identifiers(pid: Segment, ctx: Context) -> list[dict[str, Any]]:
    """PID-3 (all), PID-2 and PID-4 (IG PID[Patient]), and PID-19 as a US SSN; one per
    system and value."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for rep in (*pid.repetitions(3), *pid.repetitions(2), *pid.repetitions(4)):
        ident = _patient_identifier(rep, ctx)
        if ident is not None and (key := (ident.get("system", ""), ident["value"])) not in seen:
            seen.add(key)
            out.append(ident)
    ssn = pid.get(19)
    if ssn and (tables.US_SSN, ssn) not in seen:
        out.append({"system": tables.US_SSN, "value": ssn, "type": _ssn_type()})
    if license_ := _drivers_license(pid, ctx):
        out.append(license_)
    return out


def _drivers_license(pid: Segment, ctx: Context) -> dict[str, Any] | None:
    """PID-20 DLN -> Identifier (IG DLN[Identifier]): number DLN-1, type DL, valid until the
    expiration date DLN-3; the system names the issuing state or country DLN-2."""
    dln = pid.field(20)
    if not dln:
        return None
    parts = dln.parts()
    number = parts[0].text
    if not number:
        return None
    issuer = parts[1].text.upper() if len(parts) > 1 else ""
    out: dict[str, Any] = {
        "system": f"{LOCAL_SYSTEM_PREFIX}drivers-license:{issuer or ctx.sending_facility or 'unknown'}",
        "value": number,
        "type": identifier_type("DL"),
    }
    expires = ctx.timestamp(parts[2].text, "PID-20") if len(parts) > 2 else None
    if valid := period(None, expires):
        out["period"] = valid
    return out


def _ssn_type() -> dict[str, Any]:
    # IG PID[Patient], PID-19: type SS in the US (SB elsewhere), system us-ssn.
    return {
        "coding": [{"system": tables.v2_system("0203"), "code": "SS", "display": "Social Security number"}]
    }


def _names(pid: Segment, ctx: Context) -> list[dict[str, Any]]:
    """PID-5 (all repetitions), then the aliases PID-9 (IG PID[Patient]: name[2]). An alias
    whose XPN-7 gives no use is marked "nickname" (CareBridge's choice; the IG sets none), so it
    is never taken for the patient's usual or official name."""
    names = [n for n in (human_name(rep, ctx) for rep in pid.repetitions(5)) if n]
    for rep in pid.repetitions(9):
        alias = human_name(rep, ctx)
        if alias is not None:
            names.append({"use": "nickname", **alias} if "use" not in alias else alias)
    return names


def _birth(pid: Segment, ctx: Context, body: dict[str, Any]) -> None:
    """PID-7 -> birthDate (the date part), and a time of birth to the patient-birthTime
    extension (IG PID[Patient]: IF PID-7 LENGTH GREATER THAN 8)."""
    born = ctx.timestamp(pid.field(7), "PID-7")
    if born is None or born.date is None:
        _put(body, "birthDate", None, _is_null(pid, 7))
        return
    body["birthDate"] = born.date
    body["_birthDate"] = (
        {"extension": [{"url": tables.PATIENT_BIRTH_TIME, "valueDateTime": born.datetime}]}
        if born.datetime
        else None
    )


def _gender(pid: Segment, ctx: Context, body: dict[str, Any]) -> None:
    """PID-8 -> gender (IG ConceptMap table 0001 -> administrative-gender)."""
    code = pid.get(8).upper()
    if not code:
        _put(body, "gender", None, _is_null(pid, 8))
    elif code in tables.ADMINISTRATIVE_SEX:
        body["gender"] = tables.ADMINISTRATIVE_SEX[code]
    else:
        ctx.warn("PID-8", f"administrative sex {code!r} is not in HL7 table 0001; left out")


def _telecom(pid: Segment, ctx: Context) -> list[dict[str, Any]]:
    """PID-13 (use home when XTN-2 says nothing), PID-14 (work), PID-40 (IG PID[Patient])."""
    out: list[dict[str, Any]] = []
    for field, default_use in ((13, "home"), (14, "work"), (40, None)):
        for rep in pid.repetitions(field):
            out.extend(contact_point(rep, ctx, default_use=default_use))
    return out


def _deceased(pid: Segment, ctx: Context, body: dict[str, Any]) -> None:
    """PID-29 -> deceasedDateTime, else PID-30 (table 0136) -> deceasedBoolean."""
    died = ctx.timestamp(pid.field(29), "PID-29")
    if died is not None and died.value:
        body["deceasedDateTime"], body["deceasedBoolean"] = died.value, None
        return
    flag = tables.YES_NO.get(pid.get(30).upper())
    if flag is not None:
        body["deceasedBoolean"], body["deceasedDateTime"] = flag, None


def _multiple_birth(pid: Segment, body: dict[str, Any]) -> None:
    """PID-25 birth order -> multipleBirthInteger, else PID-24 (table 0136) ->
    multipleBirthBoolean (IG PID[Patient]: PID-24 only IF PID-25 NOT VALUED)."""
    order = pid.get(25)
    if order.isdigit():
        body["multipleBirthInteger"], body["multipleBirthBoolean"] = int(order), None
        return
    flag = tables.YES_NO.get(pid.get(24).upper())
    if flag is not None:
        body["multipleBirthBoolean"], body["multipleBirthInteger"] = flag, None


def _race(reps: list[Value]) -> dict[str, Any] | None:
    """PID-10 (table 0005, CDC race codes) -> the US Core race extension (US Core 3.1+; the IG
    defers PID-10 to the realm's extension). Codes that are not CDC race codes are left out."""
    omb: list[dict[str, str]] = []
    detailed: list[dict[str, str]] = []
    texts: list[str] = []
    for rep in reps:
        code, display = rep.get(1), rep.get(2)
        if code in tables.OMB_RACE:
            omb.append({"system": tables.CDCREC, "code": code, "display": tables.OMB_RACE[code]})
        elif code in ("UNK", "ASKU"):
            omb.append({"system": tables.V3_NULL_FLAVOR, "code": code})
        elif len(code) == 6 and code[4] == "-" and code[:4].isdigit():  # a CDCREC code, e.g. 2131-1
            detailed.append(
                {"system": tables.CDCREC, "code": code, **({"display": display} if display else {})}
            )
        else:
            continue
        texts.append(display or tables.OMB_RACE.get(code, code))
    if not omb and not detailed:
        return None
    parts = [{"url": "ombCategory", "valueCoding": c} for c in omb]
    parts += [{"url": "detailed", "valueCoding": c} for c in detailed]
    parts.append({"url": "text", "valueString": ", ".join(texts)})
    return {"url": tables.US_CORE_RACE, "extension": parts}


def _ethnicity(reps: list[Value]) -> dict[str, Any] | None:
    """PID-22 (table 0189) -> the US Core ethnicity extension (ombCategory 0..1)."""
    for rep in reps:
        target = tables.ETHNIC_GROUP.get(rep.get(1).upper())
        if target is not None:
            system, code, display = target
            return {
                "url": tables.US_CORE_ETHNICITY,
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": {"system": system, "code": code, "display": display},
                    },
                    {"url": "text", "valueString": rep.get(2) or display},
                ],
            }
    return None


def _patient_body(pid: Segment, ctx: Context) -> dict[str, Any]:
    body: dict[str, Any] = {"active": True, "identifier": _identifiers(pid, ctx)}
    _put(body, "name", _names(pid, ctx), _is_null(pid, 5))
    _birth(pid, ctx, body)
    _gender(pid, ctx, body)
    addresses = [a for a in (address(rep, ctx) for rep in pid.repetitions(11)) if a]
    _put(body, "address", addresses, _is_null(pid, 11))
    _put(body, "telecom", _telecom(pid, ctx), _is_null(pid, 13, 14))
    language = codeable_concept(pid.field(15), ctx)
    # PID-15 is the primary language, the one to communicate in (IG PID[Patient] comment).
    _put(
        body,
        "communication",
        [{"language": language, "preferred": True}] if language else None,
        _is_null(pid, 15),
    )
    marital = mapped_concept(pid.field(16), tables.MARITAL_STATUS, ctx, table="0002")
    _put(body, "maritalStatus", marital, _is_null(pid, 16))
    _deceased(pid, ctx, body)
    _multiple_birth(pid, body)
    extensions = [e for e in (_race(pid.repetitions(10)), _ethnicity(pid.repetitions(22))) if e]
    if extensions:
        body["extension"] = extensions
    return body


def _general_practitioners(ctx: Context) -> list[dict[str, Any]]:
    """PD1-4 primary care provider -> generalPractitioner (IG PD1[Patient]), as logical
    references: Practitioners are the referral service's."""
    pd1 = ctx.message.first("PD1")
    if pd1 is None:
        return []
    return [ref for ref in (practitioner_reference(rep, ctx) for rep in pd1.repetitions(4)) if ref]


def map_patient(ctx: Context) -> tuple[dict[str, Any], Identity] | None:
    """PID (+ PD1, NK1) -> Patient, and each NK1 -> RelatedPerson; returns the Patient's
    conditional reference and identity, or None when there is no PID with an identifier."""
    pid = ctx.message.first("PID")
    if pid is None:
        return None
    identity = patient_identity(pid, ctx)
    if identity is None:
        return None
    body = _patient_body(pid, ctx)
    if practitioners := _general_practitioners(ctx):
        body["generalPractitioner"] = practitioners
    next_of_kin = [(nk1, kin) for nk1 in ctx.message.all("NK1") if (kin := _next_of_kin(nk1, ctx))]
    if next_of_kin:
        body["contact"] = [kin.contact for _, kin in next_of_kin]
    ref = ctx.out.add("Patient", body, identity, segment_label(pid))
    for nk1, kin in next_of_kin:
        _add_related_person(nk1, kin, ctx, ref, identity)
    return ref, identity


# --- NK1 -> Patient.contact and RelatedPerson -----------------------------------------------


def _relationships(nk1: Segment, ctx: Context) -> list[dict[str, Any]]:
    """NK1-3 (table 0063, with the IG ConceptMap "Table HL70063 to Relationship" target first)
    and NK1-7 contact role (table 0131) (IG NK1[RelatedPerson]: relationship[1], [2])."""
    concepts = (
        mapped_concept(nk1.field(3), tables.RELATIONSHIP, ctx, table="0063"),
        codeable_concept(nk1.field(7), ctx, table="0131"),
    )
    return [c for c in concepts if c]


@dataclass(frozen=True, slots=True)
class _Kin:
    """One NK1 read once: its Patient.contact, and every name and address (a contact holds one
    of each, a RelatedPerson all)."""

    contact: dict[str, Any]
    names: list[dict[str, Any]]
    addresses: list[dict[str, Any]]


def _next_of_kin(nk1: Segment, ctx: Context) -> _Kin | None:
    """NK1 -> Patient.contact (IG NK1[Patient]): relationship NK1-3/NK1-7, name NK1-2, telecom
    NK1-5 (home) / NK1-6 (work) / NK1-40, address NK1-4, gender NK1-15, period NK1-8/9.
    None for an NK1 that names no one and gives no way to reach anyone."""
    names = [n for n in (human_name(rep, ctx) for rep in nk1.repetitions(2)) if n]
    telecom: list[dict[str, Any]] = []
    for field, default_use in ((5, "home"), (6, "work"), (40, None)):
        for rep in nk1.repetitions(field):
            telecom.extend(contact_point(rep, ctx, default_use=default_use))
    addresses = [a for a in (address(rep, ctx) for rep in nk1.repetitions(4)) if a]
    if not names and not telecom and not addresses:
        return None
    contact: dict[str, Any] = {}
    if relationships := _relationships(nk1, ctx):
        contact["relationship"] = relationships
    if names:
        contact["name"] = names[0]
    if telecom:
        contact["telecom"] = telecom
    if addresses:
        contact["address"] = addresses[0]
    if gender := tables.ADMINISTRATIVE_SEX.get(nk1.get(15).upper()):
        contact["gender"] = gender
    if valid := period(ctx.timestamp(nk1.field(8), "NK1-8"), ctx.timestamp(nk1.field(9), "NK1-9")):
        contact["period"] = valid
    return _Kin(contact, names, addresses)


def _related_person_identity(nk1: Segment, kin: _Kin, ctx: Context, patient: Identity) -> Identity:
    """NK1-33 (the person's own identifier) when sent; else the person's name within the
    patient; else the NK1 set id. The name comes before the set id because set ids renumber
    when a contact is removed from the list, which would move one person's phone onto another
    person's record (CareBridge's choice; the IG gives RelatedPerson no identity)."""
    for rep in nk1.repetitions(33):
        own = identity_of(identifier(rep, ctx, default_system=ctx.facility_system("related-person")))
        if own is not None:
            return own
    name = kin.contact.get("name") or {}
    key = "^".join([name.get("family", ""), *name.get("given", [])[:1]]).upper()
    if key.strip("^"):
        return ctx.local_identity("related-person", patient.token, key)
    return ctx.local_identity("related-person", patient.token, f"NK1-{nk1.get(1) or nk1.index}")


def _add_related_person(
    nk1: Segment, kin: _Kin, ctx: Context, patient_ref: dict[str, Any], patient: Identity
) -> None:
    """NK1 -> RelatedPerson (IG NK1[RelatedPerson]), linked to the Patient."""
    body: dict[str, Any] = {"active": True, "patient": patient_ref}
    identifiers = [i for i in (identifier(rep, ctx) for rep in nk1.repetitions(33)) if i and i.get("system")]
    if identifiers:
        body["identifier"] = identifiers
    for key in ("relationship", "telecom", "gender", "period"):
        if key in kin.contact:
            body[key] = kin.contact[key]
    if kin.names:
        body["name"] = kin.names
    if kin.addresses:
        body["address"] = kin.addresses
    born = ctx.timestamp(nk1.field(16), "NK1-16")
    if born is not None and born.date:
        body["birthDate"] = born.date
    identity = _related_person_identity(nk1, kin, ctx, patient)
    ctx.out.add("RelatedPerson", body, identity, segment_label(nk1))


# --- MRG -> merges --------------------------------------------------------------------------


def map_merges(ctx: Context, target: Identity) -> None:
    """A39/A40: each MRG merges the patient of MRG-1 (prior patient identifier list; the MR
    repetition or the first, identified as PID-3 is) into the patient of the PID before it
    (`target` for the first PID). Later PIDs of the message (one PATIENT group each) are added
    as Patients too, so every merge target is in the Bundle."""
    current: Identity | None = None
    first = True
    for segment in ctx.message.segments:
        if segment.name == "PID":
            current = target if first else _add_merge_target(segment, ctx)
            first = False
        elif segment.name == "MRG":
            _merge(segment, ctx, current)


def _add_merge_target(pid: Segment, ctx: Context) -> Identity | None:
    identity = patient_identity(pid, ctx)
    if identity is None:
        ctx.warn(f"PID[{pid.index}]-3", "no patient identifier; the MRG after it is not applied")
        return None
    ctx.out.add("Patient", _patient_body(pid, ctx), identity, segment_label(pid))
    return identity


def _merge(mrg: Segment, ctx: Context, target: Identity | None) -> None:
    chosen = _pick(mrg.repetitions(1))
    if chosen is None:
        ctx.warn("MRG-1", "no prior patient identifier; nothing to merge")
        return
    source = identity_of(_patient_identifier(chosen, ctx))
    if source is None or target is None:
        return
    if source == target:
        ctx.warn("MRG-1", "the prior identifier is the patient's own; nothing to merge")
        return
    ctx.out.merge(source, target)
