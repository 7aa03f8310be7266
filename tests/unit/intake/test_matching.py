"""Patient matching (services/intake/domain/matching.py): the cases issue 5 names, one at a time.
Every person here is made up (555-01XX phones, 9XX SSNs, .example MRN systems)."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from services.intake.domain import names
from services.intake.domain.matching import (
    DEFAULT_THRESHOLDS,
    MATCH_LOG_ODDS,
    POSSIBLE_LOG_ODDS,
    Address,
    MatchResult,
    MatchThresholds,
    blocking_keys,
    demographics,
    rank_candidates,
    score_of,
    score_pair,
)

HOSPITAL_A = "http://hospital-a.example/mrn"
HOSPITAL_B = "http://hospital-b.example/mrn"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"


def patient(**changes: Any) -> dict[str, Any]:
    """Robert James Harlow, as hospital A knows him; `changes` replace top-level elements."""
    base: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": HOSPITAL_A, "value": "A-100"}],
        "name": [{"use": "official", "family": "Harlow", "given": ["Robert", "James"]}],
        "gender": "male",
        "birthDate": "1984-03-07",
        "telecom": [{"system": "phone", "value": "(217) 555-0142"}],
        "address": [
            {"line": ["48 Sycamore Street"], "city": "Brookfield", "state": "IL", "postalCode": "60513"}
        ],
    }
    return base | changes


def from_b(**changes: Any) -> dict[str, Any]:
    """A record of hospital B (its own MRN) with `changes`."""
    return patient(**({"identifier": [{"system": HOSPITAL_B, "value": "B-7"}]} | changes))


def name(family: str, *given: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"use": "official", "family": family, "given": list(given), **extra}]


def compare(
    incoming: dict[str, Any], held: dict[str, Any], thresholds: MatchThresholds = DEFAULT_THRESHOLDS
) -> MatchResult:
    return score_pair(demographics(incoming), demographics(held), "held", thresholds)


def outcome(result: MatchResult, feature: str) -> str:
    return next(e.outcome for e in result.evidence if e.feature == feature)


MOVED = {
    "telecom": [{"system": "phone", "value": "312-555-0188"}],
    "address": [{"line": ["9 Lake Avenue"], "city": "Riverton", "state": "IL", "postalCode": "62561"}],
}


# --- names ----------------------------------------------------------------------------------


def test_a_nickname_from_another_facility_is_the_same_person() -> None:
    result = compare(from_b(name=name("Harlow", "Bob")), patient())
    assert outcome(result, "given") == "nickname"
    assert result.decision == "match" and result.grade == "certain"


@pytest.mark.parametrize(
    ("short", "formal"),
    [("bob", "robert"), ("bill", "william"), ("liz", "elizabeth"), ("peggy", "margaret"), ("jim", "james"),
     ("kate", "katherine"), ("dick", "richard"), ("tony", "anthony"), ("cathy", "kathryn"), ("alex", "al")],
)  # fmt: skip
def test_common_english_nicknames_are_known(short: str, formal: str) -> None:
    assert names.are_nicknames(short, formal) and names.are_nicknames(formal, short)


def test_names_that_are_not_nicknames_of_each_other_are_not() -> None:
    assert not names.are_nicknames("robert", "richard")
    assert not names.are_nicknames("christopher", "christina")


def test_the_nickname_table_has_over_a_hundred_pairs() -> None:
    assert sum(len(nicknames.split()) for nicknames in names.NICKNAMES.values()) >= 100


def test_transposed_letters_in_both_names_still_match() -> None:
    result = compare(from_b(name=name("Hralow", "Robret"), **MOVED), patient())
    assert (outcome(result, "family"), outcome(result, "given")) == ("transposed", "transposed")
    assert result.decision == "match"


def test_a_letter_typed_wrong_in_the_family_name_still_matches() -> None:
    result = compare(from_b(name=name("Harlowe", "Robert"), **MOVED), patient())
    assert outcome(result, "family") == "typo" and result.decision == "match"


def test_given_and_family_names_swapped_still_match() -> None:
    result = compare(from_b(name=name("Robert", "Harlow"), **MOVED), patient())
    assert outcome(result, "family") == "swapped-with-given" and result.decision == "match"


def test_a_hyphenated_family_name_agrees_with_its_part() -> None:
    result = compare(from_b(name=name("Harlow-Okafor", "Robert")), patient())
    assert outcome(result, "family") == "compound" and result.decision == "match"


def test_diacritics_case_and_punctuation_are_folded() -> None:
    held = patient(name=name("Núñez", "José"))
    assert outcome(compare(from_b(name=name("NUNEZ", "JOSE")), held), "family") == "exact"
    assert names.family_key("O'Brien") == names.family_key("OBRIEN") == "obrien"


def test_a_maiden_name_on_the_new_record_still_agrees_with_the_old_one() -> None:
    renamed = [*name("Okafor", "Roberta"), {"use": "maiden", "family": "Harlow"}]
    held = patient(name=name("Harlow", "Roberta"), gender="female")
    result = compare(from_b(name=renamed, gender="female", **MOVED), held)
    assert outcome(result, "family") == "exact" and result.decision == "match"


def test_soundex_follows_the_national_archives_rules() -> None:
    assert [names.soundex(n) for n in ("robert", "rupert", "ashcraft", "tymczak", "pfister", "honeyman")] == [
        "R163", "R163", "A261", "T522", "P236", "H555",
    ]  # fmt: skip


# --- birth date, phone, address -------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth_date", "expected"),
    [("1984-07-03", "swapped-day-month"), ("1984-03-01", "typo"), ("1985-03-07", "year-off-by-one"),
     ("1948-03-07", "transposed"), ("1991-11-23", "different")],
)  # fmt: skip
def test_birth_date_errors_are_recognised(birth_date: str, expected: str) -> None:
    assert outcome(compare(from_b(birthDate=birth_date), patient()), "birthDate") == expected


def test_day_and_month_swapped_still_match() -> None:
    assert compare(from_b(birthDate="1984-07-03"), patient()).decision == "match"
    assert compare(from_b(birthDate="1984-07-03", telecom=MOVED["telecom"]), patient()).decision == "match"


def test_day_and_month_swapped_after_a_move_and_a_new_phone_goes_to_review() -> None:
    # Name and gender alone, with an inexact birth date, fit a namesake too (MATCH_LOG_ODDS).
    assert compare(from_b(birthDate="1984-07-03", **MOVED), patient()).decision == "possible"


def test_address_abbreviations_unit_designators_and_zip_plus_4_read_alike() -> None:
    spelled = demographics(
        patient(address=[{"line": ["48 North Sycamore Street", "Apartment 4B"], "postalCode": "60513"}])
    )
    short = demographics(patient(address=[{"line": ["48 N. SYCAMORE ST #4B"], "postalCode": "60513-2201"}]))
    assert spelled.addresses == short.addresses == {Address("48 n sycamore st 4b", "", "", "60513")}


def test_phone_formats_read_alike() -> None:
    dashed = demographics(patient(telecom=[{"system": "phone", "value": "+1 (217) 555-0142"}]))
    dotted = demographics(patient(telecom=[{"system": "phone", "value": "217.555.0142"}]))
    assert dashed.phones == dotted.phones == {"2175550142"}


# --- people who are not the same person -----------------------------------------------------


def test_twins_at_one_address_are_kept_apart() -> None:
    twin = from_b(name=name("Harlow", "Daniel"))
    same_sex = compare(twin, patient())
    assert same_sex.decision != "match"
    assert "household" in {e.feature for e in same_sex.evidence}
    assert compare(from_b(name=name("Harlow", "Daniela"), gender="female"), patient()).decision == "new"


def test_a_junior_at_his_fathers_address_is_not_merged_with_him() -> None:
    junior = from_b(name=name("Harlow", "Robert", suffix=["Jr."]), birthDate="2010-09-21")
    assert compare(junior, patient()).decision != "match"


def test_a_different_ssn_last_4_lowers_a_match_below_the_match_threshold() -> None:
    held = patient(
        identifier=[{"system": HOSPITAL_A, "value": "A-100"}, {"system": US_SSN, "value": "912-34-5678"}]
    )
    nickname = name("Harlow", "Bob")
    assert compare(from_b(name=nickname), held).decision == "match"
    other_ssn = [{"system": HOSPITAL_B, "value": "B-7"}, {"system": US_SSN, "value": "912-34-8765"}]
    result = compare(patient(identifier=other_ssn, name=nickname), held)
    assert outcome(result, "ssn4") == "different"
    assert result.decision != "match" and result.score < DEFAULT_THRESHOLDS.match


def test_a_shared_full_ssn_is_evidence_not_an_identifier_match() -> None:
    ssn = {"system": US_SSN, "value": "912-34-5678"}
    stranger = patient(
        identifier=[{"system": HOSPITAL_B, "value": "B-9"}, ssn],
        name=name("Okafor", "Daniela"),
        gender="female",
        birthDate="1962-11-30",
        **MOVED,
    )
    held = patient(identifier=[{"system": HOSPITAL_A, "value": "A-100"}, ssn])
    assert demographics(held).identifiers == {(HOSPITAL_A, "A-100")}
    result = compare(stranger, held)
    assert outcome(result, "ssn4") == "exact" and result.decision == "new"


# --- identifiers ----------------------------------------------------------------------------


def test_a_shared_identifier_is_a_certain_match_whatever_the_typos() -> None:
    result = compare(patient(name=name("Harlwo", "Rob"), birthDate="1984-03-08", **MOVED), patient())
    assert result.decision == "match" and result.grade == "certain" and not result.needs_review
    assert result.evidence[0].feature == "identifier" and result.evidence[0].outcome == "exact"


def test_a_shared_identifier_with_contradicting_demographics_is_matched_but_flagged_for_review() -> None:
    # A mis-keyed MRN, or a newborn registered under the mother's MRN.
    other = patient(name=name("Harlow", "Daniela"), gender="female", birthDate="2024-12-01")
    result = compare(other, patient())
    assert result.decision == "match" and result.grade == "probable" and result.needs_review
    assert ("identifier", "contradicted") in {(e.feature, e.outcome) for e in result.evidence}


def test_an_identifier_without_a_system_matches_nothing() -> None:
    no_system = [{"value": "A-100"}]
    result = compare(
        patient(identifier=no_system, name=name("Okafor", "Daniela"), birthDate="1962-11-30"),
        patient(identifier=no_system),
    )
    assert result.decision != "match"


def test_candidates_are_ranked_best_first_with_the_identifier_match_on_top() -> None:
    incoming = demographics(patient(name=name("Harlow", "Bob")))
    candidates = [
        ("twin", demographics(from_b(name=name("Harlow", "Daniel"), identifier=[]))),
        (
            "stranger",
            demographics(from_b(name=name("Okafor", "Ngozi"), identifier=[], birthDate="1990-01-01")),
        ),
        ("same-mrn", demographics(patient())),
    ]
    ranked = rank_candidates(incoming, candidates, DEFAULT_THRESHOLDS)
    assert [r.candidate_id for r in ranked] == ["same-mrn", "twin", "stranger"]
    assert [r.grade for r in ranked] == ["certain", "possible", "certainly-not"]


# --- missing values, explanation, thresholds ------------------------------------------------


def test_missing_fields_are_neutral() -> None:
    held = patient()
    full = compare(from_b(**MOVED), held)
    sparse_record = from_b(**MOVED)
    for element in ("telecom", "address", "gender"):
        del sparse_record[element]
    sparse = compare(sparse_record, held)
    lines = {e.feature: e for e in sparse.evidence}
    for feature in ("phone", "address", "gender", "ssn4"):
        assert (lines[feature].outcome, lines[feature].weight) == ("missing", 0.0)
    for feature in ("family", "given", "birthDate"):
        assert lines[feature] in full.evidence
    assert math.isclose(sparse.log_odds, sum(e.weight for e in sparse.evidence))


def test_explanation_names_features_outcomes_and_weights_but_no_values() -> None:
    held = patient(
        identifier=[{"system": HOSPITAL_A, "value": "A-100"}, {"system": US_SSN, "value": "912-34-5678"}]
    )
    line = compare(from_b(name=name("Harlow", "Bob")), held).explain()
    assert "given=nickname(+" in line and "birthDate=exact(+" in line and line.startswith("match/certain")
    for value in (
        "harlow",
        "bob",
        "robert",
        "1984",
        "0142",
        "sycamore",
        "brookfield",
        "60513",
        "5678",
        "a-100",
        "b-7",
    ):
        assert value not in line.lower()


def test_thresholds_decide_match_possible_and_new() -> None:
    score = compare(from_b(name=name("Harlow", "Bob")), patient()).score
    assert (
        compare(from_b(name=name("Harlow", "Bob")), patient(), MatchThresholds(score, score)).decision
        == "match"
    )
    between = MatchThresholds(match=min(1.0, score + 0.01), possible=score - 0.01)
    assert compare(from_b(name=name("Harlow", "Bob")), patient(), between).decision == "possible"
    above = MatchThresholds(match=1.0, possible=min(1.0, score + 0.01))
    result = compare(from_b(name=name("Harlow", "Bob")), patient(), above)
    assert (result.decision, result.grade) == ("new", "certainly-not")


def test_thresholds_must_be_ordered_within_0_and_1() -> None:
    with pytest.raises(ValueError):
        MatchThresholds(match=0.5, possible=0.9)
    with pytest.raises(ValueError):
        MatchThresholds(match=20.0, possible=9.0)


def test_default_thresholds_sit_at_the_documented_log_odds() -> None:
    assert math.isclose(score_of(MATCH_LOG_ODDS), DEFAULT_THRESHOLDS.match)
    assert math.isclose(score_of(POSSIBLE_LOG_ODDS), DEFAULT_THRESHOLDS.possible)


# --- blocking -------------------------------------------------------------------------------

DUPLICATES = {
    "nickname": {"name": name("Harlow", "Bob")},
    "typo-in-both-names": {"name": name("Harlwo", "Robret"), **MOVED},
    "first-letter-typo": {"name": name("Carlow", "Robert"), **MOVED},
    "swapped-day-month": {"birthDate": "1984-07-03", **MOVED},
    "birth-date-typo": {"birthDate": "1984-03-01", **MOVED},
    "birth-year-typo": {"birthDate": "1994-03-07", **MOVED},
    "moved-new-phone": MOVED,
    "married-name-moved": {"name": name("Okafor", "Robert"), **MOVED},
    "names-swapped-new-phone": {"name": name("Robert", "Harlow"), "telecom": MOVED["telecom"]},
}


@pytest.mark.parametrize("changes", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_blocking_keys_are_shared_by_typical_duplicates(changes: dict[str, Any]) -> None:
    assert blocking_keys(demographics(from_b(**changes))) & blocking_keys(demographics(patient()))


def test_blocking_keys_of_unrelated_people_differ_and_hold_no_readable_values() -> None:
    keys = blocking_keys(demographics(patient()))
    stranger = from_b(name=name("Okafor", "Ngozi"), gender="female", birthDate="1990-01-01", **MOVED)
    assert not keys & blocking_keys(demographics(stranger))
    assert all(len(key) <= 40 for key in keys)
    assert not any(value in key for key in keys for value in ("1984", "0142", "harlow", "H640"))


# --- odd Patients ---------------------------------------------------------------------------

ODD_PATIENTS: dict[str, Any] = {
    "empty": {},
    "not-a-dict": None,
    "no-name": {"resourceType": "Patient", "birthDate": "1984-03-07"},
    "empty-names": {"name": [{}, {"use": "official"}]},
    "name-not-a-list": {"name": "Robert Harlow"},
    "text-only-name": {"name": [{"text": "Harlow, Robert James"}]},
    "text-only-name-western": {"name": [{"text": "Robert James Harlow"}]},
    "old-and-official": {
        "name": [
            {"use": "old", "family": "Okafor"},
            {"use": "official", "family": "Harlow", "given": ["Robert"]},
        ]
    },
    "anonymous-only": {"name": [{"use": "anonymous", "family": "Doe", "given": ["John"]}]},
    "given-not-strings": {"name": [{"family": "Harlow", "given": [None, 7, ""]}]},
    "year-only": {"birthDate": "1984"},
    "year-month": {"birthDate": "1984-03"},
    "impossible-date": {"birthDate": "1984-02-30"},
    "garbage-date": {"birthDate": "next tuesday"},
    "date-not-a-string": {"birthDate": 19840307},
    "gender-unknown": {"gender": "unknown"},
    "email-only": {"telecom": [{"system": "email", "value": "someone@example.org"}]},
    "placeholder-phone": {"telecom": [{"system": "phone", "value": "000-000-0000"}]},
    "junk-identifiers": {
        "identifier": [None, "x", {"system": 5}, {"type": "SS"}, {"system": US_SSN, "value": "000-00-0000"}]
    },
    "address-junk": {"address": [{"line": "48 Sycamore"}, None, {"postalCode": 60513}]},
}  # fmt: skip


@pytest.mark.parametrize("odd", ODD_PATIENTS.values(), ids=ODD_PATIENTS.keys())
def test_odd_patients_are_read_and_compared_without_crashing(odd: Any) -> None:
    read = demographics(odd)
    for other in (read, demographics(patient())):
        result = score_pair(read, other, "x", DEFAULT_THRESHOLDS)
        assert result.decision in ("match", "possible", "new") and 0.0 <= result.score <= 1.0
        result.explain()
    blocking_keys(read)


def test_odd_patients_are_read_for_what_they_do_say() -> None:
    assert demographics(ODD_PATIENTS["text-only-name"]).family == ("harlow",)
    assert demographics(ODD_PATIENTS["text-only-name"]).given == ("robert",)
    assert demographics(ODD_PATIENTS["text-only-name-western"]).family == ("harlow",)
    assert demographics(ODD_PATIENTS["old-and-official"]).family == ("harlow", "okafor")
    assert demographics(ODD_PATIENTS["anonymous-only"]).family == ()
    for partial in ("year-only", "year-month", "impossible-date"):
        read = demographics(ODD_PATIENTS[partial])
        assert (read.birth_date, read.birth_year) == (None, 1984)
    assert demographics(ODD_PATIENTS["placeholder-phone"]).phones == frozenset()
    assert demographics(ODD_PATIENTS["junk-identifiers"]).ssn_last4 is None
    year_only = compare(from_b(birthDate="1984"), patient())
    assert outcome(year_only, "birthDate") == "same-year"


def test_demographics_does_not_change_the_patient() -> None:
    record = patient()
    before = copy.deepcopy(record)
    demographics(record)
    assert record == before
