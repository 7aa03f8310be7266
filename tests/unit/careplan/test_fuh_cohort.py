"""FUH and FUM over generated cohorts, checked against a second, naive calculation.

The cohorts are seeded (`random.Random`), so every run sees the same events. They place
follow-up visits on both sides of every boundary (the event day, day 7, day 8, day 30, day 31),
and add readmissions and transfers (acute for mental health, acute for something else,
nonacute), cancelled discharges, members who are 5 or 6 on the event date, members of unknown
age, deaths and hospice.

The expected results come from `naive_fuh` / `naive_fum` below: a per-member chronological walk
written from the measure text (DOMAIN.md §2.1, §2.2; HEDIS MY2025 FUH), day by day over a
calendar, sharing nothing with `measures.py` but the input and output types and the exclusion
labels.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import pytest

from services.careplan.domain.measures import (
    EdVisit,
    EventDecision,
    Exclusion,
    Member,
    Stay,
    Visit,
    evaluate_fuh,
    evaluate_fum,
)

YEAR_START, YEAR_END = date(2025, 1, 1), date(2025, 12, 31)
LAST_INTAKE_DAY = date(2025, 12, 1)  # "discharged on or between January 1 and December 1"
BOUNDARY_OFFSETS = (-2, -1, 0, 1, 6, 7, 8, 29, 30, 31, 45)
BOUNDARY_DATES = (date(2024, 12, 31), YEAR_START, LAST_INTAKE_DAY, date(2025, 12, 2), YEAR_END)

Outcome = tuple[bool, bool, Exclusion | None, bool, bool, str | None]


def outcome(decision: EventDecision) -> Outcome:
    d = decision
    return (d.in_initial_population, d.in_denominator, d.exclusion, d.met_7, d.met_30, d.follow_up_visit)


# --- the cohorts -------------------------------------------------------------------------------


@dataclass
class Cohort:
    members: list[Member] = field(default_factory=list)
    #: Every generated stay with its cancelled flag: what the hospital sent, A13s included.
    sent_stays: list[tuple[Stay, bool]] = field(default_factory=list)
    ed_visits: list[EdVisit] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    #: (event id, visit offset) for each follow-up visit placed, to check the boundaries were hit.
    placed: list[tuple[str, int]] = field(default_factory=list)

    @property
    def stays(self) -> list[Stay]:
        """The feed as the caller passes it: a cancelled discharge is not a stay."""
        return [stay for stay, cancelled in self.sent_stays if not cancelled]


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _member(rng: random.Random, patient: str, first_event: date, cohort: Cohort) -> None:
    """Adults mostly; some children turning 6 around the first event; some unknown ages."""
    kind = rng.choices(["adult", "child", "unknown", "no-birth-date"], weights=[80, 12, 4, 4])[0]
    if kind == "unknown":
        return
    birth: date | None = date(rng.randint(1940, 2010), rng.randint(1, 12), rng.randint(1, 28))
    if kind == "child":
        birth = _years_before(first_event, 6) + timedelta(days=rng.choice([-1, 0, 1]))
    elif kind == "no-birth-date":
        birth = None
    died = rng.choices([None, date(2025, rng.randint(1, 12), 15), date(2026, 2, 1)], weights=[90, 7, 3])[0]
    hospice_choices = [None, date(2025, rng.randint(1, 12), 3), date(2024, 5, 1), date(2026, 3, 1)]
    hospice = rng.choices(hospice_choices, weights=[92, 4, 2, 2])[0]
    cohort.members.append(Member(patient, birth, died_on=died, hospice_on=hospice))


def _follow_ups(rng: random.Random, patient: str, event_id: str, day: date, cohort: Cohort) -> None:
    for n in range(rng.choice([0, 1, 1, 2, 3])):
        offset = rng.choice(BOUNDARY_OFFSETS)
        setting, diagnosis, provider = rng.random() < 0.85, rng.random() < 0.6, rng.random() < 0.5
        visit_id = f"{event_id}-v{n}"
        cohort.visits.append(
            Visit(visit_id, patient, day + timedelta(days=offset), setting, diagnosis, provider)
        )
        cohort.placed.append((event_id, offset))


def _discharge_day(rng: random.Random) -> date:
    if rng.random() < 0.08:
        return rng.choice(BOUNDARY_DATES)
    return date(2024, 12, 1) + timedelta(days=rng.randint(0, 395))


def _fuh_patient(rng: random.Random, patient: str, cohort: Cohort) -> None:
    discharged = _discharge_day(rng)
    _member(rng, patient, discharged, cohort)
    for episode in range(rng.choice([1, 1, 2, 3])):
        admitted = discharged - timedelta(days=rng.randint(0, 12))
        index = Stay(
            f"{patient}-s{episode}", patient, admitted, discharged, rng.random() < 0.92, rng.random() < 0.88
        )
        cohort.sent_stays.append((index, rng.random() < 0.06))
        _follow_ups(rng, patient, index.id, discharged, cohort)
        last = discharged
        if rng.random() < 0.35:  # a readmission or transfer, on either side of day 30
            gap = rng.choice([0, 1, 15, 20, 29, 30, 31, 40])
            acute, mental_health = rng.choice(
                [(True, True), (True, True), (True, False), (False, True), (False, False)]
            )
            start = discharged + timedelta(days=gap)
            last = start + timedelta(days=rng.randint(0, 10))
            readmission = Stay(f"{index.id}-r", patient, start, last, acute, mental_health)
            cohort.sent_stays.append((readmission, rng.random() < 0.06))
            _follow_ups(rng, patient, readmission.id, last, cohort)
        discharged = last + timedelta(days=rng.randint(35, 150))


def fuh_cohort(seed: int, patients: int) -> Cohort:
    rng = random.Random(seed)
    cohort = Cohort()
    for n in range(patients):
        _fuh_patient(rng, f"p{n}", cohort)
    return cohort


def _fum_patient(rng: random.Random, patient: str, cohort: Cohort) -> None:
    on = date(2024, 12, 1) + timedelta(days=rng.randint(0, 395))
    if rng.random() < 0.08:
        on = rng.choice(BOUNDARY_DATES)
    _member(rng, patient, on, cohort)
    for n in range(rng.choice([1, 2, 3, 4])):
        principal_mi, self_harm, any_mi = rng.choices(
            [
                (True, False, True),
                (False, True, True),
                (False, True, False),
                (False, False, True),
                (False, False, False),
            ],
            weights=[70, 10, 8, 6, 6],
        )[0]
        visit = EdVisit(f"{patient}-e{n}", patient, on, principal_mi, self_harm, any_mi)
        cohort.ed_visits.append(visit)
        _follow_ups(rng, patient, visit.id, on, cohort)
        if rng.random() < 0.15:  # an admission, acute or not, on either side of day 30
            start = on + timedelta(days=rng.choice([0, 1, 30, 31]))
            stay = Stay(f"{visit.id}-a", patient, start, start + timedelta(days=3), rng.random() < 0.5, True)
            cohort.sent_stays.append((stay, False))
        on += timedelta(days=rng.choice([0, 3, 20, 30, 31, 32, 60, 120]))


def fum_cohort(seed: int, patients: int) -> Cohort:
    rng = random.Random(seed)
    cohort = Cohort()
    for n in range(patients):
        _fum_patient(rng, f"q{n}", cohort)
    return cohort


# --- the naive calculation -----------------------------------------------------------------------


def sixth_birthday(birth: date) -> date:
    try:
        return birth.replace(year=birth.year + 6)
    except ValueError:  # born 29 February: 6 on 1 March
        return date(birth.year + 6, 3, 1)


class Calendar:
    """What happened to each member on each day."""

    def __init__(self, stays: list[Stay], visits: list[Visit]) -> None:
        self.admissions: dict[tuple[str, date], list[Stay]] = defaultdict(list)
        self.visits: dict[tuple[str, date], list[Visit]] = defaultdict(list)
        for stay in stays:
            self.admissions[(stay.patient_id, stay.admitted)].append(stay)
        for visit in visits:
            self.visits[(visit.patient_id, visit.on)].append(visit)

    def admitted_between(self, patient: str, first: date, days: int, besides: str = "") -> list[Stay]:
        found = []
        for k in range(days + 1):
            found += [s for s in self.admissions[(patient, first + timedelta(days=k))] if s.id != besides]
        return found

    def follow_up(self, patient: str, day: date, first_offset: int, counts: str) -> tuple[int, str] | None:
        """The first day (offset) through day 30 with a visit that counts, and that visit's id."""
        for k in range(first_offset, 31):
            good = []
            for v in self.visits[(patient, day + timedelta(days=k))]:
                if (
                    counts == "fuh"
                    and v.qualifying_setting
                    and (v.mental_health_provider or v.mental_health_diagnosis)
                ):
                    good.append(v.id)
                if counts == "fum" and v.qualifying_setting and v.mental_health_diagnosis:
                    good.append(v.id)
            if good:
                return k, sorted(good)[0]
        return None


