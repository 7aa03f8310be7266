"""Synthetic answers for the screening tests (no real person's data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.intake.domain.instrument_model import Instrument
from services.intake.domain.screening_codes import LOINC

Answers = dict[str, list[dict[str, Any]]]


def coded(code: str, system: str | None = LOINC) -> dict[str, Any]:
    """One valueCoding answer."""
    coding = {"code": code} if system is None else {"system": system, "code": code}
    return {"valueCoding": coding}


def spread(total: int, n_items: int, per_item_max: int) -> list[int]:
    """Item scores adding up to `total`, filled from the first item."""
    assert 0 <= total <= n_items * per_item_max
    scores = []
    for _ in range(n_items):
        scores.append(min(per_item_max, total))
        total -= scores[-1]
    return scores


def scored_answers(instrument: Instrument, scores: Sequence[int | None]) -> Answers:
    """Answers to the scored items, in order, choosing the option with each score (None: unanswered)."""
    answers: Answers = {}
    for item, score in zip(instrument.scored_items, scores, strict=True):
        if score is not None:
            option = item.option_scoring(score)
            assert option is not None, (item.code, score)
            answers[item.code] = [coded(option.code)]
    return answers


def answers_totalling(instrument: Instrument, total: int) -> Answers:
    items = instrument.scored_items
    per_item_max = max(o.score or 0 for o in items[0].options)
    return scored_answers(instrument, spread(total, len(items), per_item_max))


def response(items: list[dict[str, Any]], questionnaire_url: str | None = None) -> dict[str, Any]:
    qr: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": items}
    if questionnaire_url:
        qr["questionnaire"] = questionnaire_url
    return qr
