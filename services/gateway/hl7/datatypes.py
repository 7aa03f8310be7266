"""HL7 v2 data types -> FHIR R4 data types, following the V2-to-FHIR IG's data type maps
(hl7.fhir.uv.v2mappings 1.0.0: CX[Identifier], EI[Identifier], XPN[HumanName], XAD[Address],
XTN[ContactPoint], CWE[CodeableConcept], XCN[Practitioner], XON[Organization], PL[Location],
CQ/CWE[Quantity], DR[Period]).

Each converter reads a `Value` (a field repetition or a component) and returns a plain dict,
or None / [] when the value carries nothing: an empty element is never written. Components are
split once per call (`Value.parts`), not once per component.
"""

from __future__ import annotations

from typing import Any

from services.gateway.hl7 import tables
from services.gateway.hl7.context import Context, Identity
from services.gateway.hl7.er7 import Timestamp, Value, read_timestamp


def _at(parts: list[Value], index: int) -> str:
    """Decoded text of the index-th (1-based) part, '' past the end."""
    return parts[index - 1].text if index <= len(parts) else ""


def _part(parts: list[Value], index: int) -> Value | None:
    return parts[index - 1] if index <= len(parts) else None


def _timestamp(text: str, ctx: Context | None) -> Timestamp | None:
    """A DTM in the sender's zone when there is a context; without one only its date is kept
    (a time without a known zone would be a guess)."""
    if not text:
        return None
    if ctx is not None:
        return ctx.timestamp(text)
    ts = read_timestamp(text)
    return Timestamp(date=ts.date) if ts is not None and ts.date else None


def period(start: Timestamp | None, end: Timestamp | None) -> dict[str, str] | None:
    """A FHIR Period from two timestamps; None when both are absent."""
    out: dict[str, str] = {}
    if start is not None and start.value:
        out["start"] = start.value
    if end is not None and end.value:
        out["end"] = end.value
    return out or None


# --- codes ----------------------------------------------------------------------------------


def coding(code: str, display: str, system_name: str) -> dict[str, str] | None:
    """A Coding from a CWE triplet; the system from table 0396 (none when local or unknown)."""
    if not code:
        return None
    out: dict[str, str] = {}
    system = tables.system_for(system_name)
    if system:
        out["system"] = system
    out["code"] = code
    if display:
        out["display"] = display
    return out


def _local_system(name: str, ctx: Context | None) -> str | None:
    """A system for a code in the sender's own table (CWE-3 "L", "99zzz" or a name table 0396
    does not know): scoped to the sending facility, so `system|code` stays searchable and two
    senders' local codes never mix. Names that would not make a clean URN are left out."""
    if ctx is None or not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        return None
    return f"{ctx.facility_system('code')}:{name}"


def _triplet(
    parts: list[Value], first: int, version: int, ctx: Context | None, table: str | None
) -> dict[str, str] | None:
    code, display, system_name = _at(parts, first), _at(parts, first + 1), _at(parts, first + 2)
    if not code:
        return None
    system = tables.system_for(system_name) if system_name else None
    known = tables.V2_TABLE_CODES.get(table, {}) if table else {}
    if system is None and not system_name and code in known:
        system = tables.v2_system(table or "")
    if system is None and system_name:
        system = _local_system(system_name, ctx)
    out: dict[str, str] = {}
    if system:
        out["system"] = system
    if version_text := _at(parts, version):
        out["version"] = version_text
    out["code"] = code
    if display or code in known:
        out["display"] = display or known[code]
    return out


def codeable_concept(
    cwe: Value, ctx: Context | None = None, *, table: str | None = None
) -> dict[str, Any] | None:
    """CWE/CE/CNE -> CodeableConcept (IG CWE[CodeableConcept]): the identifier triplet and the
    alternate one as codings (system via table 0396, version CWE-7/CWE-8), text from CWE-9 (the
    original text) or else the first display. `table` names the v2 table of the field: a code
    sent without a coding system that the table holds gets the table's v2 system. A code with
    no known system is kept with just its code and display."""
    if not cwe:
        return None
    parts = cwe.parts()
    # CWE-10..12 (second alternate, v2.6+) is a third coding, as the IG's CWE map has it.
    triplets = [_triplet(parts, 1, 7, ctx, table), _triplet(parts, 4, 8, ctx, None)]
    if len(parts) >= 10:
        triplets.append(_triplet(parts, 10, 13, ctx, None))
    codings = [c for c in triplets if c]
    text = _at(parts, 9) or _at(parts, 2) or _at(parts, 5)
    if not codings and not text:
        return None
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


