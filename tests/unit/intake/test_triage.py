"""Triage of scored screenings: safety signals and their Flags, SDOH needs, follow-up screens."""

from __future__ import annotations

import pytest

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import AHC_HRSN, AUDIT_C, CSSRS_SCREENER, GAD7, PHQ2, PHQ9
from services.intake.domain.scoring import Score, score_response
from services.intake.domain.triage import (
    ACTION_CRISIS,
    ACTION_CSSRS,
    ACTION_IPV_SAFETY,
    ACTION_SAFETY_PLAN,
    SIGNAL_CSSRS_HIGH,
    SIGNAL_CSSRS_MODERATE,
    SIGNAL_INTERPERSONAL_SAFETY,
    SIGNAL_PHQ9_ITEM9,
    flag_for,
    follow_up_instruments,
    risk_signals,
    sdoh_needs,
)
from shared.fhir.validation import validate_resource
from tests.unit.intake.screening_answers import Answers, answers_totalling, coded, scored_answers

PATIENT = "Patient/synthetic-7"
RESPONSE_ID = "qr-synthetic-7"


def phq9_with_item9(item9: int) -> Score:
    return score_response(PHQ9, scored_answers(PHQ9, [1] * 8 + [item9]))


def cssrs(**yes: bool) -> Score:
    codes = {
        "q1": c.CSSRS_WISH_DEAD,
        "q2": c.CSSRS_SUICIDAL_THOUGHTS,
        "q3": c.CSSRS_METHOD,
        "q4": c.CSSRS_INTENT,
        "q5": c.CSSRS_PLAN_AND_INTENT,
        "q6": c.CSSRS_BEHAVIOR_EVER,
        "q6_recent": c.CSSRS_BEHAVIOR_PAST_3_MONTHS,
    }
    return score_response(
        CSSRS_SCREENER, {codes[k]: [coded(c.LA_YES if v else c.LA_NO)] for k, v in yes.items()}
    )


def ahc(safety: list[int], **needs: list[str]) -> Score:
    answers: Answers = scored_answers(AHC_HRSN, safety)
    codes = {
        "living": c.AHC_LIVING_SITUATION,
        "problems": c.AHC_HOUSING_PROBLEMS,
        "food": c.AHC_FOOD_DID_NOT_LAST,
        "transport": c.AHC_TRANSPORTATION,
        "utilities": c.AHC_UTILITIES_SHUT_OFF,
    }
    for key, chosen in needs.items():
        answers[codes[key]] = [coded(a) for a in chosen]
    return score_response(AHC_HRSN, answers)


# --- Safety signals ------------------------------------------------------------------------------


def test_phq9_item9_answered_not_at_all_raises_no_signal() -> None:
    assert risk_signals(phq9_with_item9(0)) == []


@pytest.mark.parametrize(("item9", "escalated"), [(1, False), (2, True), (3, True)])
def test_phq9_item9_of_1_or_more_asks_for_a_same_day_cssrs_escalated_from_2(
    item9: int, escalated: bool
) -> None:
    [signal] = risk_signals(phq9_with_item9(item9))
    assert signal.code == SIGNAL_PHQ9_ITEM9
    assert signal.priority == "PH"
    assert signal.action == ACTION_CSSRS
    assert signal.escalated is escalated
    assert signal.evidence == (c.PHQ9_ITEM9_SELF_HARM,)
    assert "DOMAIN.md §1.2" in signal.source


def test_a_cssrs_high_risk_is_a_crisis_signal() -> None:
    [signal] = risk_signals(cssrs(q1=True, q2=True, q3=False, q4=True, q5=False, q6=False))
    assert (signal.code, signal.priority, signal.action) == (SIGNAL_CSSRS_HIGH, "PH", ACTION_CRISIS)
    assert set(signal.evidence) == {c.CSSRS_WISH_DEAD, c.CSSRS_SUICIDAL_THOUGHTS, c.CSSRS_INTENT}


