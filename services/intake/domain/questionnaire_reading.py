"""Reads Questionnaires and their responses: which instrument, which LOINC item each answer is for,
and the answer scores a Questionnaire declares.

A response's answers are keyed by item LOINC code using, in order: the Questionnaire's own
item.code; the LHC-Forms linkId convention "/<LOINC>" (DOMAIN.md §1.1); and, for a recognised
instrument whose Questionnaire codes none of its items (the SDC/ResearchKit PHQ-9 and GAD-7),
the order of its questions, which must equal the instrument's item count (all items, or the
scored ones). Public Questionnaires with neither codes nor a LOINC panel are recognised only by a
reviewed canonical URL (instruments.PUBLIC_QUESTIONNAIRE_URLS), never by title.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import (
    BY_PANEL,
    BY_URL,
    INSTRUMENTS,
    PUBLIC_QUESTIONNAIRE_URLS,
    Instrument,
)

_LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
_ORDINAL_EXTENSIONS = (
    c.ORDINAL_VALUE,
    c.ITEM_WEIGHT,
    "http://hl7.org/fhir/StructureDefinition/iso21090-CO-value",
)
_QUESTION_TYPES = frozenset({"choice", "open-choice", "coding", "integer", "decimal"})


def _walk(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from _walk(item.get("item", []))
        for answer in item.get("answer", []):
            yield from _walk(answer.get("item", []))


def _item_loinc(item: dict[str, Any]) -> str | None:
    for coding in item.get("code", []):
        if coding.get("system") in (None, c.LOINC) and _LOINC_CODE.match(coding.get("code", "")):
            return str(coding["code"])
    return _link_id_loinc(item.get("linkId", ""))


def _link_id_loinc(link_id: str) -> str | None:
    last = link_id.rsplit("/", 1)[-1] if link_id.startswith("/") else ""
    return last if _LOINC_CODE.match(last) else None


def instrument_for(questionnaire: dict[str, Any]) -> Instrument | None:
    """Our Questionnaires by url; public ones by panel code, a reviewed url, or their item codes."""
    url = str(questionnaire.get("url", "")).split("|")[0]
    if url in BY_URL:
        return BY_URL[url]
    if url in PUBLIC_QUESTIONNAIRE_URLS:
        return PUBLIC_QUESTIONNAIRE_URLS[url]
    for coding in questionnaire.get("code", []):
        if coding.get("system") in (None, c.LOINC) and coding.get("code") in BY_PANEL:
            return BY_PANEL[coding["code"]]
    present = {code for item in _walk(questionnaire.get("item", [])) if (code := _item_loinc(item))}
    covered = [i for i in INSTRUMENTS if {it.code for it in i.items if it.required} <= present]
    return max(covered, key=lambda i: len(i.items), default=None)


def link_id_codes(questionnaire: dict[str, Any]) -> dict[str, str]:
    """linkId → item LOINC code for the questions of a Questionnaire (see the module docstring)."""
    coded = {
        item["linkId"]: code
        for item in _walk(questionnaire.get("item", []))
        if "linkId" in item and (code := _item_loinc(item))
    }
    if coded:
        return coded
    instrument = instrument_for(questionnaire)
    questions = [i for i in _walk(questionnaire.get("item", [])) if i.get("type") in _QUESTION_TYPES]
    if instrument is None or len(questions) not in (len(instrument.items), len(instrument.scored_items)):
        return {}
    return {q["linkId"]: item.code for q, item in zip(questions, instrument.items, strict=False)}


def answers_by_code(
    questionnaire: dict[str, Any], response: dict[str, Any]
) -> dict[str, list[dict[str, Any]]]:
    """The answers of a QuestionnaireResponse keyed by item LOINC code (any nesting)."""
    codes = link_id_codes(questionnaire)
    found: dict[str, list[dict[str, Any]]] = {}
    for item in _walk(response.get("item", [])):
        code = codes.get(item.get("linkId", "")) or _link_id_loinc(item.get("linkId", ""))
        if code and item.get("answer"):
            found.setdefault(code, []).extend(item["answer"])
    return found


def _ordinal(element: dict[str, Any]) -> Decimal | None:
    for ext in element.get("extension", []):
        if ext.get("url") in _ORDINAL_EXTENSIONS:
            value = ext.get("valueDecimal", ext.get("valueInteger"))
            if isinstance(value, int | float):
                return Decimal(str(value))
    return None


def option_scores(questionnaire: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
    """item LOINC code → answer code → the Questionnaire's ordinalValue for that answer, from
    answerOption or from a contained answerValueSet."""
    codes = link_id_codes(questionnaire)
    value_sets = {
        f"#{r.get('id')}": r
        for r in questionnaire.get("contained", [])
        if r.get("resourceType") == "ValueSet"
    }
    scores: dict[str, dict[str, Decimal]] = {}
    for item in _walk(questionnaire.get("item", [])):
        code = codes.get(item.get("linkId", ""))
        if code is None:
            continue
        options = [(o.get("valueCoding", {}).get("code"), _ordinal(o)) for o in item.get("answerOption", [])]
        value_set = value_sets.get(item.get("answerValueSet", ""), {})
        for include in value_set.get("compose", {}).get("include", []):
            options += [(concept.get("code"), _ordinal(concept)) for concept in include.get("concept", [])]
        by_answer = {answer: score for answer, score in options if answer and score is not None}
        if by_answer:
            scores.setdefault(code, {}).update(by_answer)
    return scores