def mapped_concept(
    cwe: Value, mapping: dict[str, tables.Code], ctx: Context | None = None, *, table: str | None = None
) -> dict[str, Any] | None:
    """A CodeableConcept whose first coding is the FHIR concept `mapping` (an IG ConceptMap in
    `tables`) gives for the v2 code, followed by the v2 coding itself."""
    concept = codeable_concept(cwe, ctx, table=table)
    if concept is None:
        return None
    target = mapping.get(cwe.get(1))
    if target is not None:
        system, code, display = target
        concept["coding"] = [{"system": system, "code": code, "display": display}, *concept.get("coding", [])]
    return concept


# --- identifiers ----------------------------------------------------------------------------


def identifier_type(code: str) -> dict[str, Any]:
    """Identifier.type from a table 0203 code (IG CX[Identifier]: CX-5 -> type)."""
    display = tables.IDENTIFIER_TYPE.get(code)
    if display is None:
        return {"coding": [{"code": code}]}
    return {"coding": [{"system": tables.v2_system("0203"), "code": code, "display": display}]}


def authority_system(hd: Value | None, type_code: str, ctx: Context) -> str | None:
    """Identifier.system for an assigning authority (HD): one FHIR names (SSA, NPPES), else the
    context's rule (OID, URI, namespace); with no authority, the system a type fixes (SS, NPI)."""
    if hd:
        known = tables.KNOWN_AUTHORITIES.get(hd.get(1).upper()) or tables.KNOWN_AUTHORITIES.get(hd.get(2))
        if known:
            return known
        system = ctx.authority_system(hd)
        if system:
            return system
    return tables.SYSTEM_BY_IDENTIFIER_TYPE.get(type_code)


def identifier(cx: Value, ctx: Context, *, default_system: str | None = None) -> dict[str, Any] | None:
    """CX -> Identifier (IG CX[Identifier]): value CX-1, system from the assigning authority
    CX-4 (else `default_system`), type CX-5 (table 0203), period CX-7/CX-8, assigner display
    CX-4.1. None when CX-1 is empty."""
    parts = cx.parts()
    value = _at(parts, 1)
    if not value:
        return None
    type_code = _at(parts, 5)
    hd = _part(parts, 4)
    out: dict[str, Any] = {}
    system = authority_system(hd, type_code, ctx) or default_system
    if system:
        out["system"] = system
    out["value"] = value
    if type_code:
        out["type"] = identifier_type(type_code)
    valid = period(_timestamp(_at(parts, 7), ctx), _timestamp(_at(parts, 8), ctx))
    if valid:
        out["period"] = valid
    if hd and (assigner := hd.get(1)):
        out["assigner"] = {"display": assigner}
    return out


def identity_of(ident: dict[str, Any] | None) -> Identity | None:
    """The Identity of an Identifier that has both a system and a value."""
    if ident and ident.get("system") and ident.get("value"):
        return Identity(ident["system"], ident["value"])
    return None


def entity_identifier(ei: Value, ctx: Context, *, default_system: str | None = None) -> dict[str, Any] | None:
    """EI (or an EIP's first part) -> Identifier (IG EI[Identifier]): value EI-1; EI-2..4
    (namespace id, universal id, universal id type) are an HD and give the system."""
    parts = ei.parts()
    value = _at(parts, 1)
    if not value:
        return None
    system = None
    if _at(parts, 2) or _at(parts, 3):
        # EI-2..4 are the HD's components one level up; read them as an HD.
        sub = ctx.message.encoding.subcomponent
        hd = Value(sub.join(p.raw for p in parts[1:4]), 1, ctx.message)
        system = ctx.authority_system(hd)
    system = system or default_system
    return {"system": system, "value": value} if system else {"value": value}