def age_problem(member: Member | None, day: date) -> Exclusion | None:
    if member is None or member.birth_date is None:
        return Exclusion.AGE_UNKNOWN
    if sixth_birthday(member.birth_date) > day:
        return Exclusion.UNDER_MINIMUM_AGE
    return None


def final_outcome(member: Member | None, found: tuple[int, str] | None) -> Outcome:
    if member is not None and member.hospice_on is not None and member.hospice_on <= YEAR_END:
        return (True, False, Exclusion.HOSPICE, False, False, None)
    if member is not None and member.died_on is not None and member.died_on <= YEAR_END:
        return (True, False, Exclusion.DIED, False, False, None)
    if found is None:
        return (True, True, None, False, False, None)
    offset, visit_id = found
    return (True, True, None, offset <= 7, True, visit_id)


def naive_fuh(members: list[Member], stays: list[Stay], visits: list[Visit]) -> dict[str, Outcome]:
    people = {m.patient_id: m for m in members}
    calendar = Calendar(stays, visits)
    expected: dict[str, Outcome] = {}
    for stay in sorted(stays, key=lambda s: (s.patient_id, s.discharged)):
        if stay.discharged < YEAR_START or stay.discharged > YEAR_END:
            continue
        member = people.get(stay.patient_id)
        problem = None
        if not stay.acute:
            problem = Exclusion.NONACUTE_STAY
        elif not stay.principal_mental_health:
            problem = Exclusion.NOT_MENTAL_HEALTH
        elif stay.discharged > LAST_INTAKE_DAY:
            problem = Exclusion.AFTER_INTAKE_PERIOD
        else:
            problem = age_problem(member, stay.discharged)
        if problem is None:
            later = calendar.admitted_between(stay.patient_id, stay.discharged, 30, besides=stay.id)
            if [s for s in later if not s.acute]:
                problem = Exclusion.NONACUTE_READMISSION
            elif [s for s in later if not s.principal_mental_health]:
                problem = Exclusion.READMITTED_OTHER_DIAGNOSIS
            elif later:
                problem = Exclusion.READMITTED  # not the last discharge of its chain
        if problem is not None:
            expected[stay.id] = (False, False, problem, False, False, None)
            continue
        found = calendar.follow_up(stay.patient_id, stay.discharged, 1, "fuh")
        expected[stay.id] = final_outcome(member, found)
    return expected


