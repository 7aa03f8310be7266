"""Scores a QuestionnaireResponse against the instrument table: totals, bands, risk levels, positives.

Scores are computed here from answer codes, never taken from the client (DOMAIN.md §1.9); a
client total is only read, for the caller to compare (`client_total`). An answer's score comes
from its LOINC answer code in the instrument table, else from the Questionnaire's ordinalValue
for that answer (`option_scores`), else from a numeric answer within the item's score range.
Anything else is a ScoringError naming the item. Reading a response by item code
(`answers_by_code`, `instrument_for`) lives in questionnaire_reading and is re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import (
    AHC_HRSN,
    AHC_SAFETY_POSITIVE_ABOVE,
    AUDIT_C,
    AUDIT_C_POSITIVE_MEN,
    AUDIT_C_POSITIVE_WOMEN,
    CSSRS_SCREENER,
    GAD7,
    PHQ9,
    SAFETY,
    AnswerOption,
    Band,
    Coding,
    Instrument,
    Item,
)
from services.intake.domain.questionnaire_reading import (
    answers_by_code,
    instrument_for,
    link_id_codes,
    option_scores,
)
from shared.errors import BusinessRuleViolation

__all__ = [
    "RISK_HIGH",
    "RISK_LOW",
    "RISK_MODERATE",
    "RISK_NONE",
    "ItemScore",
    "Score",
    "ScoredAnswer",
    "ScoringError",
    "UnrecognisedQuestionnaire",
    "answers_by_code",
    "client_total",
    "client_total_matches",
    "instrument_for",
    "link_id_codes",
    "option_scores",
    "score_questionnaire_response",
    "score_response",
]

_LA_CODE = re.compile(r"^LA\d+-\d$")

RISK_NONE, RISK_LOW, RISK_MODERATE, RISK_HIGH = "none", "low", "moderate", "high"
_RISK_CODINGS = {
    RISK_LOW: Coding(c.LOINC, c.LA_RISK_LOW, "Low"),
    RISK_MODERATE: Coding(c.LOINC, c.LA_RISK_MODERATE, "Moderate"),
    RISK_HIGH: Coding(c.LOINC, c.LA_RISK_HIGH, "High"),
}
# [K] Common practice, not found in the PHQ/GAD-7 instructions: prorate only when exactly one
# item is missing (DOMAIN.md §1.9 asks for it to be explicit and opt-in).
_PRORATABLE = frozenset({PHQ9.key, GAD7.key})


class ScoringError(BusinessRuleViolation):
    """An answer the instrument cannot score; `item_code` names the item (422 for the caller)."""

    def __init__(self, item_code: str, message: str):
        super().__init__(f"Item {item_code}: {message}")
        self.item_code = item_code


class UnrecognisedQuestionnaire(BusinessRuleViolation):
    """The Questionnaire is none of the instruments intake scores."""


@dataclass(frozen=True, slots=True)
class ScoredAnswer:
    coding: dict[str, Any] | None  # valueCoding as answered (a bare LA code gets the LOINC system)
    option: AnswerOption | None  # the instrument's option it matches, by code or else by score
    value: int | None = None  # a numeric (valueInteger/valueDecimal) answer


@dataclass(frozen=True, slots=True)
class ItemScore:
    code: str
    answers: tuple[ScoredAnswer, ...]
    score: int | None  # None for unscored items


@dataclass(frozen=True, slots=True)
class Score:
    instrument: Instrument
    items: tuple[ItemScore, ...]  # answered items of the instrument, in instrument order
    total: int | None = None  # for the AHC HRSN: the interpersonal-safety sum
    band: Band | None = None
    risk_level: str | None = None  # C-SSRS: none | low | moderate | high
    result: Coding | None = None  # C-SSRS: the 93374-7 answer (LL465-6); none has no code
    missing: tuple[str, ...] = ()  # required (and enabled) items without an answer
    prorated: bool = False
    positive: bool | None = None  # None when undecidable (items missing)
    positive_domains: tuple[str, ...] = ()  # AHC HRSN domains screening positive
    notes: tuple[str, ...] = ()

    def item(self, code: str) -> ItemScore | None:
        return next((i for i in self.items if i.code == code), None)

    def item_score(self, code: str) -> int | None:
        found = self.item(code)
        return found.score if found else None


# --- Scoring -------------------------------------------------------------------------------------


def _whole(item: Item, value: Decimal | float | int) -> int:
    number = Decimal(str(value))
    if number != number.to_integral_value():
        raise ScoringError(item.code, f"score {value} is not a whole number")
    return int(number)


def _score_answer(
    item: Item, answer: dict[str, Any], questionnaire_scores: Mapping[str, Decimal | float]
) -> tuple[ScoredAnswer, int | None]:
    if "valueCoding" in answer:
        coding = dict(answer["valueCoding"])
        code, system = coding.get("code", ""), coding.get("system")
        if system is None and _LA_CODE.match(code):
            coding["system"] = c.LOINC  # uwcirg and LHC exports leave the LOINC system out
        option = item.option(code) if coding.get("system") == c.LOINC else None
        if option is not None:
            return ScoredAnswer(coding, option), option.score if item.scored else None
        if code in questionnaire_scores:
            score = _whole(item, questionnaire_scores[code])
            return ScoredAnswer(coding, item.option_scoring(score)), score if item.scored else None
        raise ScoringError(item.code, f"answer code {code!r} is not one of the item's answer options")
    for key in ("valueInteger", "valueDecimal"):
        if key in answer:
            value = _whole(item, answer[key])
            option = item.option_scoring(value)
            if option is None:
                raise ScoringError(item.code, f"answer {value} is outside the item's scores")
            return ScoredAnswer(option.coding.as_fhir(), option, value), value if item.scored else None
    raise ScoringError(item.code, "answer must be a valueCoding (or a number for a scored item)")


def _score_items(
    instrument: Instrument,
    answers: Mapping[str, list[dict[str, Any]]],
    questionnaire_scores: Mapping[str, Mapping[str, Decimal | float]],
) -> tuple[ItemScore, ...]:
    scored = []
    for item in instrument.items:
        given = answers.get(item.code, [])
        if not given:
            continue
        if len(given) > 1 and not item.repeats:
            raise ScoringError(item.code, f"expects one answer, got {len(given)}")
        results = [_score_answer(item, a, questionnaire_scores.get(item.code, {})) for a in given]
        score = results[0][1] if item.scored else None
        scored.append(ItemScore(item.code, tuple(r[0] for r in results), score))
    return tuple(scored)


def _enabled(item: Item, items: tuple[ItemScore, ...]) -> bool:
    if item.enable_when is None:
        return True
    condition = item.enable_when
    return any(
        s.code == condition.question
        and any(a.option and a.option.code == condition.answer for a in s.answers)
        for s in items
    )


def _missing(instrument: Instrument, items: tuple[ItemScore, ...]) -> tuple[str, ...]:
    answered = {s.code for s in items}
    return tuple(
        i.code for i in instrument.items if i.required and i.code not in answered and _enabled(i, items)
    )


def _summed_total(
    instrument: Instrument, items: tuple[ItemScore, ...], prorate: bool
) -> tuple[int | None, bool]:
    scores = [s.score for s in items if s.score is not None]
    n_scored = len(instrument.scored_items)
    if len(scores) == n_scored:
        return sum(scores), False
    if prorate and instrument.key in _PRORATABLE and len(scores) == n_scored - 1:
        prorated = Decimal(sum(scores) * n_scored) / Decimal(len(scores))
        return int(prorated.quantize(Decimal(1), rounding=ROUND_HALF_UP)), True
    return None, False


def score_response(
    instrument: Instrument,
    answers_by_code: Mapping[str, list[dict[str, Any]]],
    *,
    prorate: bool = False,
    sex: str | None = None,
    questionnaire_scores: Mapping[str, Mapping[str, Decimal | float]] | None = None,
) -> Score:
    """Score one response. `sex` is Patient.gender ("male"/"female"; anything else is unknown);
    `questionnaire_scores` is `option_scores(questionnaire)` for public Questionnaires."""
    items = _score_items(instrument, answers_by_code, questionnaire_scores or {})
    missing = _missing(instrument, items)
    if instrument is CSSRS_SCREENER:
        return _cssrs_score(items, missing)
    if instrument is AHC_HRSN:
        return _ahc_score(items, missing)
    total, prorated = _summed_total(instrument, items, prorate)
    if instrument is AUDIT_C:
        return _audit_c_score(items, missing, total, sex)
    notes = (f"Prorated from {len(items)} answered items; missing {', '.join(missing)}",) if prorated else ()
    return Score(
        instrument,
        items,
        total=total,
        band=instrument.band_for(total) if total is not None else None,
        missing=missing,
        prorated=prorated,
        positive=None if total is None or instrument.positive_at is None else total >= instrument.positive_at,
        notes=notes,
    )


def _cssrs_score(items: tuple[ItemScore, ...], missing: tuple[str, ...]) -> Score:
    """Triage per the Columbia screener triage guidance (DOMAIN.md §1.5): high for intent (Q4), plan
    with intent (Q5) or behaviour within 3 months; moderate for method (Q3) or behaviour longer ago;
    low for a wish to be dead (Q1) or suicidal thoughts (Q2)."""

    def yes(code: str) -> bool:
        return any(
            s.code == code and any(a.option and a.option.code == c.LA_YES for a in s.answers) for s in items
        )

    def no(code: str) -> bool:
        return any(
            s.code == code and any(a.option and a.option.code == c.LA_NO for a in s.answers) for s in items
        )

    notes: list[str] = []
    behaviour = yes(c.CSSRS_BEHAVIOR_EVER)
    behaviour_long_ago = behaviour and no(c.CSSRS_BEHAVIOR_PAST_3_MONTHS)
    if behaviour and not behaviour_long_ago and not yes(c.CSSRS_BEHAVIOR_PAST_3_MONTHS):
        notes.append("Behaviour endorsed without its timing: treated as within 3 months (the safer reading)")
    if yes(c.CSSRS_INTENT) or yes(c.CSSRS_PLAN_AND_INTENT) or (behaviour and not behaviour_long_ago):
        level = RISK_HIGH
    elif yes(c.CSSRS_METHOD) or behaviour_long_ago:
        level = RISK_MODERATE
    elif yes(c.CSSRS_WISH_DEAD) or yes(c.CSSRS_SUICIDAL_THOUGHTS):
        level = RISK_LOW
    else:
        level = RISK_NONE
    if missing:
        notes.append("Items missing: the risk level is a lower bound")
    return Score(
        CSSRS_SCREENER,
        items,
        risk_level=level,
        result=_RISK_CODINGS.get(level),
        missing=missing,
        positive=level != RISK_NONE,
        notes=tuple(notes),
    )


def _audit_c_score(
    items: tuple[ItemScore, ...], missing: tuple[str, ...], total: int | None, sex: str | None
) -> Score:
    """Positive at ≥4 for men and ≥3 for women (LOINC 75626-2); unknown sex uses 3, the safer one."""
    notes: list[str] = []
    if sex == "male":
        threshold = AUDIT_C_POSITIVE_MEN
    else:
        threshold = AUDIT_C_POSITIVE_WOMEN
        if sex != "female":
            notes.append(f"Sex unknown: the lower threshold {AUDIT_C_POSITIVE_WOMEN} was used")
    score = {s.code: s.score for s in items}
    # LOINC 75626-2: when all points come from Q1 (Q2 = Q3 = 0) the person is likely drinking
    # below recommended limits; the screen stays positive, the clinician reviews.
    if total and score.get(c.AUDIT_TYPICAL_QUANTITY) == 0 and score.get(c.AUDIT_SIX_OR_MORE) == 0:
        notes.append("All points from Q1: likely drinking below recommended limits (LOINC 75626-2)")
    return Score(
        AUDIT_C,
        items,
        total=total,
        missing=missing,
        positive=None if total is None else total >= threshold,
        notes=tuple(notes),
    )


def _ahc_score(items: tuple[ItemScore, ...], missing: tuple[str, ...]) -> Score:
    """Domains are positive on an underlined answer; safety when Q7-10 sum to more than 10 (CMS)."""
    safety = [s.score for s in items if (item := AHC_HRSN.item(s.code)) and item.domain == SAFETY]
    safety_items = [i for i in AHC_HRSN.items if i.domain == SAFETY]
    total = sum(s for s in safety if s is not None) if len(safety) == len(safety_items) else None
    domains = {
        item.domain
        for s in items
        if (item := AHC_HRSN.item(s.code))
        and item.domain
        and any(a.option and a.option.sdoh_need for a in s.answers)
    }
    if total is not None and total > AHC_SAFETY_POSITIVE_ABOVE:
        domains.add(SAFETY)
    ordered = tuple(d for d in dict.fromkeys(i.domain for i in AHC_HRSN.items) if d in domains)
    notes = ("All four safety questions are needed for the safety score",) if total is None else ()
    return Score(
        AHC_HRSN,
        items,
        total=total,
        missing=missing,
        positive=bool(ordered),
        positive_domains=ordered,
        notes=notes,
    )


# --- Client totals and the one-call entry point --------------------------------------------------


def client_total(
    questionnaire: dict[str, Any],
    response_or_answers: Mapping[str, Any],
    instrument: Instrument,
) -> int | None:
    """The total the client put in the response's total item, if any: compare it, never trust it.

    Takes the QuestionnaireResponse itself or its `answers_by_code(questionnaire, response)`.
    """
    answers = response_or_answers
    if response_or_answers.get("resourceType") == "QuestionnaireResponse":
        answers = answers_by_code(questionnaire, dict(response_or_answers))
    if instrument.total is None:
        return None
    for answer in answers.get(instrument.total.code, []):
        for key in ("valueInteger", "valueDecimal"):
            if key in answer:
                value = Decimal(str(answer[key]))
                if value != value.to_integral_value():
                    raise ScoringError(
                        instrument.total.code, f"client total {answer[key]} is not a whole number"
                    )
                return int(value)
        if "valueQuantity" in answer and "value" in answer["valueQuantity"]:
            return int(Decimal(str(answer["valueQuantity"]["value"])))
    return None


def client_total_matches(score: Score, given: int | None) -> bool:
    """True when the client sent no total or the one we computed; a prorated total never matches
    a client's raw sum, so callers decide whether to flag rather than refuse that case."""
    return given is None or given == score.total


def score_questionnaire_response(
    questionnaire: dict[str, Any], response: dict[str, Any], *, prorate: bool = False, sex: str | None = None
) -> Score:
    """Recognise, read and score in one call."""
    instrument = instrument_for(questionnaire)
    if instrument is None:
        raise UnrecognisedQuestionnaire("The Questionnaire is not a screening instrument intake can score")
    return score_response(
        instrument,
        answers_by_code(questionnaire, response),
        prorate=prorate,
        sex=sex,
        questionnaire_scores=option_scores(questionnaire),
    )
