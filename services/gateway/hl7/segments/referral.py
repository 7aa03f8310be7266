"""REF^I12/I13/I14: RF1 + PRD -> a referral ServiceRequest with its Practitioners and Organizations.

The V2-to-FHIR IG (hl7.fhir.uv.v2mappings 1.0.0) has no REF message map and no RF1 or PRD
segment map, so this follows the v2 mappings FHIR itself publishes for the referral request
(R4 servicerequest-mappings.html "HL7 v2", and the STU3 ReferralRequest mappings it came from:
identifier RF1-6/RF1-11, status RF1-1, priority RF1-2, specialty RF1-3, requester the PRD whose
role is RP, recipient the PRD whose role is RT), the v2.5.1 definitions of RF1 and PRD (Chapter
11, 11.6.1 and 11.6.3) and the IG's data type maps for the PRD fields (XPN, XAD, XTN, XON, PL).

ServiceRequest, Practitioner and Organization are all referral's, so the ServiceRequest's
requester and performer are conditional references to the resources made here; the patient is
resolved by referral through its Patient projection; Encounter and Condition are intake's and
are referenced logically, by identifier.
"""

from __future__ import annotations

from typing import Any

from services.gateway.hl7 import tables
from services.gateway.hl7.context import AUTHORITY_SYSTEM_PREFIX, Context, Identity, segment_label
from services.gateway.hl7.datatypes import (
    address,
    codeable_concept,
    contact_point,
    entity_identifier,
    human_name,
    identifier,
    identifier_type,
    identity_of,
    organization_name_and_id,
)
from services.gateway.hl7.er7 import Segment, Value
from services.gateway.hl7.segments.orders import local_identity, logical_reference, note_text

_V2_0203 = tables.v2_system("0203")
_SNOMED = "http://snomed.info/sct"
_RFC_3986 = "urn:ietf:rfc:3986"

#: SNOMED CT 3457005 "Patient referral (procedure)": the code of a referral that names no
#: requested service of its own.
REFERRAL_CODE = {"system": _SNOMED, "code": "3457005", "display": "Patient referral"}

#: The trigger: I12 new referral, I13 modify, I14 cancel (v2.5.1 11.3). A cancelled referral is
#: revoked whatever RF1-1 says.
_CANCEL = "I14"

#: Table 0283 Referral Status -> request-status (CareBridge's reading; no published map):
#: pending (sent, awaiting acceptance) and accepted referrals are active, as a sent referral is
#: in SDOH-CC's workflow while its Task is requested or accepted; a rejected one is revoked; an
#: expired one is revoked too, as its authorization ended with no sign the care was given
#: ("completed" would claim it was).
REFERRAL_STATUS = {"A": "active", "P": "active", "R": "revoked", "E": "revoked"}

#: Table 0280 Referral Priority -> request-priority.
REFERRAL_PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}

#: The v2.5.1 values of the RF1 tables, to give a code sent without a coding system its table.
_TABLES = {
    "0281": {  # Referral Type (RF1-3)
        "Lab": "Laboratory",
        "Rad": "Radiology",
        "Med": "Medical",
        "Skn": "Skilled Nursing",
        "Psy": "Psychiatric",
        "Hom": "Home Care",
    },
    "0284": {"A": "Ambulatory", "E": "Emergency", "I": "Inpatient", "O": "Outpatient"},  # RF1-5
    "0336": {"O": "Provider Ordered", "P": "Patient Preference", "S": "Second Opinion", "W": "Work Load"},
}

#: Table 0286 Provider Role (PRD-1): RP referring provider, RT referred-to provider, CP
#: consulting provider, PP primary care provider.
_REFERRING, _REFERRED_TO = "RP", "RT"

#: Segments inside a group of the REF_I12 structure (PROCEDURE, OBSERVATION, AUT): an NTE after
#: them is that group's note, not the referral's (v2.5.1 11.5.1).
_GROUP_SEGMENTS = frozenset({"PR1", "AUT", "CTD", "OBR", "OBX", "PRT", "NTE"})


