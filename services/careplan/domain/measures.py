"""HEDIS FUH and FUM, calculated from plain data: who was in the denominator, who was excluded
and why, and who had follow-up within 7 and 30 days. No I/O; `measure_report.measure_report` turns
a result into a FHIR MeasureReport.

Sources (DOMAIN.md §2.1, §2.2; NCQA HEDIS MY2025 Volume 2, "Follow-Up After Hospitalization for
Mental Illness (FUH)", read from a public copy of the specification text; NCQA QRS FAQ 12/2020
"use a 30-day period" for both readmission checks; FUM per the Lucet MY2024 and BCBSND tip
sheets quoted in DOMAIN.md):

- FUH counts acute inpatient *discharges* (not members) with a principal diagnosis of mental
  illness or intentional self-harm, for members 6 and older on the discharge date, discharged
  from the start of the period through 30 days before its end (Jan 1 - Dec 1 of a calendar year).
- FUM counts *ED visits* with a principal diagnosis of mental illness, or of intentional
  self-harm together with any mental-illness diagnosis, for members 6 and older, in the same
  intake window; one visit per 31-day period.
- Both: members in hospice or who die during the measurement period are excluded
  ("Required exclusions"); these are the only denominator exclusions. Everything else that
  removes an event (readmissions, repeat ED visits, admissions after an ED visit, age, dates)
  is part of HEDIS's "Event/diagnosis" definition, so such events never enter the initial
  population.

The caller maps its records onto the dataclasses below (the `from_codes` constructors use the
ICD-10 and encounter-class sets of `valuesets`). A cancelled discharge is simply not passed in.
Event ids must be unique within each input list.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final, TypeVar

from services.careplan.domain.valuesets import (
    ACUTE_INPATIENT,
    FOLLOW_UP_SETTINGS,
    NONACUTE_INPATIENT,
    is_intentional_self_harm,
    is_mental_health_diagnosis,
    is_mental_illness,
)

FUH_MEASURE_URL: Final = "http://carebridge.example/fhir/Measure/fuh"
FUM_MEASURE_URL: Final = "http://carebridge.example/fhir/Measure/fum"

#: "6 years and older as of the date of discharge" (FUH) / "of the ED visit" (FUM).
MINIMUM_AGE: Final = 6
#: The 30-day follow-up period: the second numerator, the readmission and admission checks,
#: and the end of the intake window (period end minus 30 days = Dec 1 for a calendar year).
FOLLOW_UP_DAYS: Final = 30
#: The first numerator: within 7 days after discharge (FUH) or of the ED visit (FUM).
SHORT_FOLLOW_UP_DAYS: Final = 7
#: FUM: "if a member has more than one ED visit in a 31-day period, include only the first".
REPEAT_ED_VISIT_DAYS: Final = 31


class Exclusion(StrEnum):
    """Why an event is not in the denominator. The first group keeps it out of the initial
    population (HEDIS "Event/diagnosis"); HOSPICE and DIED are the denominator exclusions."""

    NONACUTE_STAY = "nonacute stay"
    NOT_MENTAL_HEALTH = "principal diagnosis not mental illness or self-harm"
    SELF_HARM_WITHOUT_MENTAL_ILLNESS = "self-harm principal diagnosis without mental illness"
    AFTER_INTAKE_PERIOD = "after the intake period"
    AGE_UNKNOWN = "age unknown"
    UNDER_MINIMUM_AGE = "under 6"
    #: FUH: an acute readmission for mental illness or self-harm within 30 days; only the last
    #: discharge of the chain counts (and none if that one is after the intake period).
    READMITTED = "readmitted"
    #: FUH: an acute readmission for another principal diagnosis within 30 days. HEDIS: "exclude
    #: both the original and the readmission/direct transfer discharge".
    READMITTED_OTHER_DIAGNOSIS = "readmitted for another diagnosis"
    #: FUH: readmission or direct transfer to a nonacute setting within 30 days, any diagnosis.
    NONACUTE_READMISSION = "nonacute readmission or transfer"
    #: FUM: the member's ED visit that opened the 31-day period was less than 31 days before
    #: (it opens the period even if an admission then excludes it).
    REPEAT_ED_VISIT = "repeat ED visit within 31 days"
    #: FUM: inpatient admission (acute or nonacute, any diagnosis) on or within 30 days after.
    ADMITTED = "admitted to inpatient care"
    HOSPICE = "hospice"
    DIED = "died"


@dataclass(frozen=True, slots=True)
class Member:
    """`hospice_on` is the day hospice care (or the hospice benefit) began; hospice is taken to
    go on, so a start on or before the period end excludes the member ("any time during the
    measurement year"). A death on or before the period end excludes the member as well."""

    patient_id: str
    birth_date: date | None
    died_on: date | None = None
    hospice_on: date | None = None


@dataclass(frozen=True, slots=True)
class Stay:
    """An inpatient stay. `principal_mental_health`: principal diagnosis of mental illness or
    intentional self-harm."""

    id: str
    patient_id: str
    admitted: date
    discharged: date
    acute: bool
    principal_mental_health: bool

    @classmethod
    def from_codes(
        cls, id: str, patient_id: str, admitted: date, discharged: date, encounter_class: str,
        diagnoses: Sequence[str],
    ) -> Stay:  # fmt: skip
        """`encounter_class` a v3 ActCode (IMP, ACUTE or NONAC); `diagnoses` principal first."""
        if encounter_class not in ACUTE_INPATIENT | NONACUTE_INPATIENT:
            raise ValueError(f"encounter class {encounter_class!r} is not an inpatient stay")
        principal = bool(diagnoses) and is_mental_health_diagnosis(diagnoses[0])
        return cls(id, patient_id, admitted, discharged, encounter_class in ACUTE_INPATIENT, principal)


@dataclass(frozen=True, slots=True)
class EdVisit:
    """An emergency department visit. FUM takes it when the principal diagnosis is mental
    illness, or intentional self-harm with a mental-illness diagnosis in any position."""

    id: str
    patient_id: str
    on: date
    principal_mental_illness: bool
    principal_self_harm: bool
    any_mental_illness: bool

    @classmethod
    def from_codes(cls, id: str, patient_id: str, on: date, diagnoses: Sequence[str]) -> EdVisit:
        """`diagnoses` principal first."""
        principal = diagnoses[0] if diagnoses else ""
        principal_mi, principal_self_harm = is_mental_illness(principal), is_intentional_self_harm(principal)
        any_mi = any(is_mental_illness(code) for code in diagnoses)
        return cls(id, patient_id, on, principal_mi, principal_self_harm, any_mi)


@dataclass(frozen=True, slots=True)
class Visit:
    """A visit that happened (or a fulfilled appointment). `qualifying_setting`: a follow-up
    setting of the measures (outpatient, IOP/PHP, CMHC, telehealth, telephone, observation,
    ...); `mental_health_diagnosis`: a mental-illness diagnosis in any position (HEDIS MY2025
    "any diagnosis of mental health disorder"); `mental_health_provider`: seen by one."""

    id: str
    patient_id: str
    on: date
    qualifying_setting: bool
    mental_health_diagnosis: bool
    mental_health_provider: bool

    @classmethod
    def from_codes(
        cls, id: str, patient_id: str, on: date, encounter_class: str, diagnoses: Sequence[str],
        mental_health_provider: bool,
    ) -> Visit:  # fmt: skip
        mental_illness = any(is_mental_illness(code) for code in diagnoses)
        setting = encounter_class in FOLLOW_UP_SETTINGS
        return cls(id, patient_id, on, setting, mental_illness, mental_health_provider)


@dataclass(frozen=True, slots=True)
class EventDecision:
    """What the measure decided about one discharge or ED visit. `met_7`/`met_30` are only set
    for events in the denominator; `follow_up_visit` is the first visit that met the 30-day
    numerator."""

    event_id: str
    patient_id: str
    event_date: date
    in_initial_population: bool
    in_denominator: bool
    exclusion: Exclusion | None
    met_7: bool = False
    met_30: bool = False
    follow_up_visit: str | None = None


@dataclass(frozen=True, slots=True)
class MeasureResult:
    """One decision per event dated in the period (including those that never qualified), in
    date order. The denominator is the initial population less the denominator exclusions."""

    measure: str  # "FUH" | "FUM"
    period_start: date
    period_end: date
    events: tuple[EventDecision, ...]

    @property
    def initial_population(self) -> int:
        return sum(e.in_initial_population for e in self.events)

    @property
    def denominator_exclusions(self) -> int:
        return sum(e.in_initial_population and not e.in_denominator for e in self.events)

    @property
    def denominator(self) -> int:
        return sum(e.in_denominator for e in self.events)

    @property
    def numerator_7(self) -> int:
        return sum(e.met_7 for e in self.events)

    @property
    def numerator_30(self) -> int:
        return sum(e.met_30 for e in self.events)

    @property
    def rate_7(self) -> float | None:
        return self.numerator_7 / self.denominator if self.denominator else None

    @property
    def rate_30(self) -> float | None:
        return self.numerator_30 / self.denominator if self.denominator else None


# --- shared rules ------------------------------------------------------------------------------

_E = TypeVar("_E", Stay, EdVisit, Visit)


def age_on(birth_date: date, day: date) -> int:
    """Completed years on `day`. A 29 February birthday is reached on 1 March in common years."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def _age_exclusion(member: Member | None, day: date) -> Exclusion | None:
    # A member we do not know, or whose birth date is missing, cannot be shown to be 6 or older.
    if member is None or member.birth_date is None:
        return Exclusion.AGE_UNKNOWN
    if age_on(member.birth_date, day) < MINIMUM_AGE:
        return Exclusion.UNDER_MINIMUM_AGE
    return None


def _member_exclusion(member: Member | None, period_end: date) -> Exclusion | None:
    """HEDIS "Required exclusions": hospice any time during the period; death during it."""
    if member is None:
        return None
    if member.hospice_on is not None and member.hospice_on <= period_end:
        return Exclusion.HOSPICE
    if member.died_on is not None and member.died_on <= period_end:
        return Exclusion.DIED
    return None


@dataclass(frozen=True, slots=True)
class _FollowUp:
    """Where to look for an event's follow-up: the member's visits, which ones count, and
    whether a visit on the event's own date counts."""

    visits: Sequence[Visit]
    counts: Callable[[Visit], bool]
    same_day: bool


def _by_patient(events: Iterable[_E]) -> dict[str, list[_E]]:
    grouped: dict[str, list[_E]] = defaultdict(list)
    for event in events:
        grouped[event.patient_id].append(event)
    return grouped


def _check_inputs(period_start: date, period_end: date, events: Sequence[Stay] | Sequence[EdVisit]) -> None:
    if period_end < period_start:
        raise ValueError(f"period end {period_end} is before its start {period_start}")
    ids = [event.id for event in events]
    if len(set(ids)) != len(ids):
        raise ValueError("event ids must be unique")


def _decide(
    event_id: str, patient_id: str, on: date, ineligible: Exclusion | None, member: Member | None,
    period_end: date, follow_up: _FollowUp,
) -> EventDecision:  # fmt: skip
    """The decision for one event once its eligibility is known: out of the initial population,
    a denominator exclusion, or in the denominator with its follow-up."""
    if ineligible is not None:
        return EventDecision(event_id, patient_id, on, False, False, ineligible)
    excluded = _member_exclusion(member, period_end)
    if excluded is not None:
        return EventDecision(event_id, patient_id, on, True, False, excluded)
    first_day = on if follow_up.same_day else on + timedelta(days=1)
    last_day = on + timedelta(days=FOLLOW_UP_DAYS)
    found = [v for v in follow_up.visits if first_day <= v.on <= last_day and follow_up.counts(v)]
    visit = min(found, key=lambda v: (v.on, v.id), default=None)
    return EventDecision(
        event_id, patient_id, on, True, True, None,
        met_7=visit is not None and visit.on <= on + timedelta(days=SHORT_FOLLOW_UP_DAYS),
        met_30=visit is not None,
        follow_up_visit=visit.id if visit else None,
    )  # fmt: skip


def _result(measure: str, period_start: date, period_end: date, events: list[EventDecision]) -> MeasureResult:
    events.sort(key=lambda e: (e.event_date, e.patient_id, e.event_id))
    return MeasureResult(measure, period_start, period_end, tuple(events))


# --- FUH ---------------------------------------------------------------------------------------


def fuh_follow_up_counts(visit: Visit) -> bool:
    """FUH numerator: a follow-up setting, with a mental-health provider or with a
    mental-health diagnosis (HEDIS MY2025 FUH numerator list)."""
    return visit.qualifying_setting and (visit.mental_health_provider or visit.mental_health_diagnosis)


def _readmission(stay: Stay, patient_stays: Iterable[Stay]) -> Exclusion | None:
    """HEDIS FUH "Acute / Nonacute readmission or direct transfer": another stay admitted on the
    discharge date or within the 30 days after it (NCQA FAQ 12/2020: 30 days for both checks).
    Nonacute, any diagnosis: exclude. Acute, other principal diagnosis: exclude the original
    (and the readmission, which is not a mental-health discharge anyway). Acute, mental health:
    count only the last discharge, so this one goes."""
    window_end = stay.discharged + timedelta(days=FOLLOW_UP_DAYS)
    following = [s for s in patient_stays if s.id != stay.id and stay.discharged <= s.admitted <= window_end]
    if any(not s.acute for s in following):
        return Exclusion.NONACUTE_READMISSION
    if any(not s.principal_mental_health for s in following):
        return Exclusion.READMITTED_OTHER_DIAGNOSIS
    if following:
        return Exclusion.READMITTED
    return None


def _fuh_ineligibility(
    stay: Stay, member: Member | None, intake_end: date, patient_stays: list[Stay]
) -> Exclusion | None:
    if not stay.acute:
        return Exclusion.NONACUTE_STAY
    if not stay.principal_mental_health:
        return Exclusion.NOT_MENTAL_HEALTH
    if stay.discharged > intake_end:
        # Also ends a readmission chain whose last discharge is after Dec 1: the earlier
        # discharges are READMITTED, so HEDIS's "exclude both" holds.
        return Exclusion.AFTER_INTAKE_PERIOD
    return _age_exclusion(member, stay.discharged) or _readmission(stay, patient_stays)


def evaluate_fuh(
    period_start: date,
    period_end: date,
    members: Iterable[Member],
    stays: Iterable[Stay],
    visits: Iterable[Visit],
) -> MeasureResult:
    """HEDIS FUH over the stays discharged in the period. Pass every stay admitted up to the
    period end, from all facilities, so that readmissions and transfers are seen."""
    stays = list(stays)
    _check_inputs(period_start, period_end, stays)
    people = {m.patient_id: m for m in members}
    stays_of, visits_of = _by_patient(stays), _by_patient(visits)
    intake_end = period_end - timedelta(days=FOLLOW_UP_DAYS)
    decisions = []
    for stay in stays:
        if not period_start <= stay.discharged <= period_end:
            continue
        member = people.get(stay.patient_id)
        ineligible = _fuh_ineligibility(stay, member, intake_end, stays_of[stay.patient_id])
        # "Do not include services that occur on the date of discharge."
        follow_up = _FollowUp(visits_of.get(stay.patient_id, []), fuh_follow_up_counts, same_day=False)
        decisions.append(
            _decide(stay.id, stay.patient_id, stay.discharged, ineligible, member, period_end, follow_up)
        )
    return _result("FUH", period_start, period_end, decisions)


# --- FUM ---------------------------------------------------------------------------------------


def fum_follow_up_counts(visit: Visit) -> bool:
    """FUM numerator: a follow-up setting with a mental-health diagnosis, any practitioner."""
    return visit.qualifying_setting and visit.mental_health_diagnosis


def _fum_ineligibility(ed: EdVisit, member: Member | None, intake_end: date) -> Exclusion | None:
    if not (ed.principal_mental_illness or ed.principal_self_harm):
        return Exclusion.NOT_MENTAL_HEALTH
    if not ed.principal_mental_illness and not ed.any_mental_illness:
        return Exclusion.SELF_HARM_WITHOUT_MENTAL_ILLNESS
    if ed.on > intake_end:
        return Exclusion.AFTER_INTAKE_PERIOD
    return _age_exclusion(member, ed.on)


def _repeat_visits(eligible: Iterable[EdVisit]) -> set[str]:
    """HEDIS FUM "Multiple visits in a 31-day period": the first eligible visit counts, the
    member's visits in the 30 days after it do not, and the next one on or after day 31 starts
    a new period. Applied before the admission exclusion, in the order of the specification."""
    repeats: set[str] = set()
    for visits in _by_patient(eligible).values():
        period_end: date | None = None
        for ed in sorted(visits, key=lambda v: (v.on, v.id)):
            if period_end is not None and ed.on <= period_end:
                repeats.add(ed.id)
            else:
                period_end = ed.on + timedelta(days=REPEAT_ED_VISIT_DAYS - 1)
    return repeats


def _admitted_after(ed: EdVisit, patient_stays: Iterable[Stay]) -> bool:
    """HEDIS FUM: admission to an acute or nonacute inpatient setting on the date of the ED
    visit or within the 30 days after it, regardless of diagnosis."""
    last = ed.on + timedelta(days=FOLLOW_UP_DAYS)
    return any(ed.on <= s.admitted <= last for s in patient_stays)


def evaluate_fum(
    period_start: date,
    period_end: date,
    members: Iterable[Member],
    ed_visits: Iterable[EdVisit],
    stays: Iterable[Stay],
    visits: Iterable[Visit],
) -> MeasureResult:
    """HEDIS FUM over the ED visits in the period. `stays`: every inpatient stay admitted up to
    the period end (acute and nonacute, any diagnosis)."""
    in_period = [ed for ed in ed_visits if period_start <= ed.on <= period_end]
    _check_inputs(period_start, period_end, in_period)
    people = {m.patient_id: m for m in members}
    stays_of, visits_of = _by_patient(stays), _by_patient(visits)
    intake_end = period_end - timedelta(days=FOLLOW_UP_DAYS)
    ineligible = {ed.id: _fum_ineligibility(ed, people.get(ed.patient_id), intake_end) for ed in in_period}
    repeats = _repeat_visits(ed for ed in in_period if ineligible[ed.id] is None)
    decisions = []
    for ed in in_period:
        reason = ineligible[ed.id]
        if reason is None and ed.id in repeats:
            reason = Exclusion.REPEAT_ED_VISIT
        elif reason is None and _admitted_after(ed, stays_of.get(ed.patient_id, [])):
            reason = Exclusion.ADMITTED
        # Same-day follow-up counts: 8 and 31 total days.
        follow_up = _FollowUp(visits_of.get(ed.patient_id, []), fum_follow_up_counts, same_day=True)
        member = people.get(ed.patient_id)
        decisions.append(_decide(ed.id, ed.patient_id, ed.on, reason, member, period_end, follow_up))
    return _result("FUM", period_start, period_end, decisions)
