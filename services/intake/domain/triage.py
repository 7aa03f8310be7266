"""What a scored screening asks of the care team: safety signals and Flags, SDOH needs, next screens.

The rules, their thresholds and sources, in one place:

- PHQ-9 item 9 (44260-8, thoughts of death or self-harm) scored 1 or more: a structured suicide
  risk assessment (C-SSRS) before the encounter ends; escalated when scored 2-3 ("more than half
  the days", "nearly every day"). A negative item 9 does not rule risk out. DOMAIN.md §1.2 [S:
  AACN Crit Care Nurse; V: Simon et al., Psychiatr Serv 2013 for the gradient with frequency].
- C-SSRS screener high risk (intent, plan with intent, behaviour within 3 months): crisis
  workflow, immediate evaluation and safety precautions. Moderate risk (method, or behaviour
  longer ago): same-day safety planning. DOMAIN.md §1.5 [S: Columbia triage guidelines].
- AHC HRSN interpersonal safety sum over 10: IPV safety workflow, restricted visibility.
  DOMAIN.md §1.8, §1.9 [V: CMS core HRSN questions].
- PHQ-2 of 3 or more: give the PHQ-9 (DOMAIN.md §1.3). PHQ-9 item 9 positive: give the C-SSRS.
- AHC HRSN underlined answers: Gravity SDOH categories (DOMAIN.md §1.8), which drive referrals.

Priorities use the FHIR flag-priority codes. Which priority each signal gets (PH for item 9 and
C-SSRS high, PM for C-SSRS moderate and IPV) is CareBridge policy [K], for clinical review.
Reasons carry no PHI: they name the instrument, item and answer, never the person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from services.intake.domain import screening_codes as c
from services.intake.domain.instrument_model import Coding
from services.intake.domain.instruments import (
    AHC_HRSN,
    CSSRS_SCREENER,
    PHQ2,
    PHQ9,
    PHQ9_ITEM9_ESCALATE,
    PHQ9_ITEM9_POSITIVE,
    SAFETY,
)
from services.intake.domain.scoring import RISK_HIGH, RISK_MODERATE, Score

SIGNAL_PHQ9_ITEM9 = "phq9-item9-self-harm-thoughts"
SIGNAL_CSSRS_HIGH = "cssrs-high-risk"
SIGNAL_CSSRS_MODERATE = "cssrs-moderate-risk"
SIGNAL_INTERPERSONAL_SAFETY = "ahc-interpersonal-safety"

ACTION_CSSRS = "cssrs"
ACTION_SAFETY_PLAN = "safety-plan"
ACTION_CRISIS = "crisis"
ACTION_IPV_SAFETY = "ipv-safety"

PRIORITY_HIGH, PRIORITY_MEDIUM, PRIORITY_LOW, PRIORITY_NONE = "PH", "PM", "PL", "PN"
_PRIORITY_DISPLAYS = {
    PRIORITY_HIGH: "High priority",
    PRIORITY_MEDIUM: "Medium priority",
    PRIORITY_LOW: "Low priority",
    PRIORITY_NONE: "No alarm",
}
_SAFETY_CATEGORY = Coding(c.FLAG_CATEGORY, "safety", "Safety")


@dataclass(frozen=True, slots=True)
class RiskSignal:
    code: str  # one of the SIGNAL_* constants (system SCREENING_SIGNAL_SYSTEM)
    display: str
    priority: str  # flag-priority code: PH | PM | PL | PN
    reason: str  # no PHI
    action: str  # the same-day action: cssrs | safety-plan | crisis | ipv-safety
    source: str
    evidence: tuple[str, ...]  # LOINC item codes behind the signal
    escalated: bool = False
    restricted: bool = False  # IPV: show only to those who need to know (DOMAIN.md §1.9, §3.4 label V)


@dataclass(frozen=True, slots=True)
class Need:
    category: Coding  # a Gravity SDOH category
    evidence: tuple[str, ...]  # LOINC item codes of the positive answers

    def coding(self) -> dict[str, str]:
        return self.category.as_fhir()


def _phq9_item9(score: Score) -> RiskSignal | None:
    item9 = score.item(c.PHQ9_ITEM9_SELF_HARM)
    if item9 is None or item9.score is None or item9.score < PHQ9_ITEM9_POSITIVE:
        return None
    answer = item9.answers[0].option
    escalated = item9.score >= PHQ9_ITEM9_ESCALATE
    return RiskSignal(
        code=SIGNAL_PHQ9_ITEM9,
        display="PHQ-9 item 9 positive: thoughts of death or self-harm",
        priority=PRIORITY_HIGH,
        reason=(
            f"PHQ-9 item 9 answered '{answer.display if answer else item9.score}' (score {item9.score})"
            + ("; frequent thoughts, escalated" if escalated else "")
            + ": complete a C-SSRS before the encounter ends"
        ),
        action=ACTION_CSSRS,
        source="DOMAIN.md §1.2: PHQ-9 item 9 >= 1 needs a same-day structured suicide risk assessment",
        evidence=(c.PHQ9_ITEM9_SELF_HARM,),
        escalated=escalated,
    )


def _cssrs(score: Score) -> RiskSignal | None:
    evidence = tuple(
        s.code for s in score.items if any(a.option and a.option.code == c.LA_YES for a in s.answers)
    )
    source = "DOMAIN.md §1.5: Columbia C-SSRS screener triage guidelines"
    if score.risk_level == RISK_HIGH:
        return RiskSignal(
            code=SIGNAL_CSSRS_HIGH,
            display="C-SSRS screener: high suicide risk",
            priority=PRIORITY_HIGH,
            reason="C-SSRS screener high risk: immediate evaluation and safety precautions; notify the team",
            action=ACTION_CRISIS,
            source=source,
            evidence=evidence,
            escalated=True,
        )
    if score.risk_level == RISK_MODERATE:
        return RiskSignal(
            code=SIGNAL_CSSRS_MODERATE,
            display="C-SSRS screener: moderate suicide risk",
            priority=PRIORITY_MEDIUM,
            reason="C-SSRS screener moderate risk: same-day safety plan and behavioural health follow-up",
            action=ACTION_SAFETY_PLAN,
            source=source,
            evidence=evidence,
        )
    return None


def _interpersonal_safety(score: Score) -> RiskSignal | None:
    if SAFETY not in score.positive_domains:
        return None
    return RiskSignal(
        code=SIGNAL_INTERPERSONAL_SAFETY,
        display="AHC HRSN interpersonal safety positive",
        priority=PRIORITY_MEDIUM,
        reason=f"AHC HRSN interpersonal safety score {score.total} (positive above 10): IPV safety workflow",
        action=ACTION_IPV_SAFETY,
        source="CMS AHC core HRSN questions: safety answers summed, over 10 is positive (DOMAIN.md §1.8)",
        evidence=tuple(i.code for i in AHC_HRSN.items if i.domain == SAFETY),
        restricted=True,
    )


def risk_signals(score: Score) -> list[RiskSignal]:
    """The safety signals one scored screening raises (none for most screenings)."""
    if score.instrument is PHQ9:
        found = _phq9_item9(score)
    elif score.instrument is CSSRS_SCREENER:
        found = _cssrs(score)
    elif score.instrument is AHC_HRSN:
        found = _interpersonal_safety(score)
    else:
        found = None
    return [found] if found else []


def flag_id(response_id: str, signal_code: str) -> str:
    """Deterministic, so the same response raises each Flag once however often it is scored."""
    return str(uuid.uuid5(c.SCREENING_ID_NAMESPACE, f"{response_id}/flag/{signal_code}"))


def flag_for(signal: RiskSignal, *, patient_reference: str, response_id: str, start: str) -> dict[str, Any]:
    """A FHIR R4 Flag for a safety signal, linked to the QuestionnaireResponse behind it."""
    priority = {
        "system": c.FLAG_PRIORITY_CODES,
        "code": signal.priority,
        "display": _PRIORITY_DISPLAYS[signal.priority],
    }
    return {
        "resourceType": "Flag",
        "id": flag_id(response_id, signal.code),
        "extension": [
            {"url": c.FLAG_PRIORITY_EXTENSION, "valueCodeableConcept": {"coding": [priority]}},
            {
                "url": c.FLAG_DETAIL_EXTENSION,
                "valueReference": {"reference": f"QuestionnaireResponse/{response_id}"},
            },
        ],
        "identifier": [{"system": c.SCREENING_IDENTIFIER_SYSTEM, "value": f"{response_id}/{signal.code}"}],
        "status": "active",
        "category": [{"coding": [_SAFETY_CATEGORY.as_fhir()]}],
        "code": {
            "coding": [{"system": c.SCREENING_SIGNAL_SYSTEM, "code": signal.code, "display": signal.display}],
            "text": signal.reason,
        },
        "subject": {"reference": patient_reference},
        "period": {"start": start},
    }


def sdoh_needs(score: Score) -> list[Need]:
    """Gravity SDOH categories evidenced by the screening's positive answers, in instrument order."""
    if not score.instrument.sdoh:
        return []
    evidence: dict[str, list[str]] = {}
    for item_score in score.items:
        for answer in item_score.answers:
            if answer.option and answer.option.sdoh_need:
                codes = evidence.setdefault(answer.option.sdoh_need, [])
                if item_score.code not in codes:
                    codes.append(item_score.code)
    if SAFETY in score.positive_domains:
        evidence[c.SDOH_INTIMATE_PARTNER_VIOLENCE] = [i.code for i in AHC_HRSN.items if i.domain == SAFETY]
    return [
        Need(Coding(c.SDOHCC_CATEGORY, need, c.SDOH_DISPLAYS[need]), tuple(codes))
        for need, codes in evidence.items()
    ]


def follow_up_instruments(score: Score) -> list[str]:
    """Keys of the instruments to give next: PHQ-2 >= 3 → PHQ-9; PHQ-9 item 9 >= 1 → C-SSRS."""
    if score.instrument is PHQ2 and score.positive:
        return [PHQ9.key]
    item9 = score.item_score(c.PHQ9_ITEM9_SELF_HARM) if score.instrument is PHQ9 else None
    if item9 is not None and item9 >= PHQ9_ITEM9_POSITIVE:
        return [CSSRS_SCREENER.key]
    return []