def naive_fum(
    members: list[Member], eds: list[EdVisit], stays: list[Stay], visits: list[Visit]
) -> dict[str, Outcome]:
    people = {m.patient_id: m for m in members}
    calendar = Calendar(stays, visits)
    expected: dict[str, Outcome] = {}
    next_counted_from: dict[str, date] = {}
    for ed in sorted(eds, key=lambda e: (e.patient_id, e.on, e.id)):
        if ed.on < YEAR_START or ed.on > YEAR_END:
            continue
        member = people.get(ed.patient_id)
        problem = None
        if not ed.principal_mental_illness and not ed.principal_self_harm:
            problem = Exclusion.NOT_MENTAL_HEALTH
        elif ed.principal_self_harm and not ed.principal_mental_illness and not ed.any_mental_illness:
            problem = Exclusion.SELF_HARM_WITHOUT_MENTAL_ILLNESS
        elif ed.on > LAST_INTAKE_DAY:
            problem = Exclusion.AFTER_INTAKE_PERIOD
        else:
            problem = age_problem(member, ed.on)
        if problem is None:
            if ed.patient_id in next_counted_from and ed.on < next_counted_from[ed.patient_id]:
                problem = Exclusion.REPEAT_ED_VISIT
            else:
                next_counted_from[ed.patient_id] = ed.on + timedelta(days=31)
                if calendar.admitted_between(ed.patient_id, ed.on, 30):
                    problem = Exclusion.ADMITTED
        if problem is not None:
            expected[ed.id] = (False, False, problem, False, False, None)
            continue
        expected[ed.id] = final_outcome(member, calendar.follow_up(ed.patient_id, ed.on, 0, "fum"))
    return expected


