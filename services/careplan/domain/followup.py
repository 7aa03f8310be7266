"""Follow-up after a psychiatric discharge: what the plan must do, by when, and what counts as done.

Sources (DOMAIN.md §2.1 HEDIS FUH, §4 transition standards):
- Suicide risk is about three times higher in the first week after a psychiatric discharge
  (Zero Suicide toolkit); caring contacts (calls, texts) between discharge and the first visit
  (SPRC "Support safe care transitions"; Action Alliance 2019 "Best practices in care
  transitions"): a caring contact within 72 hours.
- HEDIS FUH: a follow-up visit within 7 and within 30 days after discharge; a visit on the
  discharge date does not count; outpatient, telehealth, telephone, observation and similar
  settings count, with a mental-health provider or a mental-health diagnosis.
- A readmission within 30 days moves the follow-up to the later discharge (FUH: count only the
  last discharge); a cancelled discharge (ADT A13) takes the follow-up back.
- Medication reconciliation at every transition of care (The Joint Commission NPSG.03.06.01);
  due by the first follow-up visit, so by day 7 [K: the day-7 due date is our choice].

Everything here is pure: plain dicts and dates in, plain dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal

from services.careplan.domain.plans import ACTIVITY_PRIORITY, ACTIVITY_TRIGGER
from services.careplan.domain.valuesets import (
    ACUTE_INPATIENT,
    FOLLOW_UP_SETTINGS,
    VISIT_HAPPENED,
    encounter_class,
    is_mental_health_diagnosis,
)

#: Extension on a plan activity: which obligation it is (a code of CARE_ACTIVITY), so the
#: same discharge adds each activity once and a visit completes the right one.
ACTIVITY_KIND: Final = "http://carebridge.example/fhir/StructureDefinition/activity-kind"
#: CareBridge's codes for the obligations it tracks.
CARE_ACTIVITY: Final = "http://carebridge.example/fhir/CodeSystem/care-activity"
SNOMED: Final = "http://snomed.info/sct"

Kind = Literal["caring-contact", "follow-up-7", "follow-up-30", "medication-reconciliation"]
FOLLOW_UP_KINDS: Final[tuple[Kind, ...]] = (
    "caring-contact",
    "follow-up-7",
    "follow-up-30",
    "medication-reconciliation",
)
#: Kinds a qualifying visit completes (medication reconciliation is recorded by a person).
VISIT_COMPLETES: Final[frozenset[str]] = frozenset({"caring-contact", "follow-up-7", "follow-up-30"})
OPEN_STATUSES: Final = frozenset({"not-started", "scheduled", "in-progress", "on-hold"})

CARING_CONTACT_WITHIN: Final = timedelta(hours=72)


@dataclass(frozen=True, slots=True)
class Obligation:
    kind: Kind
    title: str
    priority: str  # R4 request-priority: routine | urgent | asap | stat
    #: SNOMED CT concept, [K]: unverified against a release.
    snomed: tuple[str, str] | None


OBLIGATIONS: Final[Mapping[str, Obligation]] = {
    o.kind: o
    for o in (
        Obligation("caring-contact", "Caring contact within 72 hours of discharge", "urgent", None),
        Obligation(
            "follow-up-7",
            "Follow-up visit within 7 days of discharge (HEDIS FUH-7)",
            "urgent",
            ("390906007", "Follow-up encounter"),
        ),
        Obligation(
            "follow-up-30",
            "Follow-up visit within 30 days of discharge (HEDIS FUH-30)",
            "routine",
            ("390906007", "Follow-up encounter"),
        ),
        Obligation(
            "medication-reconciliation",
            "Medication reconciliation after discharge",
            "routine",
            ("430193006", "Medication reconciliation"),
        ),
    )
}


# --- reading encounters ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncounterFacts:
    """What follow-up tracking reads of an Encounter."""

    id: str
    patient_id: str
    class_code: str | None
    status: str
    start: datetime | None
    end: datetime | None
    #: (Condition id, rank) of Encounter.diagnosis, rank None when not ranked.
    diagnoses: tuple[tuple[str, int | None], ...]

    @property
    def principal_condition(self) -> str | None:
        """The diagnosis ranked 1 (HL7 table 0359 via DG1-15); else the best-ranked one; else
        the first listed (R4 Encounter.diagnosis.rank: 1 is the primary diagnosis)."""
        if not self.diagnoses:
            return None
        ranked = [d for d in self.diagnoses if d[1] is not None]
        if ranked:
            return min(ranked, key=lambda d: d[1] or 0)[0]
        return self.diagnoses[0][0]


def parse_instant(value: Any) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (a date is its start, UTC; a time without
    an offset is taken as UTC)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def encounter_facts(encounter: Mapping[str, Any]) -> EncounterFacts | None:
    subject = (encounter.get("subject") or {}).get("reference")
    if not isinstance(subject, str) or not subject.startswith("Patient/") or not encounter.get("id"):
        return None
    period = encounter.get("period") or {}
    diagnoses = []
    for entry in encounter.get("diagnosis") or []:
        reference = ((entry or {}).get("condition") or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Condition/"):
            rank = entry.get("rank")
            diagnoses.append((reference.removeprefix("Condition/"), rank if isinstance(rank, int) else None))
    return EncounterFacts(
        id=str(encounter["id"]),
        patient_id=subject.removeprefix("Patient/"),
        class_code=encounter_class(dict(encounter)),
        status=str(encounter.get("status") or "unknown"),
        start=parse_instant(period.get("start")),
        end=parse_instant(period.get("end")),
        diagnoses=tuple(diagnoses),
    )


def is_psychiatric_discharge(facts: EncounterFacts, codes: Mapping[str, Sequence[str]]) -> bool:
    """A finished acute inpatient stay whose principal diagnosis is a mental illness or
    intentional self-harm. `codes`: ICD-10 codes by Condition id (those known so far)."""
    if facts.class_code not in ACUTE_INPATIENT or facts.status != "finished" or facts.end is None:
        return False
    principal = facts.principal_condition
    return principal is not None and any(is_mental_health_diagnosis(c) for c in codes.get(principal, ()))


def is_follow_up_visit(
    facts: EncounterFacts, codes: Mapping[str, Sequence[str]], *, mental_health_provider: bool = False
) -> bool:
    """An outpatient, telehealth, home or observation visit that happened, with a mental-health
    provider or any mental-health diagnosis (FUH numerator)."""
    if facts.class_code not in FOLLOW_UP_SETTINGS or facts.status not in VISIT_HAPPENED:
        return False
    if facts.start is None:
        return False
    has_diagnosis = any(
        is_mental_health_diagnosis(c) for cid, _ in facts.diagnoses for c in codes.get(cid, ())
    )
    return has_diagnosis or mental_health_provider


# --- the plan's obligations --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Due:
    start: datetime
    end: datetime


def discharge_follow_up_due(discharged: datetime, kind: str) -> Due:
    """When each obligation is due. Day windows are whole calendar days after the discharge
    date: the 7-day visit is due from the day after discharge to the end of day 7."""
    day = discharged.date()
    tz = discharged.tzinfo or UTC
    if kind == "caring-contact":
        return Due(discharged, discharged + CARING_CONTACT_WITHIN)
    days = {"follow-up-7": 7, "follow-up-30": 30, "medication-reconciliation": 7}[kind]
    start = datetime.combine(day + timedelta(days=1), time(), tz)
    end = datetime.combine(day + timedelta(days=days), time(23, 59, 59), tz)
    return Due(discharged if kind == "medication-reconciliation" else start, end)


def discharge_activity(encounter_id: str, discharged: datetime, kind: str) -> dict[str, Any]:
    """One CarePlan.activity for a psychiatric discharge: detail.kind Task (R4 care-plan-activity-kind)
    with the window in scheduledPeriod and the urgency in the activity-priority extension."""
    obligation = OBLIGATIONS[kind]
    due = discharge_follow_up_due(discharged, kind)
    codings = [{"system": CARE_ACTIVITY, "code": kind, "display": obligation.title}]
    if obligation.snomed:
        codings.append({"system": SNOMED, "code": obligation.snomed[0], "display": obligation.snomed[1]})
    return {
        "extension": [
            {"url": ACTIVITY_PRIORITY, "valueCode": obligation.priority},
            {"url": ACTIVITY_TRIGGER, "valueReference": {"reference": f"Encounter/{encounter_id}"}},
            {"url": ACTIVITY_KIND, "valueCode": kind},
        ],
        "detail": {
            "kind": "Task",
            "code": {"coding": codings, "text": obligation.title},
            "status": "not-started",
            "scheduledPeriod": {"start": _instant(due.start), "end": _instant(due.end)},
            "description": obligation.title,
        },
    }


def discharge_activities(encounter_id: str, discharged: datetime) -> list[dict[str, Any]]:
    return [discharge_activity(encounter_id, discharged, kind) for kind in FOLLOW_UP_KINDS]


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def extension_value(activity: Mapping[str, Any], url: str) -> Any:
    for extension in activity.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == url:
            for key, value in extension.items():
                if key.startswith("value"):
                    return value
    return None


def activity_key(activity: Mapping[str, Any]) -> tuple[str, str] | None:
    """(trigger reference, kind) of an activity careplan added; None for one a person added."""
    trigger = extension_value(activity, ACTIVITY_TRIGGER)
    reference = trigger.get("reference") if isinstance(trigger, dict) else None
    if not isinstance(reference, str):
        return None
    return reference, str(extension_value(activity, ACTIVITY_KIND) or "")


def activity_status(activity: Mapping[str, Any]) -> str:
    return str((activity.get("detail") or {}).get("status") or "unknown")


def activity_window(activity: Mapping[str, Any]) -> Due | None:
    """The activity's scheduledPeriod; a date-only end means the end of that day."""
    period = (activity.get("detail") or {}).get("scheduledPeriod") or {}
    start, end = parse_instant(period.get("start")), parse_instant(period.get("end"))
    if end is None:
        return None
    if len(str(period.get("end"))) == 10:
        end += timedelta(days=1, seconds=-1)
    return Due(start or end, end)


