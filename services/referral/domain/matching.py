"""Ranking directory services for a person's needs, with the reason for every rank. No I/O.

The score is a weighted sum of six factors, each scored 0 to 1 and shown in the reasons with the
points it earned (weight x factor score), so a case manager can see why one service ranks above
another. Weights (they sum to 1):

| factor      | weight | scores 1.0 when                | partial                                    |
|-------------|--------|--------------------------------|--------------------------------------------|
| category    | 0.35   | it serves the need's category  | 0.6 related (same family, e.g. housing)    |
| distance    | 0.20   | it is where the person is      | linear to 0 at 40 km; remote 0.7; ? 0.5    |
| language    | 0.15   | it speaks the preferred one    | another of theirs 0.7; interpreter 0.6     |
| hours       | 0.10   | it is open now                 | opens within 24 h 0.7, within N days 0.4   |
| eligibility | 0.10   | every rule is met              | a rule not confirmed (veteran, ...) 0.5    |
| capacity    | 0.10   | it has open slots              | not reported 0.5                           |

Unknowns (no position, no hours published) score 0.5; a language not spoken, a service not open
in the next N days, or 40 km or more score 0.

With several needs, category = 0.8 x the best fit + 0.2 x the share of needs the service serves.

Hard misfits. A service serving none of the needs is not a match at all. A service that is full
(capacity 0), or whose age range excludes the person, or that is inactive, is *unavailable*:
left out by default, and with `include_unavailable` ranked after every available service (its
reasons say why). Closed hours are not a misfit: they only cost the hours points.

Assumptions, stated in the reasons: with no Patient.communication the person is taken to speak
English (R4 Patient.communication: "If no language is specified, this implies that the default
local language is spoken"), and a service listing no communication likewise. A `veteran-status`
need implies the `veteran` eligibility rule is met.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, NamedTuple

from services.referral.domain import directory_codes as codes
from services.referral.domain.directory_index import (
    DirectoryIndex,
    Position,
    ServiceEntry,
    primary_language,
)
from services.referral.domain.opening_hours import next_opening, weekly_opening, zone_info

WEIGHTS: Final = {
    "category": 0.35,
    "distance": 0.20,
    "language": 0.15,
    "hours": 0.10,
    "eligibility": 0.10,
    "capacity": 0.10,
}
RELATED_FIT: Final = 0.6
MAX_DISTANCE_KM: Final = 40.0
EARTH_RADIUS_KM: Final = 6371.0088
LOCAL_LANGUAGE: Final = "en"
#: Qualifications a need implies (a veteran-status need is a veteran's).
IMPLIED_QUALIFICATIONS: Final = {"veteran-status": "veteran"}
_MEMO_LIMIT: Final = 512
#: Each Gravity category's relatives: the other members of every family it belongs to.
_RELATIVES: Final = {
    code: frozenset().union(*(f for f in codes.CATEGORY_FAMILIES if code in f)) - {code}
    for family in codes.CATEGORY_FAMILIES
    for code in family
}


@dataclass(frozen=True, slots=True)
class Need:
    system: str
    code: str
    display: str | None = None

    @property
    def label(self) -> str:
        return self.display or codes.GRAVITY_CATEGORIES.get(self.code) or self.code


@dataclass(frozen=True, slots=True)
class Seeker:
    """What matching knows of the person: languages (preferred first), where they are, their
    birth date, and eligibility rules they are known to meet (veteran, low-income, ...)."""

    languages: tuple[str, ...] = ()
    position: Position | None = None
    birth_date: date | None = None
    qualifications: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MatchOptions:
    now: datetime
    #: "opens soon" looks this many days ahead.
    within_days: int = 3
    include_unavailable: bool = False
    limit: int = 10
    #: The zone of services whose Locations name none.
    default_zone: str = "UTC"


class Reason(NamedTuple):  # tuples: matching builds a few hundred per request
    factor: str
    code: str
    text: str
    #: weight x factor score: what this factor added to the score (unrounded).
    points: float


class Match(NamedTuple):
    service: ServiceEntry
    score: float
    available: bool
    distance_km: float | None
    reasons: tuple[Reason, ...] = ()


def rank(index: DirectoryIndex, needs: Sequence[Need], seeker: Seeker, options: MatchOptions) -> list[Match]:
    """The best `options.limit` services for the needs, best first (ties: nearer, then by name)."""
    if not needs:
        return []
    now = options.now if options.now.tzinfo else options.now.replace(tzinfo=UTC)
    implied = {IMPLIED_QUALIFICATIONS[n.code] for n in needs if n.code in IMPLIED_QUALIFICATIONS}
    seeker_facts = _Facts(seeker, frozenset(seeker.qualifications | implied), now)
    fits = [_fits(index, need) for need in needs]
    candidates = set().union(*fits)
    matches = []
    for service in index.services:
        if service.id not in candidates or not service.active:
            continue
        match = _score(service, _category(service.id, needs, fits), seeker_facts, options, now)
        if match.available or options.include_unavailable:
            matches.append(match)
    matches.sort(key=_order)
    return matches[: max(0, options.limit)]


def _order(match: Match) -> tuple[bool, float, float, str, str]:
    distance = match.distance_km if match.distance_km is not None else math.inf
    return (not match.available, -match.score, distance, match.service.name, match.service.id)


@dataclass(frozen=True, slots=True)
class _Facts:
    seeker: Seeker
    qualifications: frozenset[str]
    now: datetime


def _score(service: ServiceEntry, fit: Reason, facts: _Facts, options: MatchOptions, now: datetime) -> Match:
    distance_km, distance = _distance(service, facts.seeker.position)
    eligibility, eligible = _eligibility(service, facts)
    capacity, has_room = _capacity(service)
    reasons = (
        fit,
        distance,
        _language(service, facts.seeker.languages),
        _hours(service, now, options),
        eligibility,
        capacity,
    )
    score = round(sum(r.points for r in reasons), 4)
    return Match(service, score, eligible and has_room, distance_km, reasons)


def _reason(factor: str, code: str, text: str, value: float) -> Reason:
    return Reason(factor, code, text, WEIGHTS[factor] * value)


# --- category fit ----------------------------------------------------------------------------------


def _fit(service: ServiceEntry, need: Need) -> tuple[float, str] | None:
    if (need.system, need.code) in service.codings:
        return 1.0, f"serves {need.label}"
    if need.system != codes.SDOHCC:
        return None
    related = sorted(service.gravity & _RELATIVES.get(need.code, frozenset()))
    if related:
        return (
            RELATED_FIT,
            f"serves {codes.GRAVITY_CATEGORIES.get(related[0], related[0])}, related to {need.label}",
        )
    shared = service.service_categories & codes.NEED_SERVICE_CATEGORIES.get(need.code, frozenset())
    if shared:
        kind = codes.SERVICE_CATEGORY_DISPLAYS.get(min(shared), min(shared))
        return RELATED_FIT, f"offers {kind} services, related to {need.label}"
    return None


def _fits(index: DirectoryIndex, need: Need) -> dict[str, tuple[float, str]]:
    """Every service's fit for one need, by service id; worked out once per directory index (up
    to a bound: needs are client input)."""
    key = ("fit", need.system, need.code, need.display)
    found = index.memo.get(key)
    if found is None:
        found = {s.id: fit for s in index.services if (fit := _fit(s, need)) is not None}
        if len(index.memo) < _MEMO_LIMIT:
            index.memo[key] = found
    return found


def _category(service_id: str, needs: Sequence[Need], fits: Sequence[dict[str, tuple[float, str]]]) -> Reason:
    served = [(fit, need) for need, by_id in zip(needs, fits, strict=True) if (fit := by_id.get(service_id))]
    (best, text), _ = max(served, key=lambda item: item[0][0])
    value = 0.8 * best + 0.2 * len(served) / len(needs)
    code = "category-exact" if best == 1.0 else "category-related"
    others = [n.label for f, n in served if f[1] != text]
    more = f"; also {', '.join(others)}" if others else ""
    return _reason(
        "category", code, f"{text[0].upper()}{text[1:]}{more} ({len(served)} of {len(needs)} needs)", value
    )


# --- distance --------------------------------------------------------------------------------------


def haversine_km(a: Position, b: Position) -> float:
    """Great-circle distance on the mean Earth radius (IUGG), in km."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat, dlon = lat2 - lat1, math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _distance(service: ServiceEntry, origin: Position | None) -> tuple[float | None, Reason]:
    if service.remote and not service.placed:
        return None, _reason("distance", "remote", "Delivered by phone or video: no travel", 0.7)
    if origin is None:
        return None, _reason("distance", "distance-unknown", "The person's position is not known", 0.5)
    if not service.placed:
        return None, _reason("distance", "distance-unknown", "The service gives no site position", 0.5)
    km, nearest = math.inf, service.placed[0]
    for site in service.placed:
        assert site.position is not None  # placed sites have one
        d = haversine_km(origin, site.position)
        if d < km:
            km, nearest = d, site
    value = max(0.0, 1.0 - km / MAX_DISTANCE_KM)
    code = "distance" if value > 0 else "distance-far"
    return round(km, 2), _reason("distance", code, f"{km:.1f} km to {nearest.name}", value)


