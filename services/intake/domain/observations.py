"""Builds the FHIR R4 Observations that record a scored screening, as US Core does it.

US Core "Observation Screening Assessment" (US Core 6+; DOMAIN.md §1.1 point 3): a panel
Observation coded with the instrument's LOINC panel, with no value, whose hasMember points to
one Observation per answered question and to the total (or C-SSRS risk level) Observation;
category survey (plus sdoh for the SDOH screener, as the SDOHCC Observation Screening Response
does); derivedFrom the QuestionnaireResponse. Each question Observation carries the answer as
valueCodeableConcept. US Core puts no score on a question Observation; we keep the item score
on the LOINC answer coding as the ordinalValue extension ([K] R4 allows it on Coding).

Ids are uuid5(SCREENING_ID_NAMESPACE, "<response id>/<code>") and identifiers
urn:carebridge:screening|<response id>/<code>, so scoring the same response again rewrites the
same Observations instead of adding new ones.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.intake.domain import screening_codes as c
from services.intake.domain.instrument_model import AnswerOption, Coding
from services.intake.domain.scoring import ItemScore, Score, ScoredAnswer

_SURVEY = {"coding": [{"system": c.OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}
_SDOH = {"coding": [{"system": c.US_CORE_CATEGORY, "code": "sdoh", "display": "SDOH"}]}
_POSITIVE = Coding(c.OBSERVATION_INTERPRETATION, "POS", "Positive")
_NEGATIVE = Coding(c.OBSERVATION_INTERPRETATION, "NEG", "Negative")


def observation_id(response_id: str, key: str) -> str:
    """The deterministic id of the Observation for `key` (a LOINC code) of one response."""
    return str(uuid.uuid5(c.SCREENING_ID_NAMESPACE, f"{response_id}/{key}"))


class _Builder:
    """The parts every Observation of one scored response shares."""

    def __init__(
        self,
        score: Score,
        response_id: str,
        patient_reference: str,
        effective: str,
        performer: list[dict[str, Any]] | None,
        encounter: dict[str, Any] | None,
    ):
        self.score = score
        self.response_id = response_id
        self.patient_reference = patient_reference
        self.effective = effective
        self.performer = performer
        self.encounter = encounter

    def observation(self, key: str, code: dict[str, Any]) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "id": observation_id(self.response_id, key),
            "identifier": [{"system": c.SCREENING_IDENTIFIER_SYSTEM, "value": f"{self.response_id}/{key}"}],
            "status": "final",
            "category": [_SURVEY, _SDOH] if self.score.instrument.sdoh else [_SURVEY],
            "code": code,
            "subject": {"reference": self.patient_reference},
            "effectiveDateTime": self.effective,
            "derivedFrom": [{"reference": f"QuestionnaireResponse/{self.response_id}"}],
        }
        if self.encounter is not None:
            obs["encounter"] = self.encounter
        if self.performer:
            obs["performer"] = self.performer
        return obs


def _coding_with_score(option: AnswerOption) -> dict[str, Any]:
    coding: dict[str, Any] = option.coding.as_fhir()
    if option.score is not None:
        coding["extension"] = [{"url": c.ORDINAL_VALUE, "valueDecimal": option.score}]
    return coding


def _answer_concept(answer: ScoredAnswer) -> dict[str, Any]:
    """The answer as given, plus the equivalent LOINC answer when the Questionnaire used local codes."""
    codings: list[dict[str, Any]] = []
    given = answer.coding or {}
    if answer.option is not None:
        codings.append(_coding_with_score(answer.option))
    if given and (given.get("system"), given.get("code")) != (c.LOINC, answer.option and answer.option.code):
        codings.append({k: v for k, v in given.items() if k in ("system", "code", "display")})
    concept: dict[str, Any] = {"coding": codings}
    if answer.option is not None:
        concept["text"] = answer.option.display
    return concept


def _item_observations(build: _Builder, item_score: ItemScore) -> list[dict[str, Any]]:
    item = build.score.instrument.item(item_score.code)
    text = item.text if item else item_score.code
    code = {"coding": [{"system": c.LOINC, "code": item_score.code, "display": text}], "text": text}
    many = len(item_score.answers) > 1  # a "choose all that apply" item: one Observation per answer
    observations = []
    for answer in item_score.answers:
        key = item_score.code
        if many:
            key = f"{key}/{(answer.coding or {}).get('code') or (answer.option and answer.option.code)}"
        obs = build.observation(key, code)
        obs["valueCodeableConcept"] = _answer_concept(answer)
        # SDOH-CC flags a question/answer pair that may be a need with interpretation POS [S].
        if answer.option is not None and answer.option.sdoh_need:
            obs["interpretation"] = [{"coding": [_POSITIVE.as_fhir()]}]
        observations.append(obs)
    return observations


def _total_interpretation(score: Score) -> list[dict[str, Any]] | None:
    if score.band is not None:
        return [{"coding": [score.band.coding.as_fhir()], "text": score.band.coding.display}]
    if score.positive is not None and score.instrument.total is not None:
        decided = _POSITIVE if score.total is not None and _total_positive(score) else _NEGATIVE
        return [{"coding": [decided.as_fhir()]}]
    return None


def _total_positive(score: Score) -> bool:
    # The AHC HRSN total is the safety sum: its POS/NEG is the safety domain, not the whole screen.
    if score.instrument.sdoh:
        return "safety" in score.positive_domains
    return bool(score.positive)


def _result_observation(build: _Builder) -> dict[str, Any] | None:
    score, result_code = build.score, build.score.instrument.total
    if result_code is None:
        return None
    if score.total is not None:
        obs = build.observation(
            result_code.code, {"coding": [result_code.as_fhir()], "text": result_code.display}
        )
        obs["valueQuantity"] = {
            "value": score.total,
            "unit": c.SCORE_UNIT,
            "system": c.UCUM,
            "code": c.SCORE_UNIT,
        }
        interpretation = _total_interpretation(score)
        if interpretation:
            obs["interpretation"] = interpretation
        if score.prorated:
            obs["note"] = [{"text": "; ".join(score.notes)}]
        return obs
    if score.result is not None:  # C-SSRS risk level (LL465-6)
        obs = build.observation(
            result_code.code, {"coding": [result_code.as_fhir()], "text": result_code.display}
        )
        obs["valueCodeableConcept"] = {"coding": [score.result.as_fhir()], "text": score.result.display}
        return obs
    return None


def _panel_note(score: Score, has_result: bool) -> str | None:
    parts = list(score.notes)
    if score.missing:
        parts.insert(0, f"Unanswered: {', '.join(score.missing)}")
    if not has_result and score.instrument.total is not None:
        if score.risk_level == "none":
            parts.append("No C-SSRS item endorsed; LOINC LL465-6 has no 'no risk' answer, so no risk level")
        else:
            parts.append(f"No {score.instrument.total.display.lower()}: not calculated")
    return "; ".join(parts) or None


def screening_observations(
    score: Score,
    *,
    response_id: str,
    patient_reference: str,
    effective: str,
    performer: list[dict[str, Any]] | None = None,
    encounter: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The panel Observation first, then one per answered question, then the total or risk level."""
    build = _Builder(score, response_id, patient_reference, effective, performer, encounter)
    members = [obs for item_score in score.items for obs in _item_observations(build, item_score)]
    result = _result_observation(build)
    if result is not None:
        members.append(result)
    panel_code = score.instrument.panel
    panel = build.observation(panel_code.code, {"coding": [panel_code.as_fhir()], "text": panel_code.display})
    if members:
        panel["hasMember"] = [{"reference": f"Observation/{m['id']}"} for m in members]
    note = _panel_note(score, result is not None)
    if note:
        panel["note"] = [{"text": note}]
    return [panel, *members]