def test_a_cssrs_moderate_risk_asks_for_a_safety_plan() -> None:
    [signal] = risk_signals(cssrs(q1=False, q2=False, q6=True, q6_recent=False))
    assert (signal.code, signal.priority, signal.action) == (SIGNAL_CSSRS_MODERATE, "PM", ACTION_SAFETY_PLAN)


@pytest.mark.parametrize(
    "answers", [{"q1": True, "q2": False, "q6": False}, {"q1": False, "q2": False, "q6": False}]
)
def test_a_cssrs_low_or_no_risk_raises_no_signal(answers: dict[str, bool]) -> None:
    assert risk_signals(cssrs(**answers)) == []


def test_ahc_interpersonal_safety_over_10_starts_the_ipv_workflow_with_restricted_visibility() -> None:
    assert risk_signals(ahc([1, 2, 3, 4])) == []
    [signal] = risk_signals(ahc([2, 2, 3, 4]))
    assert (signal.code, signal.action, signal.restricted) == (
        SIGNAL_INTERPERSONAL_SAFETY,
        ACTION_IPV_SAFETY,
        True,
    )
    assert "11" in signal.reason


@pytest.mark.parametrize(
    "score",
    [
        score_response(GAD7, answers_totalling(GAD7, 21)),
        score_response(AUDIT_C, answers_totalling(AUDIT_C, 12)),
        score_response(PHQ2, answers_totalling(PHQ2, 6)),
    ],
    ids=["gad-7", "audit-c", "phq-2"],
)
def test_instruments_without_safety_rules_raise_no_signal(score: Score) -> None:
    assert risk_signals(score) == []


def test_signal_reasons_carry_no_patient_identifiers() -> None:
    signals = [
        *risk_signals(phq9_with_item9(3)),
        *risk_signals(cssrs(q1=True, q2=True, q3=True, q4=True, q5=True, q6=False)),
        *risk_signals(ahc([5, 5, 5, 5])),
    ]
    for signal in signals:
        flag = flag_for(signal, patient_reference=PATIENT, response_id=RESPONSE_ID, start="2025-01-01")
        assert PATIENT not in signal.reason and RESPONSE_ID not in flag["code"]["text"]


# --- Flags ---------------------------------------------------------------------------------------


def test_a_flag_is_valid_fhir_r4_with_priority_category_subject_and_the_response_behind_it() -> None:
    [signal] = risk_signals(phq9_with_item9(2))
    flag = flag_for(signal, patient_reference=PATIENT, response_id=RESPONSE_ID, start="2025-06-01T10:00:00Z")
    validate_resource(flag, "Flag")
    assert flag["status"] == "active"
    assert flag["category"][0]["coding"][0] == {
        "system": c.FLAG_CATEGORY,
        "code": "safety",
        "display": "Safety",
    }
    assert flag["subject"] == {"reference": PATIENT}
    assert flag["period"] == {"start": "2025-06-01T10:00:00Z"}
    extensions = {e["url"]: e for e in flag["extension"]}
    priority = extensions["http://hl7.org/fhir/StructureDefinition/flag-priority"]["valueCodeableConcept"]
    assert priority["coding"][0] == {
        "system": "http://hl7.org/fhir/flag-priority-code",
        "code": "PH",
        "display": "High priority",
    }
    detail = extensions["http://hl7.org/fhir/StructureDefinition/flag-detail"]
    assert detail["valueReference"] == {"reference": f"QuestionnaireResponse/{RESPONSE_ID}"}
    assert flag["identifier"] == [
        {"system": "urn:carebridge:screening", "value": f"{RESPONSE_ID}/{SIGNAL_PHQ9_ITEM9}"}
    ]
    assert flag["code"]["coding"][0]["code"] == SIGNAL_PHQ9_ITEM9


