"""Measurement-based care for depression on the case-management plan: PHQ-9 goals and re-measurement.

Sources (DOMAIN.md §1.2, §4):
- CMS159 / NQF 0710 "Depression Remission at Twelve Months": remission is "a PHQ-9 score less
  than five", measured 12 months (± the measure's window) after an index PHQ-9 above 9.
- NQF 1885 "Depression Response at Twelve Months": the PHQ-9 "reduced by 50% or greater from the
  initial PHQ-9 score". Both measures are defined only for a baseline above 9 (i.e. ≥ 10).
- CMS160 / NQF 0712 "Utilization of the PHQ-9 Tool": a PHQ-9 in each 4-month period for a client
  with depression, hence a re-administration due 4 calendar months after the last one.
- FHIR R4 Goal (achievementStatus from http://terminology.hl7.org/CodeSystem/goal-achievement,
  category from goal-category) and CarePlan.activity.detail.

Our rules (chosen here, not taken from the measures):
- Episodes. Scores are read in date order (same-day scores keep the order given). An episode
  starts at the first score ≥ 10, its baseline, and lasts until a score < 5 (remission). The next
  score ≥ 10 after a remission starts a new episode with a new baseline. A score ≥ 10 during an
  episode never replaces the baseline. Evaluation reads the current (latest) episode only.
- Achievement status, comparing the latest score with the one before it in the episode: only
  the baseline so far → in-progress; latest meets the target → achieved, or sustaining when the
  previous score met it too; otherwise improving (lower), worsening (higher) or no-change.
  not-achieved is not set automatically: whether the 12-month window closed is the measure's
  question, not the plan's, and a person closes a goal.

Everything here is pure: plain dicts, dates and small dataclasses in and out.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Final, Literal

from services.careplan.domain.plans import ACTIVITY_PRIORITY, ACTIVITY_TRIGGER

# The same codes intake writes (services/intake/domain/screening_codes.py); careplan does not
# import another service, so they are repeated here. LOINC © Regenstrief Institute.
LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
SCORE_UNIT: Final = "{score}"
PHQ9_PANEL: Final = ("44249-1", "PHQ-9 quick depression assessment panel [Reported.PHQ]")
PHQ9_TOTAL: Final = ("44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]")
GOAL_ACHIEVEMENT: Final = "http://terminology.hl7.org/CodeSystem/goal-achievement"
GOAL_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/goal-category"
#: Goal.identifier system; the value is "<baseline Observation id>/<kind>".
GOAL_IDENTIFIER_SYSTEM: Final = "urn:carebridge:phq9-goal"
#: uuid5 namespace of the Goal ids, so the same baseline and kind always name the same Goal.
GOAL_ID_NAMESPACE: Final = uuid.UUID("3f0c8e52-6a1d-4c77-9a43-2d6b1f0e9c15")
#: Extension on a Goal: the CarePlan it belongs to. R4 Goal has no element pointing to its plan
#: (CarePlan.goal points the other way), and careplan reads a Goal without the plan at hand.
GOAL_CARE_PLAN: Final = "http://carebridge.example/fhir/StructureDefinition/goal-care-plan"

#: Observation statuses whose value stands (R4 observation-status).
RESULT_STATUSES: Final = frozenset({"final", "amended", "corrected"})
#: CarePlan.activity.detail statuses of an activity still to be done (R4 care-plan-activity-status).
OPEN_STATUSES: Final = frozenset({"not-started", "scheduled", "in-progress", "on-hold"})
#: Goal lifecycle statuses a person closed: not re-scored (R4 goal-status).
CLOSED_GOAL_STATUSES: Final = frozenset({"completed", "cancelled", "entered-in-error", "rejected"})

ELEVATED: Final = 10  # baseline "> 9" (CMS159, NQF 1885)
REMISSION_BELOW: Final = 5  # remission "less than five" (CMS159)
REMEASURE_MONTHS: Final = 4  # CMS160: a PHQ-9 in each 4-month period
GOAL_MONTHS: Final = 12  # CMS159 / NQF 1885: at twelve months
TRIGGER_PREFIX: Final = "phq9-due/"

GoalKind = Literal["response", "remission"]
GOAL_KINDS: Final[tuple[GoalKind, ...]] = ("response", "remission")


def _loinc(code: tuple[str, str]) -> dict[str, str]:
    return {"system": LOINC, "code": code[0], "display": code[1]}


def plus_months(day: date, months: int) -> date:
    """`day` plus calendar months, clipped to the month's last day (Oct 31 + 4 → Feb 28 or 29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


