"""A FUH or FUM result as a FHIR R4 MeasureReport (http://hl7.org/fhir/R4/measurereport.html).

- One group per rate ("fuh-7", "fuh-30" / "fum-7", "fum-30"), each with the four populations
  of a proportion measure (R4 measure-population codes): initial-population, denominator,
  denominator-exclusion, numerator. As in FHIR proportion scoring
  (http://hl7.org/fhir/R4/measure.html#scoring), the denominator count includes the
  exclusions and the score is numerator / (denominator - denominator-exclusion): here the
  HEDIS eligible population is both the initial population and the denominator, and hospice
  and death are the exclusions. `measureScore` is that proportion rounded to 4 places, left
  out when nobody is left in the denominator.
- A "subject-list" report points each population at a contained List (`#id`) of the Patient
  references it counted: one entry per event, so a member with two counted discharges is
  listed twice, and the list lengths equal the counts. The three populations before the
  numerator are the same for both rates and share one List.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final, Literal

from services.careplan.domain.measures import (
    FUH_MEASURE_URL,
    FUM_MEASURE_URL,
    EventDecision,
    MeasureResult,
)

MEASURE_POPULATION: Final = "http://terminology.hl7.org/CodeSystem/measure-population"
IMPROVEMENT_NOTATION: Final = "http://terminology.hl7.org/CodeSystem/measure-improvement-notation"

ReportType = Literal["summary", "subject-list"]

_POPULATION_DISPLAY: Final = {
    "initial-population": "Initial Population",
    "denominator": "Denominator",
    "denominator-exclusion": "Denominator Exclusion",
    "numerator": "Numerator",
}
_MEASURE_URLS: Final = {"FUH": FUH_MEASURE_URL, "FUM": FUM_MEASURE_URL}
_RATE_TEXT: Final = {
    "FUH": "Follow-up within {days} days after discharge",
    "FUM": "Follow-up within {days} days of the ED visit",
}


def measure_report(
    result: MeasureResult,
    *,
    measure_url: str | None = None,
    period_start: date | None = None,
    period_end: date | None = None,
    report_type: ReportType = "summary",
    generated: datetime,
) -> dict[str, Any]:
    """The MeasureReport (status complete) for `result`. `measure_url` defaults to the
    measure's canonical URL; a period, when given, must be the one the result was computed for.
    `generated` becomes MeasureReport.date and must carry a time zone (FHIR dateTime)."""
    if report_type not in ("summary", "subject-list"):
        raise ValueError(f"report type {report_type!r} is not summary or subject-list")
    for given, computed in ((period_start, result.period_start), (period_end, result.period_end)):
        if given is not None and given != computed:
            raise ValueError(f"the period ({given}) differs from the result's ({computed})")
    if generated.tzinfo is None:
        raise ValueError("generated needs a time zone")
    prefix = result.measure.lower()
    lists = _population_lists(result, prefix) if report_type == "subject-list" else None
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": report_type,
        "measure": measure_url or _MEASURE_URLS[result.measure],
        "date": generated.isoformat(timespec="seconds"),
        "period": {"start": result.period_start.isoformat(), "end": result.period_end.isoformat()},
        "improvementNotation": {
            "coding": [
                {
                    "system": IMPROVEMENT_NOTATION,
                    "code": "increase",
                    "display": "Increased score indicates improvement",
                }
            ]
        },
        "group": [_group(result, prefix, days, lists) for days in (7, 30)],
    }
    if lists is not None:
        report["contained"] = list(lists.values())
    return report


def _group(
    result: MeasureResult, prefix: str, days: int, lists: dict[str, dict[str, Any]] | None
) -> dict[str, Any]:
    numerator = result.numerator_7 if days == 7 else result.numerator_30
    counts = {
        "initial-population": (result.initial_population, f"{prefix}-initial-population"),
        "denominator": (result.initial_population, f"{prefix}-denominator"),
        "denominator-exclusion": (result.denominator_exclusions, f"{prefix}-denominator-exclusion"),
        "numerator": (numerator, f"{prefix}-{days}-numerator"),
    }
    populations = []
    for code, (count, list_id) in counts.items():
        population: dict[str, Any] = {
            "code": {
                "coding": [{"system": MEASURE_POPULATION, "code": code, "display": _POPULATION_DISPLAY[code]}]
            },
            "count": count,
        }
        if lists is not None:
            population["subjectResults"] = {"reference": f"#{list_id}"}
        populations.append(population)
    group: dict[str, Any] = {
        "id": f"{prefix}-{days}",
        "code": {"text": _RATE_TEXT[result.measure].format(days=days)},
        "population": populations,
    }
    scored = result.denominator
    if scored:
        group["measureScore"] = {"value": round(numerator / scored, 4)}
    return group


def _population_lists(result: MeasureResult, prefix: str) -> dict[str, dict[str, Any]]:
    """The contained Lists, keyed by id: who each population counted."""
    initial = [e for e in result.events if e.in_initial_population]
    members = {
        f"{prefix}-initial-population": initial,
        f"{prefix}-denominator": initial,
        f"{prefix}-denominator-exclusion": [e for e in initial if not e.in_denominator],
        f"{prefix}-7-numerator": [e for e in result.events if e.met_7],
        f"{prefix}-30-numerator": [e for e in result.events if e.met_30],
    }
    return {list_id: _subject_list(list_id, events) for list_id, events in members.items()}


def _subject_list(list_id: str, events: list[EventDecision]) -> dict[str, Any]:
    subject_list: dict[str, Any] = {
        "resourceType": "List",
        "id": list_id,
        "status": "current",
        "mode": "snapshot",
    }
    if events:
        subject_list["entry"] = [{"item": {"reference": f"Patient/{e.patient_id}"}} for e in events]
    else:
        # R4 List: an empty list says why (list-empty-reason "nilknown": none of these).
        subject_list["emptyReason"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nilknown"}
            ]
        }
    return subject_list
