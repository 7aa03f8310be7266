"""Every public PHQ-9 and GAD-7 Questionnaire in the corpus (../shared/corpus/questionnaires, see
SOURCES.md there) is recognised, and a synthetic response built from that Questionnaire's own
items and answer options scores to the expected total and band.

The corpus differs in useful ways: LHC-Forms and US Core code every item; uwcirg leaves the LOINC
system out and answers GAD-7 item 2 with LA18938-3 "More days than not" (scored by its
ordinalValue); the SDC/ResearchKit files have no LOINC codes at all, local answer codes in a
contained ValueSet, and items nested in a group.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import GAD7, PHQ9
from services.intake.domain.observations import screening_observations
from services.intake.domain.scoring import instrument_for, score_questionnaire_response
from shared.fhir.validation import validate_resource
from tests.corpus import CORPUS
from tests.unit.intake.screening_answers import spread

QUESTIONNAIRES = CORPUS / "questionnaires"
PHQ9_FILES = [
    "phq9.lhncbc-lforms.R4.json",
    "phq9.uwcirg-asbi-screening-app.json",
    "phq9.stanford-researchkitonfhir.json",
    "us-core.Questionnaire-phq-9-example.json",
]
GAD7_FILES = ["gad7.uwcirg-asbi-screening-app.json", "gad7.stanford-researchkitonfhir.json"]

PHQ9_BANDS = [
    (0, "LA6708-7"),
    (4, "LA6708-7"),
    (5, "LA6709-5"),
    (9, "LA6709-5"),
    (10, "LA6710-3"),
    (14, "LA6710-3"),
    (15, "LA6711-1"),
    (19, "LA6711-1"),
    (20, "LA6712-9"),
    (27, "LA6712-9"),
]
GAD7_BANDS = [
    (0, "noneToMinimal"),
    (4, "noneToMinimal"),
    (5, "mild"),
    (9, "mild"),
    (10, "moderate"),
    (14, "moderate"),
    (15, "severe"),
    (21, "severe"),
]


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((QUESTIONNAIRES / name).read_text(encoding="utf-8"))
    return loaded


def choice_items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        if item.get("type") == "choice":
            yield item
        yield from choice_items(item.get("item", []))


def ordinal(element: dict[str, Any]) -> float | None:
    for ext in element.get("extension", []):
        if ext["url"] == c.ORDINAL_VALUE:
            return float(ext["valueDecimal"])
    return None


def options_of(
    questionnaire: dict[str, Any], item: dict[str, Any]
) -> list[tuple[dict[str, Any], float | None]]:
    """(valueCoding, ordinalValue) for each option the Questionnaire itself offers."""
    if "answerOption" in item:
        return [(o["valueCoding"], ordinal(o)) for o in item["answerOption"]]
    value_set = next(r for r in questionnaire["contained"] if f"#{r['id']}" == item["answerValueSet"])
    return [
        (
            {"system": include["system"], "code": concept["code"], "display": concept["display"]},
            ordinal(concept),
        )
        for include in value_set["compose"]["include"]
        for concept in include["concept"]
    ]


def synthetic_response(questionnaire: dict[str, Any], scores: list[int]) -> dict[str, Any]:
    """Answers the first len(scores) questions with the option of each score, the rest with their
    first option, keeping the Questionnaire's nesting."""
    chosen: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(choice_items(questionnaire["item"])):
        options = options_of(questionnaire, item)
        if position < len(scores):
            coding = next(coding for coding, score in options if score == scores[position])
        else:
            coding = options[0][0]
        chosen[item["linkId"]] = coding

    def answer(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            if item["linkId"] in chosen:
                out.append({"linkId": item["linkId"], "answer": [{"valueCoding": chosen[item["linkId"]]}]})
            elif item.get("type") == "group":
                out.append({"linkId": item["linkId"], "item": answer(item.get("item", []))})
        return out

    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": answer(questionnaire["item"]),
    }


CASES = [(name, PHQ9, total, band) for name in PHQ9_FILES for total, band in PHQ9_BANDS] + [
    (name, GAD7, total, band) for name in GAD7_FILES for total, band in GAD7_BANDS
]


@pytest.mark.parametrize("name", PHQ9_FILES + GAD7_FILES)
def test_every_public_phq9_and_gad7_questionnaire_is_recognised(name: str) -> None:
    expected = PHQ9 if name in PHQ9_FILES else GAD7
    assert instrument_for(load(name)) is expected


@pytest.mark.parametrize(
    ("name", "instrument", "total", "band"), CASES, ids=[f"{n}-{t}" for n, _, t, _ in CASES]
)
def test_a_synthetic_response_to_a_public_questionnaire_scores_to_its_total_and_band(
    name: str, instrument: Any, total: int, band: str
) -> None:
    questionnaire = load(name)
    scores = spread(total, len(instrument.scored_items), 3)
    score = score_questionnaire_response(questionnaire, synthetic_response(questionnaire, scores))
    assert score.instrument is instrument
    assert score.total == total
    assert score.band is not None and score.band.coding.code == band
    assert score.missing == ()


@pytest.mark.parametrize("name", PHQ9_FILES + GAD7_FILES)
def test_observations_from_a_public_questionnaire_are_valid_and_carry_the_loinc_answer(name: str) -> None:
    questionnaire = load(name)
    instrument = instrument_for(questionnaire)
    assert instrument is not None
    score = score_questionnaire_response(
        questionnaire, synthetic_response(questionnaire, [1, 2, 3, 0, 1, 2, 3])
    )
    observations = screening_observations(
        score,
        response_id="corpus-qr",
        patient_reference="Patient/synthetic-1",
        effective="2025-03-04T09:30:00Z",
    )
    for observation in observations:
        validate_resource(observation, "Observation")
    by_code = {o["code"]["coding"][0]["code"]: o for o in observations}
    first = by_code[instrument.scored_items[0].code]["valueCodeableConcept"]["coding"]
    assert first[0]["system"] == c.LOINC and first[0]["code"] == c.LA_SEVERAL_DAYS


def test_the_uwcirg_gad7_more_days_than_not_answer_scores_2_by_its_ordinal_value() -> None:
    questionnaire = load("gad7.uwcirg-asbi-screening-app.json")
    score = score_questionnaire_response(
        questionnaire, synthetic_response(questionnaire, [0, 2, 0, 0, 0, 0, 0])
    )
    item = score.item(c.GAD_CANNOT_STOP_WORRYING)
    assert item is not None and item.score == 2
    assert item.answers[0].coding == {"system": c.LOINC, "code": "LA18938-3", "display": "More days than not"}


def test_the_uncoded_stanford_questionnaires_are_read_by_the_order_of_their_questions() -> None:
    questionnaire = load("phq9.stanford-researchkitonfhir.json")
    score = score_questionnaire_response(questionnaire, synthetic_response(questionnaire, [0] * 8 + [3]))
    item9 = score.item(c.PHQ9_ITEM9_SELF_HARM)
    assert item9 is not None and item9.score == 3
    assert item9.answers[0].coding is not None
    assert item9.answers[0].coding["system"] == "http://hl7.org/fhir/uv/sdc/CodeSystem/CSPHQ9"