# --- the tests -----------------------------------------------------------------------------------


def counts(expected: dict[str, Outcome]) -> tuple[int, int, int, int]:
    values = expected.values()
    return (
        sum(o[0] for o in values),
        sum(o[1] for o in values),
        sum(o[3] for o in values),
        sum(o[4] for o in values),
    )


@pytest.mark.parametrize("seed", [7, 2025])
def test_fuh_over_a_generated_year_matches_the_naive_calculation(seed: int) -> None:
    cohort = fuh_cohort(seed, patients=420)
    result = evaluate_fuh(YEAR_START, YEAR_END, cohort.members, cohort.stays, cohort.visits)
    expected = naive_fuh(cohort.members, cohort.stays, cohort.visits)

    assert {e.event_id: outcome(e) for e in result.events} == expected
    initial, denominator, met_7, met_30 = counts(expected)
    assert (result.initial_population, result.denominator) == (initial, denominator)
    assert (result.numerator_7, result.numerator_30) == (met_7, met_30)
    assert result.rate_7 == met_7 / denominator and result.rate_30 == met_30 / denominator

    # The cohort is big enough and reaches every rule and boundary.
    assert len(result.events) >= 600
    assert sum(cancelled for _, cancelled in cohort.sent_stays) >= 20
    reasons = {o[2] for o in expected.values()}
    assert set(Exclusion) - reasons == {
        Exclusion.REPEAT_ED_VISIT,
        Exclusion.ADMITTED,
        Exclusion.SELF_HARM_WITHOUT_MENTAL_ILLNESS,
    }
    in_denominator = {event for event, o in expected.items() if o[1]}
    offsets = {offset for event, offset in cohort.placed if event in in_denominator}
    assert {0, 7, 8, 30, 31} <= offsets
    assert 0 < met_7 < met_30 < denominator
    assert {e.event_date for e in result.events} >= {YEAR_START, LAST_INTAKE_DAY, date(2025, 12, 2)}
    births = {m.patient_id: m.birth_date for m in cohort.members}
    aged_six = [
        e
        for e in result.events
        if e.in_initial_population
        and (born := births.get(e.patient_id))
        and sixth_birthday(born) <= e.event_date < sixth_birthday(born) + timedelta(days=365)
    ]
    assert aged_six  # and Exclusion.UNDER_MINIMUM_AGE was reached above


@pytest.mark.parametrize("seed", [11, 31])
def test_fum_over_a_generated_year_matches_the_naive_calculation(seed: int) -> None:
    cohort = fum_cohort(seed, patients=150)
    result = evaluate_fum(YEAR_START, YEAR_END, cohort.members, cohort.ed_visits, cohort.stays, cohort.visits)
    expected = naive_fum(cohort.members, cohort.ed_visits, cohort.stays, cohort.visits)

    assert {e.event_id: outcome(e) for e in result.events} == expected
    initial, denominator, met_7, met_30 = counts(expected)
    assert (result.initial_population, result.denominator) == (initial, denominator)
    assert (result.numerator_7, result.numerator_30) == (met_7, met_30)

    assert len(result.events) >= 300
    reasons = {o[2] for o in expected.values()}
    fum_reasons = set(Exclusion) - {
        Exclusion.NONACUTE_STAY,
        Exclusion.READMITTED,
        Exclusion.READMITTED_OTHER_DIAGNOSIS,
        Exclusion.NONACUTE_READMISSION,
    }
    assert reasons == fum_reasons | {None}
    in_denominator = {event for event, o in expected.items() if o[1]}
    offsets = {offset for event, offset in cohort.placed if event in in_denominator}
    assert {-1, 0, 7, 8, 30, 31} <= offsets
    assert 0 < met_7 < met_30 < denominator