# --- reading PHQ-9 totals -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """One PHQ-9 total: the Observation it came from, the day it was taken, the value 0-27."""

    observation_id: str
    on: date
    value: int

    @property
    def reference(self) -> str:
        return f"Observation/{self.observation_id}"


def _is_phq9_total(code: Any) -> bool:
    codings = (code or {}).get("coding") if isinstance(code, dict) else None
    return any(
        isinstance(c, dict) and c.get("system") == LOINC and c.get("code") == PHQ9_TOTAL[0]
        for c in codings or []
    )


def _effective_day(observation: Mapping[str, Any]) -> date | None:
    """The day as recorded (the local date written in the dateTime, not converted to UTC); a
    partial date (year, year-month) has no day and is not read."""
    period = observation.get("effectivePeriod")
    period = period if isinstance(period, dict) else {}
    value = observation.get("effectiveDateTime") or observation.get("effectiveInstant") or period.get("end")
    value = value or period.get("start")
    try:
        return date.fromisoformat(value[:10]) if isinstance(value, str) and len(value) >= 10 else None
    except ValueError:
        return None


def _integer_score(quantity: Any) -> int | None:
    value = quantity.get("value") if isinstance(quantity, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if isinstance(value, Decimal) and not value.is_finite():  # float() refuses a signaling NaN
        return None
    number = float(value)  # NaN and infinities fail the range check below
    if not 0 <= number <= 27 or not number.is_integer():  # PHQ-9 total range (LOINC 44261-6)
        return None
    return int(number)


def phq9_total(observation: Mapping[str, Any]) -> Score | None:
    """The PHQ-9 total of an Observation (LOINC 44261-6, final/amended/corrected, an integer
    0-27, a day it was taken, an id); None for anything else."""
    if observation.get("resourceType", "Observation") != "Observation":
        return None
    if observation.get("status") not in RESULT_STATUSES or not _is_phq9_total(observation.get("code")):
        return None
    value, on = _integer_score(observation.get("valueQuantity")), _effective_day(observation)
    id_ = observation.get("id")
    if value is None or on is None or not isinstance(id_, str) or not id_:
        return None
    return Score(id_, on, value)


# --- episodes and goal evaluation ---------------------------------------------------------------


def current_episode(scores: Sequence[Score]) -> tuple[Score, ...]:
    """The scores of the latest episode, its baseline first; empty when no score was ≥ 10."""
    ordered = sorted({s.observation_id: s for s in scores}.values(), key=lambda s: s.on)
    episode: list[Score] = []
    remitted = False
    for score in ordered:
        if score.value >= ELEVATED and (not episode or remitted):
            episode, remitted = [score], False  # the first elevated score, or one after a remission
        elif episode:
            episode.append(score)
            remitted = remitted or score.value < REMISSION_BELOW
    return tuple(episode)


def baseline(scores: Sequence[Score]) -> Score | None:
    """The baseline of the current episode (see the module docstring), None without one."""
    episode = current_episode(scores)
    return episode[0] if episode else None


def meets_target(kind: GoalKind, baseline_value: int, value: int) -> bool:
    if kind == "remission":
        return value < REMISSION_BELOW
    return 2 * value <= baseline_value  # ≥ 50% reduction, in integers: 10 → 5 meets, 10 → 6 does not


def _target_text(kind: GoalKind, baseline_value: int) -> str:
    if kind == "remission":
        return "remission (PHQ-9 < 5)"
    return f"response (PHQ-9 ≤ {baseline_value // 2}, a 50% reduction from {baseline_value})"


@dataclass(frozen=True, slots=True)
class GoalEvaluation:
    kind: GoalKind
    #: Goal.achievementStatus code (goal-achievement)
    status: str
    baseline: Score
    latest: Score
    previous: Score | None
    explanation: str

    @property
    def met(self) -> bool:
        return self.status in ("achieved", "sustaining")

    def achievement_status(self) -> dict[str, Any]:
        return {**_achievement(self.status), "text": self.explanation}


def _achievement(code: str) -> dict[str, Any]:
    """A goal-achievement CodeableConcept; each display is the code in title case ("No Change")."""
    return {"coding": [{"system": GOAL_ACHIEVEMENT, "code": code, "display": code.replace("-", " ").title()}]}


def _status(kind: GoalKind, base: Score, latest: Score, previous: Score | None) -> str:
    if previous is None:
        return "in-progress"
    if meets_target(kind, base.value, latest.value):
        return "sustaining" if meets_target(kind, base.value, previous.value) else "achieved"
    if latest.value < previous.value:
        return "improving"
    return "worsening" if latest.value > previous.value else "no-change"


def evaluate_goal(kind: GoalKind, scores: Sequence[Score]) -> GoalEvaluation | None:
    """How the current episode stands against the remission or response target; None when no
    score is ≥ 10 (neither measure applies)."""
    if kind not in GOAL_KINDS:
        raise ValueError(f"Unknown PHQ-9 goal kind {kind!r}")
    episode = current_episode(scores)
    if not episode:
        return None
    base, latest = episode[0], episode[-1]
    previous = episode[-2] if len(episode) > 1 else None
    status = _status(kind, base, latest, previous)
    target = _target_text(kind, base.value)
    since = f"baseline {base.value} on {base.on.isoformat()}"
    if previous is None:
        explanation = f"PHQ-9 {since}; target {target}; no later score yet."
    elif status in ("achieved", "sustaining"):
        kept = " again" if status == "sustaining" else ""
        explanation = (
            f"PHQ-9 {latest.value} on {latest.on.isoformat()} meets{kept} the {target} target ({since})."
        )
    else:
        change = {"improving": "down", "worsening": "up", "no-change": "unchanged"}[status]
        explanation = (
            f"PHQ-9 {latest.value} on {latest.on.isoformat()}, {change} from {previous.value} on "
            f"{previous.on.isoformat()}; {target} not met ({since})."
        )
    return GoalEvaluation(kind, status, base, latest, previous, explanation)


# --- Goal resources -----------------------------------------------------------------------------


def phq9_goal_id(kind: GoalKind, baseline_observation_id: str) -> str:
    """The Goal id for a kind and a baseline: one remission and one response Goal per episode."""
    return str(uuid.uuid5(GOAL_ID_NAMESPACE, f"{baseline_observation_id}/{kind}"))


def _score_quantity(value: int) -> dict[str, Any]:
    return {"value": value, "unit": SCORE_UNIT, "system": UCUM, "code": SCORE_UNIT}


def _target(kind: GoalKind, base: Score) -> dict[str, Any]:
    target: dict[str, Any] = {"measure": {"coding": [_loinc(PHQ9_TOTAL)], "text": "PHQ-9 total score"}}
    if kind == "remission":
        target["detailRange"] = {"high": _score_quantity(REMISSION_BELOW - 1)}
    else:
        # PHQ-9 totals are integers, so "≤ 50% of the baseline" is "≤ floor(baseline / 2)".
        target["detailQuantity"] = {**_score_quantity(base.value // 2), "comparator": "<="}
    target["dueDate"] = plus_months(base.on, GOAL_MONTHS).isoformat()
    return target


def phq9_goal(
    kind: GoalKind, patient_reference: str, plan_reference: str | None, baseline: Score, start: date
) -> dict[str, Any]:
    """An R4 Goal for depression remission (CMS159) or response (NQF 1885) from an elevated
    baseline, due 12 months after it. Raises ValueError for a baseline below 10."""
    if kind not in GOAL_KINDS:
        raise ValueError(f"Unknown PHQ-9 goal kind {kind!r}")
    if baseline.value < ELEVATED:
        raise ValueError(f"PHQ-9 {kind} is defined only for a baseline above 9, not {baseline.value}")
    title = {
        "remission": "Depression remission: PHQ-9 below 5 within 12 months (CMS159 / NQF 0710)",
        "response": "Depression response: PHQ-9 reduced by 50% or more within 12 months (NQF 1885)",
    }[kind]
    goal: dict[str, Any] = {
        "resourceType": "Goal",
        "id": phq9_goal_id(kind, baseline.observation_id),
        "identifier": [{"system": GOAL_IDENTIFIER_SYSTEM, "value": f"{baseline.observation_id}/{kind}"}],
        "lifecycleStatus": "active",
        "achievementStatus": _achievement("in-progress"),
        "category": [{"coding": [{"system": GOAL_CATEGORY, "code": "behavioral", "display": "Behavioral"}]}],
        "description": {"text": title},
        "subject": {"reference": patient_reference},
        "startDate": start.isoformat(),
        "target": [_target(kind, baseline)],
        "addresses": [{"reference": baseline.reference}],
    }
    if plan_reference:
        goal["extension"] = [{"url": GOAL_CARE_PLAN, "valueReference": {"reference": plan_reference}}]
    return goal


def apply_evaluation(goal: Mapping[str, Any], evaluation: GoalEvaluation) -> dict[str, Any] | None:
    """The Goal with the evaluation's achievementStatus and the latest Observation among its
    outcomeReference; None when that changes nothing or when a person closed the goal.
    lifecycleStatus is left as it is: completing a goal is a person's decision.
    Raises ValueError when the Goal is not the one for this evaluation's kind and baseline."""
    expected = f"{evaluation.baseline.observation_id}/{evaluation.kind}"
    identifiers = {
        i.get("value") for i in goal.get("identifier") or [] if i.get("system") == GOAL_IDENTIFIER_SYSTEM
    }
    if expected not in identifiers:
        raise ValueError(f"Goal {goal.get('id')!r} is not the {evaluation.kind} goal of baseline {expected}")
    if goal.get("lifecycleStatus") in CLOSED_GOAL_STATUSES:
        return None
    outcomes = list(goal.get("outcomeReference") or [])
    if not any(o.get("reference") == evaluation.latest.reference for o in outcomes):
        outcomes.append({"reference": evaluation.latest.reference})
    updated = {**goal, "achievementStatus": evaluation.achievement_status(), "outcomeReference": outcomes}
    return None if updated == dict(goal) else updated


# --- re-administration (CMS160) -----------------------------------------------------------------


def phq9_due(last_score_on: date | None, depression_since: date) -> date:
    """When the next PHQ-9 is due: 4 calendar months after the last one (CMS160), but never
    before the depression diagnosis; with no PHQ-9 yet, due on the diagnosis date."""
    if last_score_on is None:
        return depression_since
    return max(plus_months(last_score_on, REMEASURE_MONTHS), depression_since)


def readministration_trigger(due: date) -> str:
    """The ACTIVITY_TRIGGER value of the re-administration due on `due` ("phq9-due/2026-03-01")."""
    return f"{TRIGGER_PREFIX}{due.isoformat()}"


def _description(due: date) -> str:
    return f"PHQ-9 re-administration due by {due.isoformat()} (CMS160: a PHQ-9 in each 4-month period)"


def phq9_readministration_activity(due: date, trigger: str, *, start: date | None = None) -> dict[str, Any]:
    """A CarePlan.activity: administer a PHQ-9 by `due`.

    detail.kind Task: it is work for the care team (send the questionnaire or administer it at the
    next contact), as the plan's other activities are, and as DOMAIN.md §1.3 asks for a
    "Task to complete the PHQ-9"; a ServiceRequest would order a service from someone else."""
    period = {"end": due.isoformat()}
    if start is not None:
        period = {"start": min(start, due).isoformat(), **period}
    return {
        "extension": [
            {"url": ACTIVITY_PRIORITY, "valueCode": "routine"},
            {"url": ACTIVITY_TRIGGER, "valueReference": {"reference": trigger}},
        ],
        "detail": {
            "kind": "Task",
            "code": {"coding": [_loinc(PHQ9_PANEL)], "text": "PHQ-9"},
            "status": "not-started",
            "scheduledPeriod": period,
            "description": _description(due),
        },
    }


def _trigger_due(activity: Mapping[str, Any]) -> date | None:
    """The due date of a re-administration activity this module added; None for any other."""
    for extension in activity.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == ACTIVITY_TRIGGER:
            reference = (extension.get("valueReference") or {}).get("reference")
            if isinstance(reference, str) and reference.startswith(TRIGGER_PREFIX):
                try:
                    return date.fromisoformat(reference.removeprefix(TRIGGER_PREFIX))
                except ValueError:
                    return None
    return None


def _with_detail(activity: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**activity, "detail": {**activity["detail"], **changes}}


def _moved(activity: dict[str, Any], due: date) -> dict[str, Any]:
    period = {**((activity.get("detail") or {}).get("scheduledPeriod") or {}), "end": due.isoformat()}
    if "start" in period:
        period["start"] = min(date.fromisoformat(str(period["start"])[:10]), due).isoformat()
    extensions = [e for e in activity.get("extension") or [] if e.get("url") != ACTIVITY_TRIGGER]
    extensions.append(
        {"url": ACTIVITY_TRIGGER, "valueReference": {"reference": readministration_trigger(due)}}
    )
    return {
        **_with_detail(activity, scheduledPeriod=period, description=_description(due)),
        "extension": extensions,
    }


def refresh_readministration(
    plan: Mapping[str, Any], due: date, today: date, *, taken: str | None = None
) -> dict[str, Any] | None:
    """The plan with its PHQ-9 re-administration for `due`, or None when it already has it.

    - An open re-administration due earlier was met by a PHQ-9 taken since (the due date only
      moves later when a newer PHQ-9 arrives): it is completed, with `taken` (the PHQ-9
      Observation reference) as its outcome when given, and a new activity is added for `due`.
    - An open one due later (the latest PHQ-9 entered in error, an earlier diagnosis) has its due
      date moved back to `due`.
    - One for `due` that is done (completed, cancelled) is not re-opened, and nothing is added.
    New activities are scheduled from `today` (or `due`, if earlier) to `due`."""
    activities = [dict(a) for a in plan.get("activity") or []]
    has_due = any(_trigger_due(a) == due for a in activities)
    for index, activity in enumerate(activities):
        was_due = _trigger_due(activity)
        status = (activity.get("detail") or {}).get("status")
        if was_due is None or was_due == due or status not in OPEN_STATUSES:
            continue
        if was_due < due:
            done = _with_detail(activity, status="completed")
            if taken and not any(o.get("reference") == taken for o in done.get("outcomeReference") or []):
                done["outcomeReference"] = [*(done.get("outcomeReference") or []), {"reference": taken}]
            activities[index] = done
        elif not has_due:
            activities[index], has_due = _moved(activity, due), True
        else:  # a second open one, due later: the plan keeps one obligation per due date
            superseded = {"text": f"Superseded: the PHQ-9 is now due by {due.isoformat()}"}
            activities[index] = _with_detail(activity, status="cancelled", statusReason=superseded)
    if not has_due:
        activities.append(phq9_readministration_activity(due, readministration_trigger(due), start=today))
    if activities == list(plan.get("activity") or []):
        return None
    return {**plan, "activity": activities}
