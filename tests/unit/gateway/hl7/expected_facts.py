"""The facts that matter in a FHIR Bundle made from an HL7 v2 message, in a form two engines can
be compared on (tests/unit/gateway/hl7/test_corpus_translation.py).

Engines disagree on almost everything that is not a fact: logical ids (random in ReportStream,
hashes in FHIR-Converter, conditional references in CareBridge), identifier systems (each names
an assigning authority its own way), the offset an instant is written in (FHIR-Converter renders
every instant in +05:30, ReportStream in the generating machine's zone), Bundle type and order.
So a Bundle is read into `Facts`: for each fact name (`Patient.name`, `Observation.value`, ...)
a frozenset of normalised values, gathered over every resource of that type in the Bundle:

- identifiers by value only (systems ignored); identifier type codes separately, as
  (value, code) pairs, compared only for values both sides type (see `compare`);
- codes system-agnostic (`{"8867-4"}`, not `http://loinc.org|8867-4`);
- instants as UTC (a value without an offset is read as UTC, the zone the test translates in);
- names as (family, given...) with whitespace collapsed; phone numbers as their digits;
- per-observation facts keyed by the observation's primary code (its first coding's code).

Pure functions over dicts; nothing here knows CareBridge's mapper code.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

Resource = dict[str, Any]
Facts = dict[str, frozenset[Any]]

#: Resource types whose facts are compared (the issue's list), and the facts of each.
FACT_NAMES: dict[str, tuple[str, ...]] = {
    "Patient": (
        "Patient.identifier",
        "Patient.identifier.type",
        "Patient.name",
        "Patient.birthDate",
        "Patient.gender",
        "Patient.address",
        "Patient.telecom",
    ),
    "Encounter": (
        "Encounter.class",
        "Encounter.status",
        "Encounter.period.start",
        "Encounter.period.end",
        "Encounter.identifier",
    ),
    "Condition": ("Condition.code",),
    "Observation": ("Observation.code", "Observation.value", "Observation.status"),
    "ServiceRequest": (
        "ServiceRequest.identifier",
        "ServiceRequest.code",
        "ServiceRequest.status",
        "ServiceRequest.intent",
        "ServiceRequest.requester",
        "ServiceRequest.performer",
    ),
    "Appointment": (
        "Appointment.status",
        "Appointment.start",
        "Appointment.end",
        "Appointment.identifier",
        "Appointment.participant",
    ),
    # FHIR-Converter writes an A40 merge as a Linkage, CareBridge as a Patient/$merge entry.
    "Merge": ("Merge.pair",),
}


# --- reading a Bundle --------------------------------------------------------------------------


@dataclass
class BundleIndex:
    """The resources of a Bundle, and a resolver for the references between them, whatever
    their form: `Type/id`, a `fullUrl`, or a conditional reference equal to an entry's
    request url (CareBridge)."""

    resources: list[Resource]
    by_reference: dict[str, Resource]

    @classmethod
    def of(cls, bundle: dict[str, Any]) -> BundleIndex:
        resources: list[Resource] = []
        by_reference: dict[str, Resource] = {}
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                continue
            resources.append(resource)
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if rtype and rid:
                by_reference[f"{rtype}/{rid}"] = resource
            if entry.get("fullUrl"):
                by_reference[entry["fullUrl"]] = resource
            url = (entry.get("request") or {}).get("url")
            if url and (entry.get("request") or {}).get("method") == "PUT":
                by_reference[url] = resource
        return cls(resources, by_reference)

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.get("resourceType") == resource_type]

    def types(self) -> set[str]:
        return {r.get("resourceType", "") for r in self.resources}

    def resolve(self, ref: Any) -> Resource | None:
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        return self.by_reference.get(ref["reference"])


# --- normalisers -------------------------------------------------------------------------------

_SPACE = re.compile(r"\s+")


def text(value: Any) -> str:
    """A string with its whitespace collapsed and trimmed ('' for None)."""
    return _SPACE.sub(" ", str(value)).strip() if value is not None else ""


def codes(concept: Any) -> frozenset[str]:
    """The code values of a CodeableConcept (or a Coding), systems ignored."""
    if not isinstance(concept, dict):
        return frozenset()
    codings = concept.get("coding") if "coding" in concept else [concept]
    found = (text(c.get("code")) for c in codings or [] if isinstance(c, dict))
    return frozenset(code for code in found if code)


def primary_code(concept: Any) -> str:
    """The first coding's code (the HL7 CWE's first triplet in every engine), else the text."""
    if isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and text(coding.get("code")):
                return text(coding["code"])
        return text(concept.get("text"))
    return ""


def instant(value: Any) -> str:
    """A FHIR date/dateTime/instant in one form: a date as is (YYYY, YYYY-MM, YYYY-MM-DD), a
    date and time as UTC `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`; a time without an offset is taken
    as UTC (the zone the corpus is translated in). Unreadable text is returned as is."""
    raw = text(value)
    if not raw or "T" not in raw:
        return raw
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return raw
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def number(value: Any) -> str:
    """A decimal in its shortest form: 60, 60.0 and 6.0E1 are all '60'."""
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return text(value)
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


_PHONE_EXTENSION = re.compile(r"\s*(?:x|ext\.?)\s*\d+\s*$", re.IGNORECASE)


def phone(value: Any) -> str:
    """A telecom value for comparison: an e-mail address or URL lower-cased; a phone number as
    its digits without a leading "+<country code> " group or a trailing extension, which engines
    write or leave out differently (`+1 555 5550123 X4`, `(555)555-0123` and `5555550123`
    agree)."""
    raw = text(value)
    if "@" in raw or "://" in raw:
        return raw.lower()
    raw = _PHONE_EXTENSION.sub("", raw)
    if raw.startswith("+") and " " in raw:
        raw = raw.split(" ", 1)[1]
    return "".join(ch for ch in raw if ch.isdigit())


_CONTACTPOINT_AREA = "http://hl7.org/fhir/StructureDefinition/contactpoint-area"
_CONTACTPOINT_LOCAL = "http://hl7.org/fhir/StructureDefinition/contactpoint-local"


def contact_point(cp: Any) -> str:
    """A ContactPoint's number (see `phone`); one without a value but with the IG's
    contactpoint-area/-local extensions (XTN-6/XTN-7, as ReportStream writes them) is that
    area code and local number."""
    if not isinstance(cp, dict):
        return ""
    if text(cp.get("value")):
        return phone(cp["value"])
    parts = {
        e.get("url"): text(e.get("valueString")) for e in cp.get("extension") or [] if isinstance(e, dict)
    }
    return phone(f"{parts.get(_CONTACTPOINT_AREA, '')}{parts.get(_CONTACTPOINT_LOCAL, '')}")


def human_name(name: Any) -> tuple[str, ...] | None:
    """(family, given, given...) of a HumanName; None when it has neither."""
    if not isinstance(name, dict):
        return None
    family = text(name.get("family"))
    given = tuple(text(g) for g in name.get("given") or [] if text(g))
    if not family and not given:
        return None
    return (family, *given)


def address(addr: Any) -> tuple[Any, ...] | None:
    if not isinstance(addr, dict):
        return None
    lines = tuple(text(line) for line in addr.get("line") or [] if text(line))
    out = (lines, text(addr.get("city")), text(addr.get("state")), text(addr.get("postalCode")))
    return out if any(out) else None


def value_of(resource: Resource) -> tuple[Any, ...] | None:
    """An Observation's (or component's) value[x] as a comparable tuple."""
    if "valueQuantity" in resource:
        q = resource["valueQuantity"] or {}
        unit = text(q.get("unit")) or text(q.get("code"))
        amount = number(q["value"]) if q.get("value") is not None else ""
        return ("Quantity", amount, text(q.get("comparator")), unit)
    if "valueString" in resource:
        return ("string", text(resource["valueString"]))
    if "valueCodeableConcept" in resource:
        concept = resource["valueCodeableConcept"] or {}
        return ("code", codes(concept) or frozenset({text(concept.get("text"))}))
    if "valueBoolean" in resource:
        return ("boolean", bool(resource["valueBoolean"]))
    if "valueInteger" in resource:
        return ("Quantity", number(resource["valueInteger"]), "", "")
    if "valueDateTime" in resource:
        return ("dateTime", instant(resource["valueDateTime"]))
    if "valueTime" in resource:
        return ("time", text(resource["valueTime"]))
    if "valuePeriod" in resource:
        p = resource["valuePeriod"] or {}
        return ("Period", instant(p.get("start")), instant(p.get("end")))
    if "valueRatio" in resource:
        r = resource["valueRatio"] or {}
        num, den = r.get("numerator") or {}, r.get("denominator") or {}
        return ("Ratio", number(num.get("value")), number(den.get("value")))
    if "valueRange" in resource:
        r = resource["valueRange"] or {}
        low, high = r.get("low") or {}, r.get("high") or {}
        return ("Range", number(low.get("value")) if low else "", number(high.get("value")) if high else "")
    if "valueSampledData" in resource:
        return ("SampledData", text((resource["valueSampledData"] or {}).get("data")))
    return None


# --- facts -------------------------------------------------------------------------------------

IdentifierFilter = Callable[[dict[str, Any]], bool]


def _keep_all(identifier: dict[str, Any]) -> bool:
    return True


def identifier_values(resource: Resource, keep: IdentifierFilter = _keep_all) -> Iterator[str]:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and text(ident.get("value")) and keep(ident):
            yield text(ident["value"])


def identifier_types(resource: Resource, keep: IdentifierFilter = _keep_all) -> Iterator[tuple[str, str]]:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and text(ident.get("value")) and keep(ident):
            for code in codes(ident.get("type")):
                yield (text(ident["value"]), code)


def name_words(*parts: Any) -> frozenset[str]:
    """The words of a name, case-folded: how a practitioner is compared, since CareBridge refers
    to a practitioner by a logical reference whose display is "Given Family" (the Practitioner
    resource belongs to another service), while other engines include the Practitioner."""
    return frozenset(w.casefold() for part in parts for w in text(part).split())


def _practitioner_names(index: BundleIndex, refs: Iterable[Any]) -> Iterator[frozenset[str]]:
    """The first given name and family of each Practitioner among references, following a
    PractitionerRole to its practitioner (FHIR-Converter puts a role between a ServiceRequest
    and the person); a reference that resolves to nothing in the Bundle gives its display."""
    for ref in refs:
        if not isinstance(ref, dict):
            continue
        target = index.resolve(ref)
        if target is not None and target.get("resourceType") == "PractitionerRole":
            target = index.resolve(target.get("practitioner"))
        if target is None:
            reference = ref.get("reference") or ""
            is_practitioner = ref.get("type") == "Practitioner" or reference.startswith("Practitioner")
            if is_practitioner and text(ref.get("display")):
                yield name_words(ref["display"])
            continue
        if target.get("resourceType") != "Practitioner":
            continue
        for name in target.get("name") or []:
            if isinstance(name, dict) and (name.get("family") or name.get("given")):
                yield name_words(name.get("family"), *(name.get("given") or [])[:1])


def extract(bundle: dict[str, Any], keep: IdentifierFilter = _keep_all) -> tuple[Facts, set[str]]:
    """The facts of a Bundle, and the resource types it has (facts of a type are compared only
    when the expected Bundle has that type; see `compare`). `keep` drops identifiers that are
    not data from the message (CareBridge's own keys for things HL7 gives no identifier)."""
    index = BundleIndex.of(bundle)
    facts: dict[str, set[Any]] = defaultdict(set)
    types = index.types()

    for p in index.of_type("Patient"):
        facts["Patient.identifier"].update(identifier_values(p, keep))
        facts["Patient.identifier.type"].update(identifier_types(p, keep))
        facts["Patient.name"].update(n for n in map(human_name, p.get("name") or []) if n)
        if p.get("birthDate"):
            facts["Patient.birthDate"].add(text(p["birthDate"]))
        if p.get("gender"):
            facts["Patient.gender"].add(text(p["gender"]))
        facts["Patient.address"].update(a for a in map(address, p.get("address") or []) if a)
        facts["Patient.telecom"].update(v for v in map(contact_point, p.get("telecom") or []) if v)

    for e in index.of_type("Encounter"):
        cls = e.get("class")
        if isinstance(cls, dict) and text(cls.get("code")):
            facts["Encounter.class"].add(text(cls["code"]))
        if e.get("status"):
            facts["Encounter.status"].add(text(e["status"]))
        period = e.get("period") or {}
        if period.get("start"):
            facts["Encounter.period.start"].add(instant(period["start"]))
        if period.get("end"):
            facts["Encounter.period.end"].add(instant(period["end"]))
        facts["Encounter.identifier"].update(identifier_values(e, keep))

    for c in index.of_type("Condition"):
        facts["Condition.code"].update(codes(c.get("code")))

    for o in index.of_type("Observation"):
        key = primary_code(o.get("code"))
        facts["Observation.code"].update(codes(o.get("code")))
        value = value_of(o)
        if value is not None:
            facts["Observation.value"].add((key, value))
        for component in o.get("component") or []:
            cvalue = value_of(component)
            if cvalue is not None:
                facts["Observation.value"].add((key, primary_code(component.get("code")), cvalue))
        if o.get("status"):
            facts["Observation.status"].add((key, text(o["status"])))

    for s in index.of_type("ServiceRequest"):
        facts["ServiceRequest.identifier"].update(identifier_values(s, keep))
        facts["ServiceRequest.code"].update(codes(s.get("code")))
        if s.get("status"):
            facts["ServiceRequest.status"].add(text(s["status"]))
        if s.get("intent"):
            facts["ServiceRequest.intent"].add(text(s["intent"]))
        facts["ServiceRequest.requester"].update(_practitioner_names(index, [s.get("requester")]))
        facts["ServiceRequest.performer"].update(_practitioner_names(index, s.get("performer") or []))

    for a in index.of_type("Appointment"):
        if a.get("status"):
            facts["Appointment.status"].add(text(a["status"]))
        if a.get("start"):
            facts["Appointment.start"].add(instant(a["start"]))
        if a.get("end"):
            facts["Appointment.end"].add(instant(a["end"]))
        facts["Appointment.identifier"].update(identifier_values(a, keep))
        facts["Appointment.participant"].add(len(a.get("participant") or []))

    # Merges: FHIR-Converter's Linkage (a "source" item, the surviving record, followed by the
    # "historical" one it replaces) and CareBridge's $merge Parameters, both as
    # (replaced identifier value, surviving identifier value).
    for link in index.of_type("Linkage"):
        types.add("Merge")
        survivor = None
        for item in link.get("item") or []:
            ident = ((item.get("resource") or {}).get("identifier")) or {}
            if item.get("type") == "source":
                survivor = text(ident.get("value"))
            elif item.get("type") == "historical" and survivor:
                facts["Merge.pair"].add((text(ident.get("value")), survivor))
    for params in index.of_type("Parameters"):
        named = {p.get("name"): p for p in params.get("parameter") or [] if isinstance(p, dict)}
        if "source-patient-identifier" in named and "target-patient-identifier" in named:
            types.add("Merge")
            source = text((named["source-patient-identifier"].get("valueIdentifier") or {}).get("value"))
            target = text((named["target-patient-identifier"].get("valueIdentifier") or {}).get("value"))
            facts["Merge.pair"].add((source, target))

    return {name: frozenset(values) for name, values in facts.items()}, types


# --- comparing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    fact: str
    expected: frozenset[Any]
    ours: frozenset[Any]

    def __str__(self) -> str:
        only_expected = sorted(map(_show, self.expected - self.ours))
        only_ours = sorted(map(_show, self.ours - self.expected))
        return f"{self.fact}: only in ours {only_ours}; only in the expected output {only_expected}"


def _show(value: Any) -> str:
    if isinstance(value, frozenset):
        return "{" + ", ".join(sorted(map(_show, value))) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_show, value)) + ")"
    return repr(value)


def compare(expected: Facts, expected_types: set[str], ours: Facts) -> list[Difference]:
    """The facts on which the two Bundles disagree. A resource type is compared only when the
    expected Bundle has it (an engine that does not make Appointments from SIU says nothing
    about ours); when it has it, every fact of the type is compared, empty ones included.
    Identifier type codes are compared for the identifier values both sides type."""
    out: list[Difference] = []
    for rtype, names in FACT_NAMES.items():
        if rtype not in expected_types:
            continue
        for name in names:
            exp, got = expected.get(name, frozenset()), ours.get(name, frozenset())
            if name.endswith(".identifier.type"):
                both = {v for v, _ in exp} & {v for v, _ in got}
                exp = frozenset(p for p in exp if p[0] in both)
                got = frozenset(p for p in got if p[0] in both)
            if exp != got:
                out.append(Difference(name, exp, got))
    return out
