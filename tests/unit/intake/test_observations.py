"""Screening Observations in the US Core Observation Screening Assessment shape: valid, linked,
and stable across re-scoring."""

from __future__ import annotations

from typing import Any

import pytest

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import AHC_HRSN, AUDIT_C, CSSRS_SCREENER, GAD7, PHQ2, PHQ9
from services.intake.domain.observations import observation_id, screening_observations
from services.intake.domain.scoring import Score, score_response
from shared.fhir.validation import validate_resource
from tests.unit.intake.screening_answers import answers_totalling, coded, scored_answers

RESPONSE_ID = "qr-synthetic-1"
PATIENT = "Patient/synthetic-1"
WHEN = "2025-05-06T14:00:00Z"


def observations(score: Score, response_id: str = RESPONSE_ID, **extra: Any) -> list[dict[str, Any]]:
    return screening_observations(
        score, response_id=response_id, patient_reference=PATIENT, effective=WHEN, **extra
    )


def by_code(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["code"]["coding"][0]["code"]: o for o in found}


def cssrs_high() -> Score:
    answers = {
        code: [coded(c.LA_YES if code == c.CSSRS_INTENT else c.LA_NO)]
        for code in (
            c.CSSRS_WISH_DEAD,
            c.CSSRS_METHOD,
            c.CSSRS_INTENT,
            c.CSSRS_PLAN_AND_INTENT,
            c.CSSRS_BEHAVIOR_EVER,
        )
    }
    answers[c.CSSRS_SUICIDAL_THOUGHTS] = [coded(c.LA_YES)]
    return score_response(CSSRS_SCREENER, answers)


def ahc_positive() -> Score:
    answers = scored_answers(AHC_HRSN, [3, 3, 3, 3])
    answers[c.AHC_HOUSING_PROBLEMS] = [coded(c.LA_MOLD), coded(c.LA_LACK_OF_HEAT)]
    answers[c.AHC_FOOD_WORRY] = [coded(c.LA_OFTEN_TRUE)]
    answers[c.AHC_TRANSPORTATION] = [coded(c.LA_NO)]
    return score_response(AHC_HRSN, answers)


SCORES = {
    "phq-9": lambda: score_response(
        PHQ9, answers_totalling(PHQ9, 12) | {c.PHQ9_DIFFICULTY: [coded(c.LA_VERY_DIFFICULT)]}
    ),
    "phq-9-missing": lambda: score_response(PHQ9, scored_answers(PHQ9, [1] * 8 + [None])),
    "phq-9-prorated": lambda: score_response(PHQ9, scored_answers(PHQ9, [1] * 8 + [None]), prorate=True),
    "phq-2": lambda: score_response(PHQ2, answers_totalling(PHQ2, 3)),
    "gad-7": lambda: score_response(GAD7, answers_totalling(GAD7, 16)),
    "cssrs-high": cssrs_high,
    "cssrs-none": lambda: score_response(
        CSSRS_SCREENER,
        {k: [coded(c.LA_NO)] for k in (c.CSSRS_WISH_DEAD, c.CSSRS_SUICIDAL_THOUGHTS, c.CSSRS_BEHAVIOR_EVER)},
    ),
    "audit-c": lambda: score_response(AUDIT_C, answers_totalling(AUDIT_C, 5), sex="female"),
    "ahc-hrsn": ahc_positive,
}


@pytest.mark.parametrize("case", SCORES)
def test_every_screening_observation_is_valid_fhir_r4(case: str) -> None:
    for observation in observations(SCORES[case]()):
        validate_resource(observation, "Observation")


@pytest.mark.parametrize("case", SCORES)
def test_the_panel_has_no_value_and_lists_every_other_observation_as_a_member(case: str) -> None:
    panel, *members = observations(SCORES[case]())
    score = SCORES[case]()
    assert panel["code"]["coding"][0] == score.instrument.panel.as_fhir()
    assert not any(key.startswith("value") for key in panel)
    assert panel["hasMember"] == [{"reference": f"Observation/{m['id']}"} for m in members]


@pytest.mark.parametrize("case", SCORES)
def test_every_observation_is_a_final_survey_derived_from_the_response(case: str) -> None:
    for observation in observations(SCORES[case]()):
        assert observation["status"] == "final"
        assert {"system": c.OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"} in [
            coding for category in observation["category"] for coding in category["coding"]
        ]
        assert observation["subject"] == {"reference": PATIENT}
        assert observation["effectiveDateTime"] == WHEN
        assert observation["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{RESPONSE_ID}"}]


def test_sdoh_screening_observations_also_carry_the_sdoh_category() -> None:
    for observation in observations(ahc_positive()):
        codes = [coding["code"] for category in observation["category"] for coding in category["coding"]]
        assert codes == ["survey", "sdoh"]
    assert all(len(o["category"]) == 1 for o in observations(SCORES["phq-9"]()))