def test_the_same_response_flags_once_its_flag_id_is_stable() -> None:
    [signal] = risk_signals(phq9_with_item9(1))
    first = flag_for(signal, patient_reference=PATIENT, response_id=RESPONSE_ID, start="2025-01-01")
    again = flag_for(signal, patient_reference=PATIENT, response_id=RESPONSE_ID, start="2025-01-02")
    other = flag_for(signal, patient_reference=PATIENT, response_id="qr-synthetic-8", start="2025-01-01")
    assert first["id"] == again["id"] != other["id"]


# --- SDOH needs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("needs", "category", "evidence"),
    [
        ({"living": [c.LA_WORRIED_ABOUT_LOSING_IT]}, "housing-instability", (c.AHC_LIVING_SITUATION,)),
        ({"living": [c.LA_NO_STEADY_PLACE]}, "homelessness", (c.AHC_LIVING_SITUATION,)),
        ({"problems": [c.LA_PESTS, c.LA_LEAD]}, "inadequate-housing", (c.AHC_HOUSING_PROBLEMS,)),
        ({"food": [c.LA_SOMETIMES_TRUE]}, "food-insecurity", (c.AHC_FOOD_DID_NOT_LAST,)),
        ({"transport": [c.LA_YES]}, "transportation-insecurity", (c.AHC_TRANSPORTATION,)),
        ({"utilities": [c.LA_ALREADY_SHUT_OFF]}, "utility-insecurity", (c.AHC_UTILITIES_SHUT_OFF,)),
    ],
)
def test_each_positive_ahc_answer_becomes_a_gravity_sdoh_need_with_its_evidence(
    needs: dict[str, list[str]], category: str, evidence: tuple[str, ...]
) -> None:
    [need] = sdoh_needs(ahc([1, 1, 1, 1], **needs))
    assert need.category.system == c.SDOHCC_CATEGORY
    assert need.category.code == category
    assert need.coding() == {"system": c.SDOHCC_CATEGORY, "code": category, "display": need.category.display}
    assert need.evidence == evidence


def test_negative_answers_and_a_safety_sum_of_10_give_no_need() -> None:
    score = ahc(
        [1, 2, 3, 4], living=[c.LA_STEADY_PLACE], problems=[c.LA_NONE_OF_THE_ABOVE], transport=[c.LA_NO]
    )
    assert sdoh_needs(score) == []


def test_a_positive_safety_screen_is_an_intimate_partner_violence_need() -> None:
    [need] = sdoh_needs(ahc([3, 3, 3, 3]))
    assert need.category.code == "intimate-partner-violence"
    assert need.evidence == (c.AHC_PHYSICALLY_HURT, c.AHC_INSULT, c.AHC_THREATEN, c.AHC_SCREAM_CURSE)


def test_several_needs_come_in_instrument_order() -> None:
    score = ahc([5, 5, 5, 5], utilities=[c.LA_YES], living=[c.LA_NO_STEADY_PLACE], food=[c.LA_OFTEN_TRUE])
    assert [n.category.code for n in sdoh_needs(score)] == [
        "homelessness",
        "food-insecurity",
        "utility-insecurity",
        "intimate-partner-violence",
    ]


def test_clinical_screenings_give_no_sdoh_needs() -> None:
    assert sdoh_needs(phq9_with_item9(3)) == []


# --- Follow-up screens ---------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "follow_up"), [(2, []), (3, ["phq-9"])])
def test_a_positive_phq2_asks_for_the_phq9(total: int, follow_up: list[str]) -> None:
    assert follow_up_instruments(score_response(PHQ2, answers_totalling(PHQ2, total))) == follow_up


@pytest.mark.parametrize(("item9", "follow_up"), [(0, []), (1, ["cssrs-screener"]), (3, ["cssrs-screener"])])
def test_a_positive_phq9_item9_asks_for_the_cssrs(item9: int, follow_up: list[str]) -> None:
    assert follow_up_instruments(phq9_with_item9(item9)) == follow_up
