"""The directory as the matcher reads it: each HealthcareService with its Locations reduced to
the facts ranking needs (codes, languages, sites and positions, hours, eligibility, capacity).
Built once from stored resources and reused for every match. No I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

from services.referral.domain import directory_codes as codes
from services.referral.domain.opening_hours import DAYS, Opening, weekly_timetable


@dataclass(frozen=True, slots=True)
class Position:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Site:
    reference: str
    name: str
    position: Position | None


@dataclass(frozen=True, slots=True)
class Requirement:
    """An eligibility rule other than age: our code (veteran, low-income, ...) or system|code."""

    code: str
    display: str


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    id: str
    name: str
    organization: str
    #: (system, code) of every category, type and specialty coding.
    codings: frozenset[tuple[str, str]]
    gravity: frozenset[str]
    service_categories: frozenset[str]
    #: Primary language subtags (es for es-MX), lower case, as listed.
    languages: tuple[str, ...]
    interpreter: bool
    remote: bool
    sites: tuple[Site, ...]
    #: The sites that have a position.
    placed: tuple[Site, ...]
    openings: tuple[Opening, ...]
    #: notAvailable periods as given (ISO dates or dateTimes), resolved in the service's zone.
    closures: tuple[tuple[str | None, str | None], ...]
    zone: str | None
    #: The openings as a weekly timetable: (start, end) minutes from Monday 00:00, local time,
    #: sorted and merged (a span reaching midnight joins the next day's).
    week: tuple[tuple[int, int], ...]
    min_age: int | None
    max_age: int | None
    requirements: tuple[Requirement, ...]
    capacity: int | None
    active: bool

    @property
    def reference(self) -> str:
        return f"HealthcareService/{self.id}"


class DirectoryIndex:
    """The services of a directory, by id, with the Locations they reference resolved."""

    def __init__(self, services: Sequence[ServiceEntry]):
        self.services = tuple(services)
        self.by_id = {s.id: s for s in self.services}
        zones = Counter(s.zone for s in self.services if s.zone)
        #: The directory's usual zone: the hours of services whose sites name none (a phone
        #: line) are read in it.
        self.zone = zones.most_common(1)[0][0] if zones else None
        #: What matching derives from the index once and reuses (e.g. each need's fits).
        self.memo: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self.services)

    @classmethod
    def build(
        cls,
        services: Iterable[Mapping[str, Any]],
        locations: Mapping[str, Mapping[str, Any]],
        organizations: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> DirectoryIndex:
        """From stored resources: `locations` and `organizations` by id (references to ones that
        are missing or deleted are skipped)."""
        orgs = organizations or {}
        return cls([service_entry(s, locations, orgs) for s in services if isinstance(s.get("id"), str)])


def service_entry(
    service: Mapping[str, Any],
    locations: Mapping[str, Mapping[str, Any]],
    organizations: Mapping[str, Mapping[str, Any]],
) -> ServiceEntry:
    codings = {
        (str(c.get("system") or ""), str(c.get("code")))
        for element in ("category", "type", "specialty")
        for concept in service.get(element) or []
        for c in (concept or {}).get("coding") or []
        if c.get("code")
    }
    sites, zones = _sites(service, locations)
    characteristics = {
        code for system, code in _codings(service.get("characteristic")) if system == codes.CHARACTERISTIC
    }
    return ServiceEntry(
        id=str(service["id"]),
        name=str(service.get("name") or f"HealthcareService/{service['id']}"),
        organization=_organization_name(service, organizations),
        codings=frozenset(codings),
        gravity=frozenset(code for system, code in codings if system == codes.SDOHCC),
        service_categories=frozenset(code for system, code in codings if system == codes.SERVICE_CATEGORY),
        languages=_languages(service.get("communication") or []),
        interpreter=codes.INTERPRETER in characteristics,
        remote=codes.REMOTE in characteristics,
        sites=tuple(sites),
        placed=tuple(s for s in sites if s.position is not None),
        openings=(openings := tuple(_openings(service.get("availableTime") or []))),
        closures=tuple(
            ((n.get("during") or {}).get("start"), (n.get("during") or {}).get("end"))
            for n in service.get("notAvailable") or []
            if isinstance(n, dict) and n.get("during")
        ),
        zone=zones[0] if zones else None,
        week=weekly_timetable(openings),
        **_eligibility(service.get("eligibility") or []),
        capacity=_capacity(service),
        active=service.get("active") is not False,
    )  # fmt: skip


def _codings(concepts: Any) -> Iterable[tuple[str, str]]:
    for concept in concepts or []:
        for c in (concept or {}).get("coding") or []:
            if c.get("code"):
                yield str(c.get("system") or ""), str(c["code"])


def _languages(concepts: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(lang for c in concepts if (lang := _language(c))))


def _language(concept: Mapping[str, Any]) -> str:
    for c in concept.get("coding") or []:
        if c.get("code"):
            return primary_language(str(c["code"]))
    return ""


def primary_language(tag: str) -> str:
    """The primary subtag of a BCP-47 tag, lower case: zh-Hant -> zh, en-US -> en."""
    return tag.split("-", 1)[0].strip().lower()


def _organization_name(service: Mapping[str, Any], organizations: Mapping[str, Mapping[str, Any]]) -> str:
    provided = service.get("providedBy") or {}
    reference = str(provided.get("reference") or "")
    org = organizations.get(reference.removeprefix("Organization/"))
    return str((org or {}).get("name") or provided.get("display") or "")


def _sites(
    service: Mapping[str, Any], locations: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Site], list[str]]:
    sites, zones = [], []
    for ref in service.get("location") or []:
        reference = str((ref or {}).get("reference") or "")
        location = locations.get(reference.removeprefix("Location/"))
        if location is None or location.get("status") == "inactive":
            continue
        position = location.get("position") or {}
        lat, lon = position.get("latitude"), position.get("longitude")
        point = (
            Position(float(lat), float(lon))
            if isinstance(lat, int | float) and isinstance(lon, int | float)
            else None
        )
        sites.append(Site(reference, str(location.get("name") or reference), point))
        zones += [str(e["valueCode"]) for e in location.get("extension") or []
                  if e.get("url") == codes.TIMEZONE_EXTENSION and e.get("valueCode")]  # fmt: skip
    return sites, zones


def _openings(available: Sequence[Mapping[str, Any]]) -> Iterable[Opening]:
    for slot in available:
        days = frozenset(DAYS.index(d) for d in slot.get("daysOfWeek") or DAYS if d in DAYS)
        if slot.get("allDay") or not (slot.get("availableStartTime") and slot.get("availableEndTime")):
            yield Opening(days, None, None)
        else:
            yield Opening(
                days,
                time.fromisoformat(slot["availableStartTime"]),
                time.fromisoformat(slot["availableEndTime"]),
            )


def _eligibility(rules: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    low = high = None
    requirements = []
    for rule in rules:
        for system, code in _codings([rule.get("code")]):
            if system == codes.ELIGIBILITY and code == "age":
                for ext in rule.get("extension") or []:
                    if ext.get("url") == codes.AGE_RANGE_EXTENSION:
                        age = ext.get("valueRange") or {}
                        low = _whole((age.get("low") or {}).get("value"))
                        high = _whole((age.get("high") or {}).get("value"))
            elif system == codes.ELIGIBILITY:
                requirements.append(Requirement(code, codes.ELIGIBILITY_DISPLAYS.get(code, code)))
            else:
                display = next((c.get("display") for c in (rule.get("code") or {}).get("coding") or []), None)
                requirements.append(
                    Requirement(f"{system}|{code}", str(display or rule.get("comment") or code))
                )
    return {"min_age": low, "max_age": high, "requirements": tuple(requirements)}


def _whole(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _capacity(service: Mapping[str, Any]) -> int | None:
    for ext in service.get("extension") or []:
        if ext.get("url") == codes.CAPACITY_EXTENSION and isinstance(ext.get("valueInteger"), int):
            return int(ext["valueInteger"])
    return None