def test_an_item_observation_holds_the_loinc_answer_with_its_score() -> None:
    found = by_code(observations(SCORES["phq-9"]()))
    first = found[c.PHQ_INTEREST]["valueCodeableConcept"]
    assert first["coding"] == [
        {
            "system": c.LOINC,
            "code": c.LA_NEARLY_EVERY_DAY,
            "display": "Nearly every day",
            "extension": [{"url": c.ORDINAL_VALUE, "valueDecimal": 3}],
        }
    ]
    difficulty = found[c.PHQ9_DIFFICULTY]["valueCodeableConcept"]["coding"][0]
    assert difficulty["code"] == c.LA_VERY_DIFFICULT and "extension" not in difficulty


def test_the_total_observation_is_a_score_quantity_interpreted_by_its_band() -> None:
    total = by_code(observations(SCORES["phq-9"]()))[c.PHQ9_TOTAL]
    assert total["valueQuantity"] == {"value": 12, "unit": "{score}", "system": c.UCUM, "code": "{score}"}
    assert total["interpretation"][0]["coding"] == [
        {"system": c.LOINC, "code": "LA6710-3", "display": "Moderate depression"}
    ]


def test_a_total_without_a_band_is_interpreted_positive_or_negative() -> None:
    phq2 = by_code(observations(SCORES["phq-2"]()))[c.PHQ2_TOTAL]
    assert phq2["interpretation"][0]["coding"][0]["code"] == "POS"
    audit = by_code(observations(score_response(AUDIT_C, answers_totalling(AUDIT_C, 3), sex="male")))[
        c.AUDIT_C_TOTAL
    ]
    assert audit["interpretation"][0]["coding"][0]["code"] == "NEG"


def test_without_a_total_there_is_no_total_observation_and_the_panel_says_why() -> None:
    found = observations(SCORES["phq-9-missing"]())
    assert c.PHQ9_TOTAL not in by_code(found)
    assert len(found) == 1 + 8
    assert c.PHQ9_ITEM9_SELF_HARM in found[0]["note"][0]["text"]
    assert "not calculated" in found[0]["note"][0]["text"]


def test_a_prorated_total_says_so() -> None:
    total = by_code(observations(SCORES["phq-9-prorated"]()))[c.PHQ9_TOTAL]
    assert total["valueQuantity"]["value"] == 9
    assert "Prorated" in total["note"][0]["text"]


def test_the_cssrs_risk_level_is_an_observation_with_its_loinc_answer() -> None:
    risk = by_code(observations(cssrs_high()))[c.CSSRS_RISK_LEVEL]
    assert risk["valueCodeableConcept"]["coding"] == [
        {"system": c.LOINC, "code": "LA9193-9", "display": "High"}
    ]


def test_a_cssrs_with_nothing_endorsed_has_no_risk_level_observation() -> None:
    found = observations(SCORES["cssrs-none"]())
    assert c.CSSRS_RISK_LEVEL not in by_code(found)
    assert "no 'no risk' answer" in found[0]["note"][0]["text"]


def test_a_choose_all_that_apply_answer_gives_one_observation_per_answer() -> None:
    found = observations(ahc_positive())
    housing = [o for o in found if o["code"]["coding"][0]["code"] == c.AHC_HOUSING_PROBLEMS]
    assert [o["valueCodeableConcept"]["coding"][0]["code"] for o in housing] == [c.LA_MOLD, c.LA_LACK_OF_HEAT]
    assert len({o["id"] for o in found}) == len(found)
    assert all(o["interpretation"][0]["coding"][0]["code"] == "POS" for o in housing)
    transport = by_code(found)[c.AHC_TRANSPORTATION]
    assert "interpretation" not in transport


def test_the_ahc_safety_score_is_the_total_observation() -> None:
    total = by_code(observations(ahc_positive()))[c.AHC_SAFETY_TOTAL]
    assert total["valueQuantity"]["value"] == 12
    assert total["interpretation"][0]["coding"][0]["code"] == "POS"


def test_ids_and_identifiers_are_the_same_each_time_the_same_response_is_scored() -> None:
    first, again = observations(SCORES["gad-7"]()), observations(SCORES["gad-7"]())
    assert [o["id"] for o in first] == [o["id"] for o in again]
    assert first[0]["id"] == observation_id(RESPONSE_ID, c.GAD7_PANEL)
    assert first[0]["identifier"] == [
        {"system": "urn:carebridge:screening", "value": f"{RESPONSE_ID}/{c.GAD7_PANEL}"}
    ]
    other = observations(SCORES["gad-7"](), response_id="qr-synthetic-2")
    assert not {o["id"] for o in first} & {o["id"] for o in other}


def test_performer_and_encounter_are_carried_when_given() -> None:
    performer = [{"reference": "Practitioner/synthetic-cm"}]
    encounter = {"reference": "Encounter/synthetic-visit"}
    for observation in observations(SCORES["phq-2"](), performer=performer, encounter=encounter):
        assert observation["performer"] == performer
        assert observation["encounter"] == encounter
    assert "performer" not in observations(SCORES["phq-2"]())[0]