# --- names ----------------------------------------------------------------------------------


def _name(
    family: str, given: list[str], prefix: list[str], suffix: list[str], use: str | None
) -> dict[str, Any] | None:
    given = [g for g in given if g]
    suffix = [s for s in suffix if s]
    prefix = [p for p in prefix if p]
    if not family and not given:
        return None
    out: dict[str, Any] = {}
    if use:
        out["use"] = use
    if family:
        out["family"] = family
    if given:
        out["given"] = given
    if prefix:
        out["prefix"] = prefix
    if suffix:
        out["suffix"] = suffix
    return out


def human_name(xpn: Value, ctx: Context | None = None) -> dict[str, Any] | None:
    """XPN -> HumanName (IG XPN[HumanName]): family XPN-1.1 (FN surname), given XPN-2 then the
    middle names XPN-3, suffix XPN-4 with the degree XPN-6 and professional suffix XPN-14,
    prefix XPN-5, use XPN-7 (table 0200), period XPN-12/13 (else the range XPN-10). A "called
    by" name XPN-15 joins the given names of a usual name, as the IG suggests. No `text` is
    made up."""
    if not xpn:
        return None
    parts = xpn.parts()
    use = tables.NAME_USE.get(_at(parts, 7))
    given = [_at(parts, 2), _at(parts, 3)]
    if use == "usual":
        given.append(_at(parts, 15))
    name = _name(_at(parts, 1), given, [_at(parts, 5)], [_at(parts, 4), _at(parts, 6), _at(parts, 14)], use)
    if name is None:
        return None
    valid = period(_timestamp(_at(parts, 12), ctx), _timestamp(_at(parts, 13), ctx))
    if valid is None and (dr := _part(parts, 10)):
        valid = period(_timestamp(dr.get(1), ctx), _timestamp(dr.get(2), ctx))
    if valid:
        name["period"] = valid
    return name


def _xcn_name(parts: list[Value]) -> dict[str, Any] | None:
    """XCN-2..7 (family, given, middle, suffix, prefix, degree) as a HumanName."""
    return _name(
        _at(parts, 2), [_at(parts, 3), _at(parts, 4)], [_at(parts, 6)], [_at(parts, 5), _at(parts, 7)], None
    )


def name_display(name: dict[str, Any] | None) -> str | None:
    """ "Given Family" for a reference's display."""
    if not name:
        return None
    words = [*name.get("given", [])[:1], name.get("family", "")]
    return " ".join(w for w in words if w) or None


# --- addresses and telecoms -----------------------------------------------------------------


def _street_lines(sad: Value | None) -> list[str]:
    """SAD -> Address.line: the street address SAD-1, street name SAD-2 and dwelling number
    SAD-3, each a line of its own (IG SAD[Address])."""
    if not sad:
        return []
    parts = sad.parts()
    return [line for line in (_at(parts, 1), _at(parts, 2), _at(parts, 3)) if line]


def address(xad: Value, ctx: Context) -> dict[str, Any] | None:
    """XAD -> Address (IG XAD[Address]): lines XAD-1 (SAD), XAD-2 and the addressee XAD-19,
    city XAD-3, state XAD-4,
    postalCode XAD-5, country XAD-6, use or type from XAD-7 (table 0190), district XAD-9
    (county), period XAD-12 (DR) or XAD-13/14."""
    if not xad:
        return None
    parts = xad.parts()
    out: dict[str, Any] = {}
    kind = _at(parts, 7)
    if use := tables.ADDRESS_USE.get(kind):
        out["use"] = use
    if address_type := tables.ADDRESS_TYPE.get(kind):
        out["type"] = address_type
    lines = _street_lines(_part(parts, 1))
    lines += [line for line in (_at(parts, 2), _at(parts, 19)) if line]
    if lines:
        out["line"] = lines
    for key, index in (("city", 3), ("district", 9), ("state", 4), ("postalCode", 5), ("country", 6)):
        if text := _at(parts, index):
            out[key] = text
    if not lines and not any(k in out for k in ("city", "state", "postalCode", "country", "district")):
        return None
    dr = _part(parts, 12)
    valid = period(_timestamp(dr.get(1), ctx), _timestamp(dr.get(2), ctx)) if dr else None
    valid = valid or period(_timestamp(_at(parts, 13), ctx), _timestamp(_at(parts, 14), ctx))
    if valid:
        out["period"] = valid
    return out


