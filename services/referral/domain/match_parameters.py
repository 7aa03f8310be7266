"""`HealthcareService/$match` as data: its input Parameters read into a query, its result as a
searchset Bundle, and intake's SDOH needs events read into the needs referral keeps. No I/O.

Input (a Parameters resource; every parameter optional, but there must be a need from somewhere):

- `patient` (valueReference Patient/[id]): whose needs, languages, address position, birth date.
- `need` (valueCoding, valueCodeableConcept or valueCode; 0..*): a Gravity SDOH category, or a
  service category/type coding. Default: the patient's latest screened needs.
- `language` (valueCode; 0..*): BCP-47, preferred first. Default: Patient.communication.
- `latitude`, `longitude` (valueDecimal): where the person is. Default: the geolocation of their
  home address.
- `eligibility` (valueCode; 0..*): rules the person is known to meet: veteran, low-income,
  uninsured, resident.
- `count` (valueInteger, 1-100): how many services (default 10).
- `now` (valueDateTime): when "open now" is judged (default: the server's clock).
- `within-days` (valueInteger, 0-14): how far ahead "opens soon" looks (default 3).
- `include-unavailable` (valueBoolean): also list full and ineligible services, ranked last.

Output: a searchset Bundle of HealthcareServices, best first, each with `search.score` and one
`match-reason` extension per factor (code, text, points), then the Locations of those services
(`search.mode` include).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from services.referral.domain import directory_codes as codes
from services.referral.domain.directory_index import Position
from services.referral.domain.matching import Match, Need
from shared.errors import InvalidInput, PoisonMessage

MATCH_REASON: Final = "http://carebridge.example/fhir/StructureDefinition/match-reason"
MATCH_DISTANCE: Final = "http://carebridge.example/fhir/StructureDefinition/match-distance"
DEFAULT_COUNT: Final = 10
MAX_COUNT: Final = 100
_VALUE_KEYS: Final = {
    "patient": ("valueReference",),
    "need": ("valueCoding", "valueCodeableConcept", "valueCode"),
    "language": ("valueCode", "valueString"),
    "latitude": ("valueDecimal",),
    "longitude": ("valueDecimal",),
    "eligibility": ("valueCode",),
    "count": ("valueInteger",),
    "now": ("valueDateTime", "valueInstant"),
    "within-days": ("valueInteger",),
    "include-unavailable": ("valueBoolean",),
}
_REPEATABLE: Final = frozenset({"need", "language", "eligibility"})


@dataclass(frozen=True, slots=True)
class MatchQuery:
    patient: str | None = None
    needs: tuple[Need, ...] = ()
    languages: tuple[str, ...] = ()
    position: Position | None = None
    qualifications: frozenset[str] = frozenset()
    count: int = DEFAULT_COUNT
    now: datetime | None = None
    within_days: int = 3
    include_unavailable: bool = False


def parse_match_parameters(parameters: Any) -> MatchQuery:
    """The query a Parameters resource asks; InvalidInput (400) names the parameter at fault."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise InvalidInput("$match takes a Parameters resource")
    given = parameters.get("parameter") or []
    if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
        raise InvalidInput(
            "Parameters.parameter must be a list of objects", expression=["Parameters.parameter"]
        )
    values: dict[str, list[Any]] = {}
    for p in given:
        name = p.get("name")
        if name not in _VALUE_KEYS:
            known = ", ".join(_VALUE_KEYS)
            raise InvalidInput(f"$match has no parameter {name!r} (it takes {known})", expression=[_at(name)])
        value = next((p[k] for k in _VALUE_KEYS[name] if k in p), None)
        if value is None:
            types = " or ".join(_VALUE_KEYS[name])
            raise InvalidInput(f"Parameter {name!r} needs {types}", expression=[_at(name)])
        values.setdefault(name, []).append(value)
        if len(values[name]) > 1 and name not in _REPEATABLE:
            raise InvalidInput(f"Parameter {name!r} may appear once", expression=[_at(name)])
    return MatchQuery(
        patient=_patient(values.get("patient")),
        needs=tuple(n for v in values.get("need", []) for n in needs_from_value(v)),
        languages=tuple(_language(v) for v in values.get("language", [])),
        position=_position(values.get("latitude"), values.get("longitude")),
        qualifications=frozenset(_qualification(v) for v in values.get("eligibility", [])),
        count=_integer(values.get("count"), "count", 1, MAX_COUNT, DEFAULT_COUNT),
        now=_now(values.get("now")),
        within_days=_integer(values.get("within-days"), "within-days", 0, 14, 3),
        include_unavailable=_boolean(values.get("include-unavailable")),
    )


def _at(name: Any) -> str:
    return f"Parameters.parameter('{name}')"


def _patient(values: list[Any] | None) -> str | None:
    if not values:
        return None
    reference = values[0].get("reference") if isinstance(values[0], dict) else None
    rtype, _, id_ = str(reference or "").rpartition("/")
    if not isinstance(reference, str) or not rtype.endswith("Patient") or not id_:
        raise InvalidInput("patient must reference a Patient (Patient/[id])", expression=[_at("patient")])
    return id_


def needs_from_value(value: Any) -> list[Need]:
    """A need as Coding, CodeableConcept (each coding) or a bare Gravity category code."""
    if isinstance(value, str):
        return [_need({"system": codes.SDOHCC, "code": value})]
    if isinstance(value, dict) and "coding" in value:
        return [_need(c) for c in value.get("coding") or []]
    return [_need(value)]


