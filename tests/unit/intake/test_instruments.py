"""Our shipped Questionnaires: valid FHIR R4, generated from the instrument table, and in agreement
with it (read back independently of the generator)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import (
    AHC_HRSN,
    AUDIT_C,
    CSSRS_SCREENER,
    GAD7,
    INSTRUMENTS,
    PHQ2,
    PHQ9,
    SAFETY,
)
from services.intake.domain.scoring import instrument_for
from services.intake.questionnaires.build import HERE, file_for, rendered
from shared.fhir.validation import validate_resource

LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
LA_CODE = re.compile(r"^LA\d+-\d$")
ids = [i.key for i in INSTRUMENTS]


def shipped(key: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((HERE / f"{key}.json").read_text(encoding="utf-8"))
    return loaded


def by_link_id(questionnaire: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["linkId"]: item for item in questionnaire["item"]}


def ordinal(option: dict[str, Any]) -> float | None:
    values = [e["valueDecimal"] for e in option.get("extension", []) if e["url"] == c.ORDINAL_VALUE]
    return values[0] if values else None


def test_one_questionnaire_file_is_shipped_per_instrument() -> None:
    assert sorted(p.name for p in HERE.glob("*.json")) == sorted(f"{i.key}.json" for i in INSTRUMENTS)


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=ids)
def test_each_questionnaire_file_is_up_to_date_with_the_instrument_table(instrument: Any) -> None:
    assert file_for(instrument).read_text(encoding="utf-8") == rendered(instrument), (
        "regenerate with: python -m services.intake.questionnaires.build"
    )


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=ids)
def test_each_questionnaire_is_valid_fhir_r4(instrument: Any) -> None:
    validate_resource(shipped(instrument.key), "Questionnaire")


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=ids)
def test_each_questionnaire_is_active_with_our_canonical_url_and_the_loinc_panel(instrument: Any) -> None:
    q = shipped(instrument.key)
    assert q["status"] == "active"
    assert q["url"] == f"http://carebridge.example/fhir/Questionnaire/{instrument.key}"
    assert q["version"] == instrument.version
    assert q["code"] == [
        {"system": c.LOINC, "code": instrument.panel.code, "display": instrument.panel.display}
    ]
    assert q["copyright"]
    assert instrument_for(q) is instrument


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=ids)
def test_each_item_uses_the_lhc_forms_link_id_and_the_tables_codes_and_scores(instrument: Any) -> None:
    items = by_link_id(shipped(instrument.key))
    for item in instrument.items:
        question = items[f"/{item.code}"]
        assert question["code"][0]["system"] == c.LOINC
        assert question["code"][0]["code"] == item.code
        assert question["type"] == "choice"
        assert question["required"] is item.required
        options = {o["valueCoding"]["code"]: o for o in question["answerOption"]}
        assert list(options) == [o.code for o in item.options]
        for option in item.options:
            assert options[option.code]["valueCoding"]["system"] == c.LOINC
            assert ordinal(options[option.code]) == option.score


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=ids)
def test_the_total_or_risk_level_item_is_read_only(instrument: Any) -> None:
    total = by_link_id(shipped(instrument.key))[f"/{instrument.total.code}"]
    assert total["readOnly"] is True
    assert total["code"][0]["code"] == instrument.total.code


def test_scored_items_are_required_in_every_questionnaire() -> None:
    for instrument in INSTRUMENTS:
        items = by_link_id(shipped(instrument.key))
        for item in instrument.scored_items:
            assert items[f"/{item.code}"]["required"] is True


def test_the_phq9_difficulty_item_is_not_scored_and_not_required() -> None:
    item = by_link_id(shipped("phq-9"))[f"/{c.PHQ9_DIFFICULTY}"]
    assert item["required"] is False
    assert all(ordinal(o) is None for o in item["answerOption"])
    assert PHQ9.item(c.PHQ9_DIFFICULTY).scored is False  # type: ignore[union-attr]


def test_cssrs_asks_q3_to_q5_only_after_suicidal_thoughts_and_the_timing_only_after_behaviour() -> None:
    items = by_link_id(shipped("cssrs-screener"))
    after_thoughts = [
        {"question": "/93247-5", "operator": "=", "answerCoding": {"system": c.LOINC, "code": "LA33-6"}}
    ]
    for code in ("93248-3", "93249-1", "93250-9"):
        assert items[f"/{code}"]["enableWhen"] == after_thoughts
    assert items["/93269-9"]["enableWhen"] == [
        {"question": "/93267-3", "operator": "=", "answerCoding": {"system": c.LOINC, "code": "LA33-6"}}
    ]
    for code in ("93246-7", "93247-5", "93267-3"):
        assert "enableWhen" not in items[f"/{code}"]
    risk = items["/93374-7"]
    assert [o["valueCoding"]["code"] for o in risk["answerOption"]] == ["LA9194-7", "LA6751-7", "LA9193-9"]


def test_copyright_notes_name_each_instruments_owner() -> None:
    assert "Pfizer" in shipped("phq-9")["copyright"] and "Pfizer" in shipped("gad-7")["copyright"]
    assert "Research Foundation for Mental Hygiene" in shipped("cssrs-screener")["copyright"]
    assert "public domain" in shipped("audit-c")["copyright"]
    assert "Centers for Medicare & Medicaid Services" in shipped("ahc-hrsn")["copyright"]
    assert all("LOINC" in shipped(i.key)["copyright"] for i in INSTRUMENTS)


def test_the_ahc_housing_problems_question_allows_several_answers() -> None:
    assert by_link_id(shipped("ahc-hrsn"))[f"/{c.AHC_HOUSING_PROBLEMS}"]["repeats"] is True


@pytest.mark.parametrize(
    ("instrument", "n_scored", "maximum"),
    [(PHQ9, 9, 27), (PHQ2, 2, 6), (GAD7, 7, 21), (AUDIT_C, 3, 12), (AHC_HRSN, 4, 20), (CSSRS_SCREENER, 0, 0)],
    ids=lambda v: getattr(v, "key", str(v)),
)
def test_the_table_gives_each_instrument_its_published_item_count_and_range(
    instrument: Any, n_scored: int, maximum: int
) -> None:
    assert len(instrument.scored_items) == n_scored
    assert sum(max(o.score for o in i.options) for i in instrument.scored_items) == maximum


@pytest.mark.parametrize("instrument", [PHQ9, GAD7], ids=["phq-9", "gad-7"])
def test_severity_bands_cover_the_whole_range_without_gaps(instrument: Any) -> None:
    bands = instrument.bands
    assert bands[0].low == 0
    assert all(a.high + 1 == b.low for a, b in itertools.pairwise(bands))
    assert bands[-1].high == sum(3 for _ in instrument.scored_items)


def test_phq9_bands_use_the_loinc_ll382_3_answers() -> None:
    assert [(b.low, b.coding.code) for b in PHQ9.bands] == [
        (0, "LA6708-7"),
        (5, "LA6709-5"),
        (10, "LA6710-3"),
        (15, "LA6711-1"),
        (20, "LA6712-9"),
    ]


def test_the_ahc_core_has_ten_questions_in_five_domains_and_four_safety_questions_scored_1_to_5() -> None:
    assert len(AHC_HRSN.items) == 10
    assert {i.domain for i in AHC_HRSN.items} == {"housing", "food", "transportation", "utilities", SAFETY}
    safety = [i for i in AHC_HRSN.items if i.domain == SAFETY]
    assert [i.code for i in safety] == ["95618-5", "95617-7", "95616-9", "95615-1"]
    assert all([o.score for o in i.options] == [1, 2, 3, 4, 5] for i in safety)
    assert {i.code for i in AHC_HRSN.items} >= {"88122-7", "88123-5"}  # the Hunger Vital Sign


def test_every_code_in_the_table_is_a_well_formed_loinc_code() -> None:
    for instrument in INSTRUMENTS:
        assert LOINC_CODE.match(instrument.panel.code)
        assert len({i.code for i in instrument.items}) == len(instrument.items)
        for item in instrument.items:
            assert LOINC_CODE.match(item.code)
            assert all(LA_CODE.match(o.code) for o in item.options)