def _table_concept(cwe: Value, table: str, ctx: Context) -> dict[str, Any] | None:
    """A CWE of an RF1 table: the code gets the v2 table's system when the sender names none."""
    concept = codeable_concept(cwe, ctx)
    if concept is None:
        return None
    code, known = cwe.get(1), _TABLES.get(table, {})
    first = concept.get("coding", [{}])[0]
    if code in known and "system" not in first and not cwe.get(3):
        first.update({"system": tables.v2_system(table), "code": code, "display": cwe.get(2) or known[code]})
    return concept


# --- providers ----------------------------------------------------------------------------


def _provider_identifier(rep: Value, ctx: Context) -> dict[str, Any] | None:
    """PRD-7 (PLN: id ^ type (table 0338) ^ state or other qualifier ^ expiration date) ->
    Identifier. An NPI is an NPI; a qualifier (the issuing state of a license) names the
    issuer; otherwise the number is unique within the sending facility. A sender that puts a
    CX here (an authority in the 4th component) is read as a CX."""
    fourth = rep.get(4)
    if rep.get(5) or (fourth and not fourth.isdigit()):
        return identifier(rep, ctx, default_system=ctx.facility_system("provider"))
    value, kind, qualifier = rep.get(1), rep.get(2), rep.get(3)
    if not value:
        return None
    if kind.upper() == "NPI":
        system = tables.US_NPI
    elif qualifier:
        system = f"{AUTHORITY_SYSTEM_PREFIX}{qualifier}:{kind or 'id'}"
    else:
        system = ctx.facility_system(f"provider-{(kind or 'id').lower()}")
    out: dict[str, Any] = {"system": system, "value": value}
    if kind:
        out["type"] = identifier_type(kind)
    expires = ctx.timestamp(fourth, "PRD-7.4") if fourth else None
    if expires is not None and expires.value:
        out["period"] = {"end": expires.value}
    return out


def _is_organization(name: Value) -> bool:
    """A PRD-2 with no given or middle name and no prefix is a clinic or agency, not a person
    (a referral to "Sunrise Community Mental Health" is sent that way)."""
    return bool(name.get(1)) and not (name.get(2) or name.get(3) or name.get(5))


def _practitioner(prd: Segment, ctx: Context, idents: list[dict[str, Any]]) -> dict[str, Any] | None:
    """PRD -> Practitioner: identifiers PRD-7, name PRD-2, address PRD-3, telecom PRD-5."""
    name = human_name(prd.field(2), ctx)
    identity = next((i for i in map(identity_of, idents) if i is not None), None)
    if identity is None:
        if name is None:
            return None
        given = (name.get("given") or [""])[0]
        sender = ctx.sending_facility or ctx.sending_application
        identity = local_identity(ctx, "provider", sender, name.get("family", ""), given)
    body: dict[str, Any] = {"identifier": idents}
    if name:
        body["name"] = [name]
    if telecom := [c for rep in prd.repetitions(5) for c in contact_point(rep, ctx, default_use="work")]:
        body["telecom"] = telecom
    if addresses := [a for rep in prd.repetitions(3) if (a := address(rep, ctx))]:
        body["address"] = addresses
    return ctx.out.add("Practitioner", body, identity, segment_label(prd))


def _organization_body(prd: Segment, ctx: Context, as_provider: bool) -> tuple[dict[str, Any], str] | None:
    """The provider's organization: PRD-10 (v2.7+) with PRD-11 address and PRD-13 telecom, else
    the facility of the provider location PRD-4 (PL-4, an HD); or, for a PRD-2 that names an
    organization, PRD-2 itself with PRD-3 and PRD-5."""
    if as_provider:
        name, fields = prd.field(2).get(1), (3, 5)
        ident = None
    elif prd.field(10):
        name, ident = organization_name_and_id(prd.field(10), ctx)
        fields = (11, 13)
    elif facility := prd.field(4)[4]:
        name, ident, fields = facility.get(1), _facility_identifier(facility), (0, 0)
    else:
        return None
    if not name and ident is None:
        return None
    body: dict[str, Any] = {"identifier": [ident] if ident else []}
    if name:
        body["name"] = name
    if fields[1] and (telecom := [c for r in prd.repetitions(fields[1]) for c in contact_point(r, ctx)]):
        body["telecom"] = telecom
    if fields[0] and (addresses := [a for r in prd.repetitions(fields[0]) if (a := address(r, ctx))]):
        body["address"] = addresses
    return body, name