def _need(coding: Any) -> Need:
    if not isinstance(coding, dict) or not isinstance(coding.get("code"), str) or not coding["code"]:
        raise InvalidInput("need: a Coding needs a code", expression=[_at("need")])
    system = coding.get("system")
    if not system and coding["code"] in codes.GRAVITY_CATEGORIES:
        system = codes.SDOHCC
    if not isinstance(system, str) or not system:
        raise InvalidInput(f"need {coding['code']!r}: give its system", expression=[_at("need")])
    if system == codes.SDOHCC and coding["code"] not in codes.GRAVITY_CATEGORIES:
        raise InvalidInput(
            f"need {coding['code']!r} is not a Gravity SDOH category", expression=[_at("need")]
        )
    display = coding.get("display") if isinstance(coding.get("display"), str) else None
    return Need(system, coding["code"], display)


def _language(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("language must be a BCP-47 code such as es", expression=[_at("language")])
    return value.strip()


def _position(lat: list[Any] | None, lon: list[Any] | None) -> Position | None:
    if lat is None and lon is None:
        return None
    if lat is None or lon is None:
        raise InvalidInput("Give latitude and longitude together", expression=[_at("latitude")])
    la, lo = lat[0], lon[0]
    if not _number(la) or not _number(lo) or not -90 <= la <= 90 or not -180 <= lo <= 180:
        raise InvalidInput("latitude must be -90..90 and longitude -180..180", expression=[_at("latitude")])
    return Position(float(la), float(lo))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _qualification(value: Any) -> str:
    allowed = [c for c in codes.ELIGIBILITY_DISPLAYS if c != "age"]
    if value not in allowed:
        raise InvalidInput(
            f"eligibility must be one of {', '.join(allowed)}", expression=[_at("eligibility")]
        )
    return str(value)


def _integer(values: list[Any] | None, name: str, low: int, high: int, default: int) -> int:
    if not values:
        return default
    value = values[0]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}", expression=[_at(name)])
    return value


def _boolean(values: list[Any] | None) -> bool:
    if not values:
        return False
    if not isinstance(values[0], bool):
        raise InvalidInput(
            "include-unavailable must be true or false", expression=[_at("include-unavailable")]
        )
    return values[0]


def _now(values: list[Any] | None) -> datetime | None:
    if not values:
        return None
    try:
        moment = datetime.fromisoformat(str(values[0]).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "now must be a dateTime such as 2026-11-20T10:00:00Z", expression=[_at("now")]
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the answer --------------------------------------------------------------------------------------


def match_bundle(
    matches: Sequence[Match],
    *,
    base: str,
    services: Mapping[str, bytes],
    locations: Mapping[str, bytes],
) -> bytes:
    """A searchset of the matched services' stored bytes, best first, then their Locations."""
    entries = []
    for match in matches:
        search: dict[str, Any] = {"extension": [_reason_extension(r) for r in match.reasons]}
        if match.distance_km is not None:
            search["extension"].append(
                {
                    "url": MATCH_DISTANCE,
                    "valueQuantity": {
                        "value": match.distance_km,
                        "unit": "km",
                        "system": codes.UCUM,
                        "code": "km",
                    },
                }
            )
        search.update({"mode": "match", "score": match.score})
        entries.append(_entry(f"{base}/{match.service.reference}", services[match.service.id], search))
    included: dict[str, None] = {}
    for match in matches:
        for site in match.service.sites:
            included.setdefault(site.reference.removeprefix("Location/"))
    for location_id in included:
        if location_id in locations:
            entries.append(
                _entry(f"{base}/Location/{location_id}", locations[location_id], {"mode": "include"})
            )
    head = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "total": len(matches)})
    if not entries:
        return head
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def _entry(full_url: str, resource: bytes, search: dict[str, Any]) -> bytes:
    return (
        b'{"fullUrl":'
        + orjson.dumps(full_url)
        + b',"resource":'
        + resource
        + b',"search":'
        + orjson.dumps(search)
        + b"}"
    )


def _reason_extension(reason: Any) -> dict[str, Any]:
    return {
        "url": MATCH_REASON,
        "extension": [
            {"url": "factor", "valueCode": reason.factor},
            {"url": "code", "valueCode": reason.code},
            {"url": "text", "valueString": reason.text},
            {"url": "points", "valueDecimal": round(reason.points, 4)},
        ],
    }


# --- intake's needs events ---------------------------------------------------------------------------


def needs_record(data: Any) -> tuple[str, dict[str, Any]]:
    """(patient id, what referral keeps) from an SDOH needs event's Parameters (intake's
    screening.needs_parameters: patient, questionnaireResponse, need 1..*). PoisonMessage when it
    is not that shape, since retrying cannot fix it."""
    params = (
        data.get("parameter") if isinstance(data, dict) and data.get("resourceType") == "Parameters" else None
    )
    if not isinstance(params, list):
        raise PoisonMessage("An SDOH needs event carries a Parameters resource")
    patient = next(
        (p.get("valueReference") for p in params if isinstance(p, dict) and p.get("name") == "patient"), None
    )
    reference = str((patient or {}).get("reference") or "")
    if not reference.startswith("Patient/") or len(reference) <= len("Patient/"):
        raise PoisonMessage("An SDOH needs event names its Patient (patient: Patient/[id])")
    needs = [p.get("valueCoding") for p in params if isinstance(p, dict) and p.get("name") == "need"]
    if not needs or not all(isinstance(n, dict) and n.get("code") for n in needs):
        raise PoisonMessage("An SDOH needs event carries at least one need Coding")
    source = next(
        (
            p.get("valueReference")
            for p in params
            if isinstance(p, dict) and p.get("name") == "questionnaireResponse"
        ),
        None,
    )
    record = {
        "patient": reference,
        "needs": needs,
        **({"source": source} if isinstance(source, dict) else {}),
    }
    return reference.removeprefix("Patient/"), record


def needs_from_record(record: Mapping[str, Any]) -> list[Need]:
    return [n for coding in record.get("needs") or [] for n in needs_from_value(coding)]