def _phone_number(parts: list[Value]) -> str:
    """The number of an XTN (IG XTN[ContactPoint]): the unformatted number XTN-12, else one
    composed from country XTN-5, area XTN-6, local XTN-7 and extension XTN-8, else the
    v2.3-style XTN-1."""
    if unformatted := _at(parts, 12):
        return unformatted
    local = _at(parts, 7)
    if local:
        country, area, extension = _at(parts, 5), _at(parts, 6), _at(parts, 8)
        number = " ".join(p for p in (f"+{country}" if country else "", area, local) if p)
        return f"{number} X{extension}" if extension else number
    return _at(parts, 1)


def contact_point(
    xtn: Value, ctx: Context | None = None, *, default_use: str | None = None
) -> list[dict[str, Any]]:
    """XTN -> ContactPoints (IG XTN[ContactPoint]): system from the equipment type XTN-3 (table
    0202; an address in XTN-4 with no XTN-3 is e-mail, a number with no XTN-3 a phone), use
    from XTN-2 (table 0201, else `default_use`), rank XTN-18, period XTN-13/14. An XTN with
    both a number and an e-mail address gives two; an empty one gives []."""
    if not xtn:
        return []
    parts = xtn.parts()
    equipment = _at(parts, 3).upper()
    system, equipment_use = tables.TELECOM_EQUIPMENT.get(equipment, ("", None))
    use = equipment_use or tables.TELECOM_USE.get(_at(parts, 2).upper()) or default_use
    # XTN-4 is an e-mail address for Internet/X.400 equipment, or when no equipment is given.
    email = _at(parts, 4) if system in ("email", "") else ""
    found: list[tuple[str, str]] = []
    if system == "email":
        found.append(("email", email or _at(parts, 1)))
    else:
        number = _phone_number(parts)
        if number:
            # No equipment type: an address is e-mail, anything else a phone (FHIR requires a
            # system with a value, cpt-2; the IG's data-absent-reason is for neither).
            found.append((system or ("email" if "@" in number else "phone"), number))
        if email:
            found.append(("email", email))
    out: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    if use:
        extras["use"] = use
    rank = _at(parts, 18)
    if rank.isdigit() and int(rank) > 0:
        extras["rank"] = int(rank)
    valid = period(_timestamp(_at(parts, 13), ctx), _timestamp(_at(parts, 14), ctx))
    if valid:
        extras["period"] = valid
    for kind, value in found:
        if value:
            out.append({"system": kind, "value": value, **extras})
    return out


# --- practitioners, organizations, locations ------------------------------------------------


def _xcn_identifier(parts: list[Value], ctx: Context) -> dict[str, Any] | None:
    value = _at(parts, 1)
    if not value:
        return None
    type_code = _at(parts, 13)
    system = authority_system(_part(parts, 9), type_code, ctx) or ctx.facility_system("practitioner")
    out: dict[str, Any] = {"system": system, "value": value}
    if type_code:
        out["type"] = identifier_type(type_code)
    return out


def practitioner_reference(xcn: Value, ctx: Context) -> dict[str, Any] | None:
    """XCN -> a logical reference to a Practitioner (R4 references.html#logical), as the
    Practitioner is another service's: identifier XCN-1 (system from the authority XCN-9, else
    NPI by type XCN-13, else the sending facility's), display "Given Family". None when the
    XCN has neither an id nor a name."""
    if not xcn:
        return None
    parts = xcn.parts()
    ident = _xcn_identifier(parts, ctx)
    display = name_display(_xcn_name(parts))
    if ident is None and display is None:
        return None
    out: dict[str, Any] = {}
    if ident is not None:
        out["identifier"] = ident
    if display:
        out["display"] = display
    out["type"] = "Practitioner"
    return out