def visit_completes(kind: str, discharged: datetime, visit: datetime) -> bool:
    """Whether a qualifying visit at `visit` meets obligation `kind` of a discharge at
    `discharged`. Visit days are compared as dates (FUH counts days, not hours); a visit on
    the discharge date meets neither FUH window, but is a caring contact."""
    if kind not in VISIT_COMPLETES:
        return False
    if kind == "caring-contact":
        return discharged <= visit <= discharged + CARING_CONTACT_WITHIN
    days = (visit.date() - discharged.date()).days
    return 1 <= days <= (7 if kind == "follow-up-7" else 30)


def completed(activity: dict[str, Any], visit_reference: str) -> dict[str, Any]:
    detail = {**activity["detail"], "status": "completed"}
    detail.pop("statusReason", None)
    outcome = [*(activity.get("outcomeReference") or [])]
    if not any(o.get("reference") == visit_reference for o in outcome):
        outcome.append({"reference": visit_reference})
    return {**activity, "detail": detail, "outcomeReference": outcome}


def cancelled(activity: dict[str, Any], reason: str) -> dict[str, Any]:
    """An obligation that no longer applies (discharge cancelled, readmitted): R4
    CarePlan.activity.detail.status `cancelled` with the reason in statusReason."""
    detail = {**activity["detail"], "status": "cancelled", "statusReason": {"text": reason}}
    return {**activity, "detail": detail}


def date_of(value: datetime | None) -> date | None:
    return value.date() if value else None