# --- language --------------------------------------------------------------------------------------


def _language(service: ServiceEntry, spoken: Sequence[str]) -> Reason:
    mine = [primary_language(t) for t in spoken] or [LOCAL_LANGUAGE]
    assumed = "" if spoken else " (English assumed: no language on record)"
    theirs = service.languages or (LOCAL_LANGUAGE,)
    listed = "" if service.languages else " (none listed: English assumed)"
    if mine[0] in theirs:
        return _reason("language", "language-match", f"Speaks {mine[0]}{assumed}{listed}", 1.0)
    other = next((lang for lang in mine[1:] if lang in theirs), None)
    if other:
        return _reason("language", "language-secondary", f"Speaks {other}, not {mine[0]}{listed}", 0.7)
    if service.interpreter:
        return _reason("language", "language-interpreter", f"Interpreter available for {mine[0]}", 0.6)
    return _reason("language", "language-mismatch", f"Does not list {', '.join(mine)}{listed}", 0.0)


# --- hours -----------------------------------------------------------------------------------------


def _hours(service: ServiceEntry, now: datetime, options: MatchOptions) -> Reason:
    if not service.openings:
        return _reason("hours", "hours-unknown", "Opening hours not published", 0.5)
    zone = service.zone or options.default_zone
    if service.closures:
        opens = next_opening(service.openings, service.closures, zone, now, options.within_days)
    else:
        opens = weekly_opening(service.week, now.astimezone(zone_info(zone)), options.within_days)
    if opens is None:
        return _reason("hours", "closed", f"Not open in the next {options.within_days} days", 0.0)
    wait = opens - now
    if wait <= timedelta(0):
        return _reason("hours", "open-now", "Open now", 1.0)
    local = opens.strftime("%a %H:%M")
    hours = wait.total_seconds() / 3600
    if hours <= 24:
        return _reason("hours", "opens-soon", f"Opens {local} (in {hours:.0f} h)", 0.7)
    return _reason("hours", "opens-later", f"Opens {local} (in {hours / 24:.1f} days)", 0.4)