def practitioner_resource(xcn: Value, ctx: Context) -> tuple[dict[str, Any], Identity] | None:
    """XCN -> a Practitioner body {identifier, name} and its Identity (IG XCN[Practitioner]),
    for messages that carry the provider (PRD, ROL); None without an id, as a Practitioner is
    found by its identifier."""
    if not xcn:
        return None
    parts = xcn.parts()
    ident = _xcn_identifier(parts, ctx)
    identity = identity_of(ident)
    if ident is None or identity is None:
        return None
    body: dict[str, Any] = {"identifier": [ident]}
    name = _xcn_name(parts)
    if name:
        body["name"] = [name]
    return body, identity


def organization_name_and_id(xon: Value, ctx: Context) -> tuple[str, dict[str, Any] | None]:
    """XON -> (name XON-1, Identifier from XON-10, else the v2.4-style XON-3, with its system
    from the assigning authority XON-6 and type XON-7) (IG XON[Organization])."""
    if not xon:
        return "", None
    parts = xon.parts()
    name = _at(parts, 1)
    value = _at(parts, 10) or _at(parts, 3)
    if not value:
        return name, None
    type_code = _at(parts, 7)
    system = authority_system(_part(parts, 6), type_code, ctx) or ctx.facility_system("organization")
    ident: dict[str, Any] = {"system": system, "value": value}
    if type_code:
        ident["type"] = identifier_type(type_code)
    return name, ident


def _labelled(label: str, text: str) -> str:
    """ "Room 12" for "12"; a value that already says what it is ("Bed 03") is kept as is."""
    if not text or text.lower().startswith(label.lower()):
        return text
    return f"{label} {text}"


def location_display(pl: Value) -> str | None:
    """PL -> readable text, e.g. "4 East, Room 136, Bed B, Building 2, Floor 3, North Hospital"
    (point of care PL-1, room PL-2, bed PL-3, building PL-7, floor PL-8, facility PL-4), or the
    location description PL-9 when that is all there is."""
    if not pl:
        return None
    parts = pl.parts()
    pieces = [
        _at(parts, 1),
        _labelled("Room", _at(parts, 2)),
        _labelled("Bed", _at(parts, 3)),
        _labelled("Building", _at(parts, 7)),
        _labelled("Floor", _at(parts, 8)),
        _at(parts, 4),
    ]
    return ", ".join(p for p in pieces if p) or _at(parts, 9) or None


# --- quantities -----------------------------------------------------------------------------


def _number(value: str) -> int | float | None:
    text = value.strip()
    if not text:
        return None
    try:
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:
        return None


def quantity(value: str, units: Value | None, ctx: Context | None = None) -> dict[str, Any] | None:
    """A number and a CWE unit -> Quantity (IG CWE[Quantity]): UCUM when the unit's coding
    system is UCUM, or when none is given and the unit is UCUM as written; otherwise the unit
    is kept as text. None when `value` is not a number."""
    number = _number(value)
    if number is None:
        return None
    out: dict[str, Any] = {"value": number}
    if not units:
        return out
    parts = units.parts()
    code, display, system_name = _at(parts, 1), _at(parts, 2), _at(parts, 3)
    system = (
        tables.system_for(system_name)
        if system_name
        else (tables.UCUM if code in tables.UCUM_UNITS else None)
    )
    if system is None and system_name:
        system = _local_system(system_name, ctx)
    out["unit"] = display or code
    if system and code:
        out["system"] = system
        out["code"] = code
    return out


__all__ = [
    "address",
    "authority_system",
    "codeable_concept",
    "coding",
    "contact_point",
    "entity_identifier",
    "human_name",
    "identifier",
    "identifier_type",
    "identity_of",
    "location_display",
    "mapped_concept",
    "name_display",
    "organization_name_and_id",
    "period",
    "practitioner_reference",
    "practitioner_resource",
    "quantity",
]
