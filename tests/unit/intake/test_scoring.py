"""Scoring every instrument at its band boundaries, the missing-item policy, and the errors a
client sees. Synthetic answers only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import AHC_HRSN, AUDIT_C, CSSRS_SCREENER, GAD7, PHQ2, PHQ9
from services.intake.domain.scoring import (
    ScoringError,
    UnrecognisedQuestionnaire,
    answers_by_code,
    client_total,
    client_total_matches,
    instrument_for,
    option_scores,
    score_questionnaire_response,
    score_response,
)
from services.intake.questionnaires.build import questionnaire_resource
from shared.errors import http_status, operation_outcome
from tests.unit.intake.screening_answers import Answers, answers_totalling, coded, response, scored_answers

# --- PHQ-9, PHQ-2, GAD-7 at every band boundary ------------------------------------------------


@pytest.mark.parametrize(
    ("total", "band", "positive"),
    [
        (0, "LA6708-7", False),
        (4, "LA6708-7", False),
        (5, "LA6709-5", False),
        (9, "LA6709-5", False),
        (10, "LA6710-3", True),
        (14, "LA6710-3", True),
        (15, "LA6711-1", True),
        (19, "LA6711-1", True),
        (20, "LA6712-9", True),
        (27, "LA6712-9", True),
    ],
)
def test_phq9_total_falls_in_its_ll382_3_band(total: int, band: str, positive: bool) -> None:
    score = score_response(PHQ9, answers_totalling(PHQ9, total))
    assert score.total == total
    assert score.band is not None and score.band.coding.code == band
    assert score.positive is positive
    assert score.missing == () and not score.prorated


def test_phq9_difficulty_answer_is_recorded_but_not_scored() -> None:
    answers = answers_totalling(PHQ9, 5) | {c.PHQ9_DIFFICULTY: [coded(c.LA_EXTREMELY_DIFFICULT)]}
    score = score_response(PHQ9, answers)
    assert score.total == 5
    difficulty = score.item(c.PHQ9_DIFFICULTY)
    assert difficulty is not None and difficulty.score is None


@pytest.mark.parametrize(("total", "positive"), [(2, False), (3, True), (0, False), (6, True)])
def test_phq2_is_positive_from_3(total: int, positive: bool) -> None:
    score = score_response(PHQ2, answers_totalling(PHQ2, total))
    assert (score.total, score.positive, score.band) == (total, positive, None)


@pytest.mark.parametrize(
    ("total", "band"),
    [
        (0, "noneToMinimal"),
        (4, "noneToMinimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "severe"),
        (21, "severe"),
    ],
)
def test_gad7_total_falls_in_its_severity_band(total: int, band: str) -> None:
    score = score_response(GAD7, answers_totalling(GAD7, total))
    assert score.total == total
    assert score.band is not None and score.band.coding.code == band
    assert score.band.coding.system == c.SEVERITY_BAND_SYSTEM
    assert score.positive is (total >= 10)


# --- AUDIT-C ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "sex", "positive"),
    [
        (2, "male", False),
        (3, "male", False),
        (4, "male", True),
        (2, "female", False),
        (3, "female", True),
        (4, "female", True),
        (2, None, False),
        (3, None, True),
        (4, "unknown", True),
    ],
)
def test_audit_c_is_positive_from_4_for_men_and_3_for_women_and_unknown_sex(
    total: int, sex: str | None, positive: bool
) -> None:
    score = score_response(AUDIT_C, scored_answers(AUDIT_C, [1, 1, total - 2]), sex=sex)
    assert score.total == total
    assert score.positive is positive
    assert any("Sex unknown" in n for n in score.notes) is (sex not in ("male", "female"))


def test_audit_c_notes_when_all_points_come_from_question_1() -> None:
    score = score_response(AUDIT_C, scored_answers(AUDIT_C, [4, 0, 0]), sex="male")
    assert score.positive is True
    assert any("All points from Q1" in n for n in score.notes)
    assert not any(
        "All points" in n for n in score_response(AUDIT_C, scored_answers(AUDIT_C, [3, 1, 0])).notes
    )


# --- C-SSRS ----------------------------------------------------------------------------------

YES, NO = c.LA_YES, c.LA_NO


def cssrs(**answers: str) -> Answers:
    codes = {
        "q1": c.CSSRS_WISH_DEAD,
        "q2": c.CSSRS_SUICIDAL_THOUGHTS,
        "q3": c.CSSRS_METHOD,
        "q4": c.CSSRS_INTENT,
        "q5": c.CSSRS_PLAN_AND_INTENT,
        "q6": c.CSSRS_BEHAVIOR_EVER,
        "q6_recent": c.CSSRS_BEHAVIOR_PAST_3_MONTHS,
    }
    return {codes[k]: [coded(v)] for k, v in answers.items()}


NO_THOUGHTS = {"q1": NO, "q2": NO, "q6": NO}


@pytest.mark.parametrize(
    ("answers", "level", "result"),
    [
        (NO_THOUGHTS, "none", None),
        ({**NO_THOUGHTS, "q1": YES}, "low", "LA9194-7"),
        ({"q1": YES, "q2": YES, "q3": NO, "q4": NO, "q5": NO, "q6": NO}, "low", "LA9194-7"),
        ({"q1": YES, "q2": YES, "q3": YES, "q4": NO, "q5": NO, "q6": NO}, "moderate", "LA6751-7"),
        ({**NO_THOUGHTS, "q6": YES, "q6_recent": NO}, "moderate", "LA6751-7"),
        ({"q1": YES, "q2": YES, "q3": YES, "q4": YES, "q5": NO, "q6": NO}, "high", "LA9193-9"),
        ({"q1": YES, "q2": YES, "q3": NO, "q4": NO, "q5": YES, "q6": NO}, "high", "LA9193-9"),
        ({**NO_THOUGHTS, "q6": YES, "q6_recent": YES}, "high", "LA9193-9"),
    ],
    ids=[
        "none",
        "low-via-q1",
        "low-via-q2",
        "moderate-via-q3",
        "moderate-via-behaviour-over-3-months",
        "high-via-q4",
        "high-via-q5",
        "high-via-behaviour-within-3-months",
    ],
)
def test_cssrs_triage_follows_the_columbia_screener_paths(
    answers: dict[str, str], level: str, result: str | None
) -> None:
    score = score_response(CSSRS_SCREENER, cssrs(**answers))
    assert score.risk_level == level
    assert (score.result.code if score.result else None) == result
    assert score.total is None and score.missing == ()
    assert score.positive is (level != "none")


def test_cssrs_behaviour_without_its_timing_is_treated_as_recent() -> None:
    score = score_response(CSSRS_SCREENER, cssrs(**{**NO_THOUGHTS, "q6": YES}))
    assert score.risk_level == "high"
    assert score.missing == (c.CSSRS_BEHAVIOR_PAST_3_MONTHS,)
    assert any("treated as within 3 months" in n for n in score.notes)


def test_cssrs_q3_to_q5_are_missing_only_after_suicidal_thoughts() -> None:
    after_thoughts = score_response(CSSRS_SCREENER, cssrs(q1=YES, q2=YES, q6=NO))
    assert after_thoughts.missing == (c.CSSRS_METHOD, c.CSSRS_INTENT, c.CSSRS_PLAN_AND_INTENT)
    assert any("lower bound" in n for n in after_thoughts.notes)
    assert score_response(CSSRS_SCREENER, cssrs(q1=YES, q2=NO, q6=NO)).missing == ()


# --- AHC HRSN --------------------------------------------------------------------------------


def ahc(safety: Sequence[int | None]) -> Answers:
    """Negative answers to the six need questions, and the given safety scores."""
    answers = scored_answers(AHC_HRSN, safety)
    negative = {
        c.AHC_LIVING_SITUATION: [c.LA_STEADY_PLACE],
        c.AHC_HOUSING_PROBLEMS: [c.LA_NONE_OF_THE_ABOVE],
        c.AHC_FOOD_WORRY: [c.LA_NEVER_TRUE],
        c.AHC_FOOD_DID_NOT_LAST: [c.LA_NEVER_TRUE],
        c.AHC_TRANSPORTATION: [c.LA_NO],
        c.AHC_UTILITIES_SHUT_OFF: [c.LA_NO],
    }
    for code, chosen in negative.items():
        answers[code] = [coded(a) for a in chosen]
    return answers


@pytest.mark.parametrize(
    ("safety", "positive"), [([1, 2, 3, 4], False), ([1, 1, 3, 5], False), ([2, 2, 3, 4], True)]
)
def test_ahc_interpersonal_safety_is_positive_when_the_sum_is_over_10(
    safety: list[int], positive: bool
) -> None:
    score = score_response(AHC_HRSN, ahc(safety))
    assert score.total == sum(safety)
    assert ("safety" in score.positive_domains) is positive
    assert score.positive is positive
    assert score.missing == ()


@pytest.mark.parametrize(
    ("code", "chosen", "domain"),
    [
        (c.AHC_LIVING_SITUATION, [c.LA_WORRIED_ABOUT_LOSING_IT], "housing"),
        (c.AHC_LIVING_SITUATION, [c.LA_NO_STEADY_PLACE], "housing"),
        (c.AHC_HOUSING_PROBLEMS, [c.LA_MOLD, c.LA_WATER_LEAKS], "housing"),
        (c.AHC_FOOD_WORRY, [c.LA_SOMETIMES_TRUE], "food"),
        (c.AHC_FOOD_DID_NOT_LAST, [c.LA_OFTEN_TRUE], "food"),
        (c.AHC_TRANSPORTATION, [c.LA_YES], "transportation"),
        (c.AHC_UTILITIES_SHUT_OFF, [c.LA_YES], "utilities"),
        (c.AHC_UTILITIES_SHUT_OFF, [c.LA_ALREADY_SHUT_OFF], "utilities"),
    ],
)
def test_each_ahc_domain_is_positive_on_an_underlined_answer(
    code: str, chosen: list[str], domain: str
) -> None:
    answers = ahc([1, 1, 1, 1])
    answers[code] = [coded(a) for a in chosen]
    score = score_response(AHC_HRSN, answers)
    assert score.positive_domains == (domain,)
    assert score.positive is True


def test_an_ahc_screen_with_no_underlined_answer_is_negative() -> None:
    score = score_response(AHC_HRSN, ahc([1, 1, 1, 1]))
    assert score.positive is False and score.positive_domains == () and score.total == 4


def test_an_ahc_safety_score_needs_all_four_safety_answers() -> None:
    score = score_response(AHC_HRSN, ahc([5, 5, 5, None]))
    assert score.total is None
    assert score.missing == (c.AHC_SCREAM_CURSE,)
    assert "safety" not in score.positive_domains


# --- Missing items and prorating ----------------------------------------------------------------


def test_phq9_with_a_missing_item_has_no_total_band_or_result() -> None:
    score = score_response(PHQ9, scored_answers(PHQ9, [3, 3, 3, 3, None, 3, 3, 3, 3]))
    assert score.total is None and score.band is None and score.positive is None
    assert score.missing == (c.PHQ_APPETITE,)


def test_phq9_with_one_missing_item_is_prorated_when_asked_rounding_half_up() -> None:
    # 8 answered items summing to 9: 9 * 9 / 8 = 10.125 -> 10; summing to 12: 13.5 -> 14
    nine = score_response(PHQ9, scored_answers(PHQ9, [2, 2, 1, 1, 1, 1, 1, None, 0]), prorate=True)
    assert (nine.total, nine.prorated, nine.missing) == (10, True, (c.PHQ_SLOW_FIDGETY,))
    assert nine.band is not None and nine.band.coding.code == c.LA_PHQ9_MODERATE
    assert any("Prorated from 8" in n for n in nine.notes)
    twelve = score_response(PHQ9, scored_answers(PHQ9, [3, 3, 2, 1, 1, 1, 1, None, 0]), prorate=True)
    assert twelve.total == 14


def test_prorating_never_fills_in_two_missing_items() -> None:
    score = score_response(PHQ9, scored_answers(PHQ9, [3, 3, 3, 3, None, 3, 3, None, 3]), prorate=True)
    assert score.total is None and not score.prorated


def test_gad7_with_one_missing_item_is_prorated_when_asked() -> None:
    score = score_response(GAD7, scored_answers(GAD7, [3, 3, 3, 3, 3, 3, None]), prorate=True)
    assert (score.total, score.prorated) == (21, True)
    assert score_response(GAD7, scored_answers(GAD7, [3, 3, 3, 3, 3, 3, None])).total is None


@pytest.mark.parametrize("instrument", [PHQ2, AUDIT_C], ids=["phq-2", "audit-c"])
def test_phq2_and_audit_c_are_never_prorated(instrument: Any) -> None:
    scores: list[int | None] = [1] * len(instrument.scored_items)
    scores[-1] = None
    score = score_response(instrument, scored_answers(instrument, scores), prorate=True)
    assert score.total is None and not score.prorated and score.positive is None


# --- Answers that cannot be scored ---------------------------------------------------------------


def test_an_answer_code_that_is_not_an_option_is_refused_naming_the_item() -> None:
    answers = answers_totalling(PHQ9, 5) | {c.PHQ_TIRED: [coded("LA9999-9")]}
    with pytest.raises(ScoringError) as raised:
        score_response(PHQ9, answers)
    assert raised.value.item_code == c.PHQ_TIRED
    assert http_status(raised.value) == 422
    outcome = operation_outcome(raised.value)
    assert outcome["issue"][0]["code"] == "business-rule"
    assert c.PHQ_TIRED in outcome["issue"][0]["diagnostics"]
    assert "LA9999-9" in outcome["issue"][0]["diagnostics"]


def test_a_local_answer_code_without_a_questionnaire_score_is_refused() -> None:
    answers = answers_totalling(GAD7, 0) | {c.GAD_AFRAID: [coded("Nearly every day", "urn:local")]}
    with pytest.raises(ScoringError, match=c.GAD_AFRAID):
        score_response(GAD7, answers)


def test_two_answers_to_a_single_answer_item_are_refused() -> None:
    answers = answers_totalling(PHQ2, 2) | {
        c.PHQ_INTEREST: [coded(c.LA_NOT_AT_ALL), coded(c.LA_SEVERAL_DAYS)]
    }
    with pytest.raises(ScoringError, match="expects one answer"):
        score_response(PHQ2, answers)


def test_a_text_answer_is_refused() -> None:
    with pytest.raises(ScoringError, match="valueCoding"):
        score_response(PHQ2, {c.PHQ_INTEREST: [{"valueString": "often"}]})


def test_numeric_answers_within_the_items_scores_are_accepted() -> None:
    answers: Answers = {c.PHQ_INTEREST: [{"valueInteger": 3}], c.PHQ_DOWN_HOPELESS: [{"valueDecimal": 1.0}]}
    score = score_response(PHQ2, answers)
    assert score.total == 4
    assert score.item(c.PHQ_INTEREST).answers[0].option.code == c.LA_NEARLY_EVERY_DAY  # type: ignore[union-attr]
    with pytest.raises(ScoringError, match="outside"):
        score_response(PHQ2, {c.PHQ_INTEREST: [{"valueInteger": 4}]})
    with pytest.raises(ScoringError, match="whole number"):
        score_response(PHQ2, {c.PHQ_INTEREST: [{"valueDecimal": 1.5}]})


def test_an_answer_code_outside_the_table_is_scored_by_the_questionnaires_ordinal_value() -> None:
    answers = answers_totalling(GAD7, 0) | {c.GAD_CANNOT_STOP_WORRYING: [coded("LA18938-3")]}
    score = score_response(GAD7, answers, questionnaire_scores={c.GAD_CANNOT_STOP_WORRYING: {"LA18938-3": 2}})
    assert score.total == 2
    item = score.item(c.GAD_CANNOT_STOP_WORRYING)
    assert item is not None and item.answers[0].option is not None
    assert item.answers[0].option.code == c.LA_MORE_THAN_HALF_THE_DAYS
    assert item.answers[0].coding == {"system": c.LOINC, "code": "LA18938-3"}


def test_a_bare_la_code_is_read_as_loinc() -> None:
    score = score_response(
        PHQ2, {c.PHQ_INTEREST: [coded("LA6571-9", None)], c.PHQ_DOWN_HOPELESS: [coded("LA6568-5")]}
    )
    assert score.total == 3
    assert score.items[0].answers[0].coding == {"system": c.LOINC, "code": "LA6571-9"}


# --- Reading responses ---------------------------------------------------------------------------

OUR_PHQ2 = questionnaire_resource(PHQ2)


def test_answers_are_found_in_groups_and_under_answers_by_item_code() -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "item": [
            {
                "linkId": "g1",
                "type": "group",
                "item": [
                    {"linkId": "a", "type": "choice", "code": [{"system": c.LOINC, "code": c.PHQ_INTEREST}]},
                    {
                        "linkId": "b",
                        "type": "choice",
                        "code": [{"system": c.LOINC, "code": c.PHQ_DOWN_HOPELESS}],
                    },
                ],
            }
        ],
    }
    qr = response(
        [
            {
                "linkId": "g1",
                "item": [
                    {"linkId": "a", "answer": [{**coded(c.LA_SEVERAL_DAYS), "item": [{"linkId": "x"}]}]},
                    {"linkId": "b", "answer": [coded(c.LA_NOT_AT_ALL)]},
                ],
            }
        ]
    )
    found = answers_by_code(questionnaire, qr)
    assert [a["valueCoding"]["code"] for a in found[c.PHQ_INTEREST]] == [c.LA_SEVERAL_DAYS]
    assert [a["valueCoding"]["code"] for a in found[c.PHQ_DOWN_HOPELESS]] == [c.LA_NOT_AT_ALL]


def test_a_response_item_unknown_to_the_questionnaire_falls_back_to_the_loinc_link_id() -> None:
    found = answers_by_code(
        {"resourceType": "Questionnaire"}, response([{"linkId": "/44250-9", "answer": [coded("LA6568-5")]}])
    )
    assert list(found) == ["44250-9"]


def test_our_questionnaires_are_recognised_by_url_even_with_a_version() -> None:
    assert instrument_for({"url": f"{PHQ9.url}|1.0.0"}) is PHQ9
    assert instrument_for({"url": "http://example.org/Questionnaire/other"}) is None


def test_public_questionnaires_are_recognised_by_panel_code_or_by_their_item_codes() -> None:
    assert instrument_for({"code": [{"system": c.LOINC, "code": "69737-5"}]}) is GAD7
    phq9_items = [{"linkId": f"/{i.code}", "type": "choice"} for i in PHQ9.scored_items]
    assert instrument_for({"item": phq9_items}) is PHQ9
    assert instrument_for({"item": phq9_items[:2]}) is PHQ2


def test_an_unrecognised_questionnaire_cannot_be_scored() -> None:
    with pytest.raises(UnrecognisedQuestionnaire):
        score_questionnaire_response({"resourceType": "Questionnaire", "item": []}, response([]))


def test_our_own_questionnaire_response_scores_in_one_call() -> None:
    qr = response(
        [
            {"linkId": f"/{c.PHQ_INTEREST}", "answer": [coded(c.LA_NEARLY_EVERY_DAY)]},
            {"linkId": f"/{c.PHQ_DOWN_HOPELESS}", "answer": [coded(c.LA_SEVERAL_DAYS)]},
        ],
        PHQ2.url,
    )
    score = score_questionnaire_response(OUR_PHQ2, qr)
    assert (score.instrument, score.total, score.positive) == (PHQ2, 4, True)


def test_the_us_core_audit_c_variant_is_recognised_but_its_question_1_is_not_the_standard_one() -> None:
    variant = {
        "code": [{"system": c.LOINC, "code": "72109-2"}],
        "item": [{"linkId": "/68517-2", "type": "decimal", "code": [{"system": c.LOINC, "code": "68517-2"}]}],
    }
    assert instrument_for(variant) is AUDIT_C
    score = score_questionnaire_response(
        variant, response([{"linkId": "/68517-2", "answer": [{"valueDecimal": 3}]}])
    )
    assert score.total is None and c.AUDIT_FREQUENCY in score.missing


def test_option_scores_read_answer_options_and_contained_value_sets() -> None:
    questionnaire = {
        "contained": [
            {
                "resourceType": "ValueSet",
                "id": "vs",
                "compose": {
                    "include": [
                        {
                            "system": "urn:local",
                            "concept": [
                                {"code": "often", "extension": [{"url": c.ORDINAL_VALUE, "valueDecimal": 3}]}
                            ],
                        }
                    ]
                },
            }
        ],
        "item": [
            {"linkId": "/44250-9", "type": "choice", "answerValueSet": "#vs"},
            {
                "linkId": "/44255-8",
                "type": "choice",
                "answerOption": [
                    {"valueCoding": {"code": "x"}, "extension": [{"url": c.ITEM_WEIGHT, "valueInteger": 1}]}
                ],
            },
        ],
    }
    assert option_scores(questionnaire) == {"44250-9": {"often": 3}, "44255-8": {"x": 1}}


# --- The client's own total ------------------------------------------------------------------------


def phq2_response_with_total(total: dict[str, Any] | None) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"linkId": f"/{c.PHQ_INTEREST}", "answer": [coded(c.LA_NEARLY_EVERY_DAY)]},
        {"linkId": f"/{c.PHQ_DOWN_HOPELESS}", "answer": [coded(c.LA_NOT_AT_ALL)]},
    ]
    if total is not None:
        items.append({"linkId": f"/{c.PHQ2_TOTAL}", "answer": [total]})
    return response(items, PHQ2.url)


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (None, None),
        ({"valueInteger": 3}, 3),
        ({"valueDecimal": 5.0}, 5),
        ({"valueQuantity": {"value": 4}}, 4),
    ],
)
def test_the_clients_total_is_read_from_the_total_item(
    total: dict[str, Any] | None, expected: int | None
) -> None:
    qr = phq2_response_with_total(total)
    assert client_total(OUR_PHQ2, qr, PHQ2) == expected
    assert client_total(OUR_PHQ2, answers_by_code(OUR_PHQ2, qr), PHQ2) == expected


def test_a_client_total_matches_only_the_computed_total() -> None:
    qr = phq2_response_with_total({"valueInteger": 4})
    score = score_questionnaire_response(OUR_PHQ2, qr)
    assert score.total == 3
    assert not client_total_matches(score, client_total(OUR_PHQ2, qr, PHQ2))
    assert client_total_matches(score, 3) and client_total_matches(score, None)


def test_a_fractional_client_total_is_refused() -> None:
    with pytest.raises(ScoringError, match=c.PHQ2_TOTAL):
        client_total(OUR_PHQ2, phq2_response_with_total({"valueDecimal": 3.5}), PHQ2)