# --- eligibility and capacity ----------------------------------------------------------------------


def age_on(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _eligibility(service: ServiceEntry, facts: _Facts) -> tuple[Reason, bool]:
    birth = facts.seeker.birth_date
    ages = _age_range_text(service)
    if ages and birth is not None:
        age = age_on(birth, facts.now.date())
        if (service.min_age is not None and age < service.min_age) or (
            service.max_age is not None and age > service.max_age
        ):
            return _reason(
                "eligibility", "ineligible-age", f"Serves ages {ages}; the person is {age}", 0.0
            ), False
    unconfirmed = [r.display for r in service.requirements if r.code not in facts.qualifications]
    if ages and birth is None:
        unconfirmed.insert(0, f"ages {ages} (no birth date on record)")
    if unconfirmed:
        text = f"Not confirmed: {'; '.join(unconfirmed)}"
        return _reason("eligibility", "eligibility-unverified", text, 0.5), True
    met = [f"ages {ages}"] if ages else []
    met += [r.display for r in service.requirements]
    text = f"Eligible: {'; '.join(met)}" if met else "No eligibility rules"
    return _reason("eligibility", "eligible", text, 1.0), True


def _age_range_text(service: ServiceEntry) -> str:
    if service.min_age is None and service.max_age is None:
        return ""
    low = service.min_age if service.min_age is not None else 0
    return f"{low}-{service.max_age}" if service.max_age is not None else f"{low}+"


def _capacity(service: ServiceEntry) -> tuple[Reason, bool]:
    if service.capacity is None:
        return _reason("capacity", "capacity-unknown", "Open slots not reported", 0.5), True
    if service.capacity <= 0:
        return _reason("capacity", "capacity-full", "No open slots", 0.0), False
    return _reason("capacity", "capacity-open", f"{service.capacity} open slots", 1.0), True