def _facility_identifier(hd: Value) -> dict[str, Any] | None:
    """An HD's universal id as the organization's identifier, when it is an OID, a UUID or a URI
    (IG HD[Organization]: identifier system urn:ietf:rfc:3986); other kinds (DNS...) name no URI."""
    universal, kind = hd.get(2), hd.get(3).upper()
    prefix = {"ISO": "urn:oid:", "UUID": "urn:uuid:", "URI": "", "URL": ""}.get(kind)
    if not universal or prefix is None:
        return None
    return {"system": _RFC_3986, "value": prefix + universal}


def _organization(
    prd: Segment, ctx: Context, as_provider: bool, idents: list[dict[str, Any]]
) -> dict[str, Any] | None:
    found = _organization_body(prd, ctx, as_provider)
    if found is None:
        return None
    body, name = found
    if as_provider:
        body["identifier"] = idents
    identity = next((i for i in map(identity_of, body["identifier"]) if i is not None), None)
    if identity is None:
        identity = local_identity(ctx, "organization", ctx.sending_facility or ctx.sending_application, name)
    return ctx.out.add("Organization", body, identity, segment_label(prd))


def _providers(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    """Each PRD -> a Practitioner and/or an Organization (PRD-1 role, table 0286); returns
    role -> references, practitioners first."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for prd in ctx.message.all("PRD"):
        role = prd.field(1).get(1).upper() or "?"
        idents = [i for rep in prd.repetitions(7) if (i := _provider_identifier(rep, ctx))]
        as_org = _is_organization(prd.field(2))
        refs = [] if as_org else [p for p in (_practitioner(prd, ctx, idents),) if p]
        if org := _organization(prd, ctx, as_org, idents):
            refs.append(org)
        if not refs:
            ctx.warn(segment_label(prd), "a PRD without a name, identifier or organization; not mapped")
        by_role.setdefault(role, []).extend(refs)
    return by_role


# --- the referral -------------------------------------------------------------------------


def _identifiers(rf1: Segment, ctx: Context) -> list[dict[str, Any]]:
    """RF1-6 originating referral id (typed PLAC: the referrer's number) and RF1-11 external
    referral ids (a payer's or the receiver's); without a namespace unique within the sender."""
    out = []
    originating = entity_identifier(rf1.field(6), ctx, default_system=ctx.facility_system("referral"))
    if originating is not None:
        out.append({**originating, "type": {"coding": [{"system": _V2_0203, "code": "PLAC"}]}})
    for rep in rf1.repetitions(11):
        external = entity_identifier(rep, ctx, default_system=ctx.facility_system("external-referral"))
        if external is not None:
            out.append(external)
    return out


def _status(rf1: Segment, ctx: Context) -> str:
    if ctx.trigger == _CANCEL:
        return "revoked"
    code = rf1.field(1).get(1).upper()
    if code and code not in REFERRAL_STATUS:
        ctx.warn("RF1-1", f"referral status {code!r} is not in table 0283; taken as active")
    return REFERRAL_STATUS.get(code, "active")


def _requested_service(ctx: Context) -> dict[str, Any]:
    """An OBR with no results under it names a requested service (R4 servicerequest-mappings:
    code OBR-4); an OBR with OBX is a result supporting the referral (REF_I12 OBSERVATION group),
    mapped as Observations by orders.map_observations. Otherwise the generic referral code."""
    segments = ctx.message.segments
    for i, segment in enumerate(segments):
        if segment.name != "OBR":
            continue
        following = next((s.name for s in segments[i + 1 :] if s.name not in ("NTE", "PRT")), "")
        if following != "OBX" and (code := codeable_concept(segment.field(4), ctx)):
            return code
    return {"coding": [REFERRAL_CODE], "text": REFERRAL_CODE["display"]}


def _notes(rf1: Segment, ctx: Context) -> list[dict[str, str]]:
    """RF1-24 comment, then the message's own NTEs (the NOTES group after PV1/PV2, and any NTE
    that follows no procedure, authorization or observation group)."""
    out = [{"text": comment}] if (comment := rf1.get(24)) else []
    in_group = False
    for segment in ctx.message.segments:
        if segment.name == "NTE":
            if not in_group and (text := note_text(segment)):
                out.append({"text": text})
        else:
            in_group = segment.name in _GROUP_SEGMENTS
    return out


def _reasons(rf1: Segment, ctx: Context) -> list[dict[str, Any]]:
    """RF1-10 referral reasons (table 0336) and RF1-14 referral reason text."""
    out = [c for rep in rf1.repetitions(10) if (c := _table_concept(rep, "0336", ctx))]
    if text := rf1.get(14):
        out.append({"text": text})
    return out


def _dates(rf1: Segment, ctx: Context, body: dict[str, Any]) -> None:
    """authoredOn: RF1-9 process date ("the date on which the referral originated"), else RF1-7
    effective date; occurrencePeriod: RF1-7 effective to RF1-8 expiration, the window in which
    the referred care is authorized to happen."""
    effective = ctx.timestamp(rf1.field(7), "RF1-7")
    expires = ctx.timestamp(rf1.field(8), "RF1-8")
    processed = ctx.timestamp(rf1.field(9), "RF1-9")
    authored = processed or effective
    if authored is not None and authored.value:
        body["authoredOn"] = authored.value
    window = {
        k: ts.value for k, ts in (("start", effective), ("end", expires)) if ts is not None and ts.value
    }
    if window:
        body["occurrencePeriod"] = window


def _referral_identity(identifiers: list[dict[str, Any]], ctx: Context) -> Identity:
    identity = next((i for i in map(identity_of, identifiers) if i is not None), None)
    if identity is None:
        ctx.warn("RF1-6", "no originating or external referral id (RF1-6, RF1-11); identified by the message")
        identity = local_identity(
            ctx, "referral", ctx.sending_facility or ctx.sending_application, ctx.control_id
        )
    return identity


def map_referral(
    ctx: Context,
    patient_ref: dict[str, Any],
    encounter_ref: dict[str, Any] | None,
    condition_refs: list[dict[str, Any]],
) -> None:
    """RF1 + PRDs (+ an OBR that requests, + the DG1 Conditions the caller mapped) -> the
    referral ServiceRequest, with a Practitioner/Organization per PRD."""
    rf1 = ctx.message.first("RF1")
    if rf1 is None:
        ctx.warn("RF1", "no RF1 segment; no referral ServiceRequest")
        return
    identifiers = _identifiers(rf1, ctx)
    identity = _referral_identity(identifiers, ctx)
    providers = _providers(ctx)
    body: dict[str, Any] = {"identifier": identifiers, "status": _status(rf1, ctx), "intent": "order"}
    if category := _table_concept(rf1.field(3), "0281", ctx):
        body["category"] = [category]  # RF1-3 referral type: the kind of care (Psy, Med...)
    if priority := REFERRAL_PRIORITY.get(rf1.field(2).get(1).upper()):
        body["priority"] = priority
    body["code"] = _requested_service(ctx)
    body["subject"] = patient_ref
    if encounter := logical_reference(encounter_ref, "Encounter"):
        body["encounter"] = encounter
    _dates(rf1, ctx, body)
    # The referring provider, else the first provider that is not the referred-to one.
    others = (refs for role, refs in providers.items() if role != _REFERRED_TO)
    requesters = providers.get(_REFERRING) or next(others, [])
    if requesters:
        body["requester"] = requesters[0]
    if performers := providers.get(_REFERRED_TO):
        body["performer"] = performers
    # RF1-5 referral category (table 0284: inpatient, outpatient, ambulatory, emergency) is the
    # setting the care is to be given in: ServiceRequest.locationCode.
    if setting := _table_concept(rf1.field(5), "0284", ctx):
        body["locationCode"] = [setting]
    if reasons := _reasons(rf1, ctx):
        body["reasonCode"] = reasons
    if conditions := [c for ref in condition_refs if (c := logical_reference(ref, "Condition"))]:
        body["reasonReference"] = conditions
    if notes := _notes(rf1, ctx):
        body["note"] = notes
    ctx.out.add("ServiceRequest", body, identity, segment_label(rf1))


__all__ = ["REFERRAL_CODE", "REFERRAL_PRIORITY", "REFERRAL_STATUS", "map_referral"]
