"""QuestionnaireResponse against its Questionnaire (issue 5): corpus Questionnaires plus one small
synthetic Questionnaire per R4 rule."""

from __future__ import annotations

import json
import timeit
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.intake.domain.responses import (
    QuestionnaireIndex,
    ResponseProblem,
    check_response,
    index_questionnaire,
    questionnaire_reference,
    response_problems,
)
from shared import errors
from tests.corpus import CORPUS

QUESTIONNAIRES = CORPUS / "questionnaires"
LOINC = "http://loinc.org"
URL = "http://example.org/Questionnaire/test"


def corpus_questionnaire(name: str) -> dict[str, Any]:
    return json.loads((QUESTIONNAIRES / name).read_text())


def corpus_files(prefix: str = "") -> list[Path]:
    return sorted(QUESTIONNAIRES.glob(f"{prefix}*.json"))


# --- Building responses --------------------------------------------------------------------------

SAMPLE_ANSWERS: dict[str, dict[str, Any]] = {
    "boolean": {"valueBoolean": True},
    "decimal": {"valueDecimal": 3},
    "integer": {"valueInteger": 2},
    "date": {"valueDate": "2024-05-01"},
    "dateTime": {"valueDateTime": "2024-05-01T10:00:00Z"},
    "time": {"valueTime": "10:30:00"},
    "string": {"valueString": "free text"},
    "text": {"valueString": "free text"},
    "url": {"valueUri": "http://example.org"},
}


def first_answer(item: dict[str, Any], questionnaire: dict[str, Any]) -> dict[str, Any]:
    """A valid answer: the first option, the first concept of a contained ValueSet, or a sample."""
    if item.get("answerOption"):
        option = item["answerOption"][0]
        key = next(k for k in option if k.startswith("value"))
        value = dict(option[key]) if key == "valueCoding" else option[key]
        if key == "valueCoding" and "system" not in value:
            value["system"] = LOINC  # SOURCES.md: the uwcirg options leave out http://loinc.org
        return {key: value}
    if item.get("answerValueSet", "").startswith("#"):
        valueset = next(c for c in questionnaire["contained"] if c["id"] == item["answerValueSet"][1:])
        include = valueset["compose"]["include"][0]
        return {"valueCoding": {"system": include["system"], "code": include["concept"][0]["code"]}}
    return dict(SAMPLE_ANSWERS[item["type"]])


def answer_items(items: list[dict[str, Any]], questionnaire: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if item["type"] == "display":
            continue
        entry: dict[str, Any] = {"linkId": item["linkId"]}
        children = answer_items(item.get("item", []), questionnaire)
        if item["type"] == "group":
            entry["item"] = children
        else:
            answer = first_answer(item, questionnaire)
            if children:
                answer["item"] = children
            entry["answer"] = [answer]
        out.append(entry)
    return out


def complete_response(questionnaire: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire.get("url") or URL,
        "status": "completed",
        "item": answer_items(questionnaire.get("item", []), questionnaire),
    }


def questionnaire(*items: Any, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Questionnaire", "url": URL, "status": "active", "item": list(items), **extra}


def question(link_id: str, item_type: str = "integer", **extra: Any) -> dict[str, Any]:
    return {"linkId": link_id, "type": item_type, "text": f"Question {link_id}", **extra}


def response(*items: Any, status: str = "completed") -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": URL,
        "status": status,
        "item": list(items),
    }


def answered(link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": list(answers)}


def problems_of(q: dict[str, Any], r: Any) -> list[tuple[str | None, str, str]]:
    return [(p.link_id, p.code, p.expression) for p in response_problems(q, r)]


def coding(code: str, system: str | None = LOINC) -> dict[str, Any]:
    return {"valueCoding": {"code": code, **({"system": system} if system else {})}}


PHQ9 = corpus_questionnaire("phq9.lhncbc-lforms.R4.json")
PHQ9_ITEMS = [i["linkId"] for i in PHQ9["item"]]


# --- Corpus ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_a_complete_response_built_from_each_corpus_questionnaire_fits(path: Path) -> None:
    q = json.loads(path.read_text())
    assert response_problems(q, complete_response(q)) == []
    check_response(index_questionnaire(q), complete_response(q))


def first_required_top_level_question(q: dict[str, Any]) -> tuple[int, int | None, str] | None:
    """(item index, child index or None, linkId) of the first required question in the response."""
    answered_items = [i for i in q["item"] if i["type"] != "display"]
    for i, item in enumerate(answered_items):
        if item["type"] != "group" and item.get("required"):
            return i, None, item["linkId"]
        children = [c for c in item.get("item", []) if c["type"] != "display"]
        if item["type"] == "group" and children and children[0].get("required"):
            return i, 0, children[0]["linkId"]
    return None


SCREENERS_WITH_REQUIRED_ITEMS = [
    p
    for p in corpus_files("phq9") + corpus_files("gad7") + corpus_files("us-core.Questionnaire-phq-9")
    if first_required_top_level_question(json.loads(p.read_text()))
]


def test_three_corpus_screeners_mark_their_items_required() -> None:
    assert [p.name for p in SCREENERS_WITH_REQUIRED_ITEMS] == [
        "phq9.lhncbc-lforms.R4.json",
        "gad7.stanford-researchkitonfhir.json",
        "us-core.Questionnaire-phq-9-example.json",
    ]


@pytest.mark.parametrize("path", SCREENERS_WITH_REQUIRED_ITEMS, ids=lambda p: p.name)
def test_a_corpus_screener_response_missing_one_required_item_is_refused(path: Path) -> None:
    q = json.loads(path.read_text())
    r = complete_response(q)
    found = first_required_top_level_question(q)
    assert found is not None
    item, child, missing = found
    if child is None:
        del r["item"][item]
    else:
        del r["item"][item]["item"][child]
    assert [(p.link_id, p.code, p.malformed) for p in response_problems(q, r)] == [
        (missing, "required", False)
    ]


def test_a_phq9_response_validates_in_well_under_a_millisecond() -> None:
    index = index_questionnaire(PHQ9)
    r = complete_response(PHQ9)
    runs = 200
    best = min(timeit.repeat(lambda: response_problems(index, r), number=runs, repeat=5)) / runs
    assert best < 0.0005  # about 0.15 ms on a shared CI core


def test_a_loinc_answer_matches_a_uwcirg_option_that_leaves_out_the_system() -> None:
    q = corpus_questionnaire("phq9.uwcirg-asbi-screening-app.json")
    r = complete_response(q)
    r["item"][0]["answer"] = [coding("LA6570-1")]
    assert response_problems(q, r) == []
    r["item"][0]["answer"] = [coding("LA6570-1", system=None)]
    assert response_problems(q, r) == []


def test_an_answer_without_the_system_of_a_loinc_option_is_not_that_option() -> None:
    r = complete_response(PHQ9)
    r["item"][0]["answer"] = [coding("LA6570-1", system=None)]
    [problem] = response_problems(PHQ9, r)
    assert problem.code == "code-invalid"
    assert problem.expression == "QuestionnaireResponse.item[0].answer[0].valueCoding"


def test_a_code_outside_a_contained_valueset_is_refused() -> None:
    q = corpus_questionnaire("phq9.stanford-researchkitonfhir.json")
    r = complete_response(q)
    r["item"][0]["item"][2]["answer"] = [coding("Sometimes", "http://hl7.org/fhir/uv/sdc/CodeSystem/CSPHQ9")]
    [problem] = response_problems(q, r)
    assert (problem.link_id, problem.code) == ("H1/T1/Q3", "code-invalid")
    assert "ValueSet #VSPHQ9" in problem.message
    assert problem.expression == "QuestionnaireResponse.item[0].item[2].answer[0].valueCoding"


def test_a_repeating_prapare_question_takes_several_answers() -> None:
    q = corpus_questionnaire("us-core.Questionnaire-prapare-example.json")
    r = complete_response(q)
    race = r["item"][0]["item"][0]["item"][1]
    assert race["linkId"] == "/93043-8/32624-9"
    options = q["item"][0]["item"][0]["item"][1]["answerOption"]
    race["answer"] = [{"valueCoding": o["valueCoding"]} for o in options[:3]]
    assert response_problems(q, r) == []


# --- linkIds, nesting and order --------------------------------------------------------------------


def test_an_unknown_link_id_is_named_in_the_problem() -> None:
    q = questionnaire(question("a"))
    [problem] = response_problems(
        q, response(answered("a", {"valueInteger": 1}), answered("zz", {"valueInteger": 1}))
    )
    assert (problem.link_id, problem.code, problem.malformed) == ("zz", "structure", True)
    assert problem.expression == "QuestionnaireResponse.item[1]"
    assert "'zz' is not in the Questionnaire" in problem.message


def test_an_item_at_the_wrong_level_says_where_the_questionnaire_places_it() -> None:
    q = questionnaire({"linkId": "g", "type": "group", "item": [question("a")]})
    [problem] = response_problems(q, response(answered("a", {"valueInteger": 1})))
    assert problem.link_id == "a"
    assert "under 'g'" in problem.message


def test_items_out_of_the_questionnaires_order_are_a_structure_problem() -> None:
    q = questionnaire(question("a"), question("b"))
    r = response(answered("b", {"valueInteger": 1}), answered("a", {"valueInteger": 1}))
    assert problems_of(q, r) == [("a", "structure", "QuestionnaireResponse.item[1]")]


def test_a_group_with_answers_is_a_structure_problem() -> None:
    q = questionnaire({"linkId": "g", "type": "group", "text": "Section", "item": [question("a")]})
    r = response(
        {"linkId": "g", "answer": [{"valueInteger": 1}], "item": [answered("a", {"valueInteger": 1})]}
    )
    [problem] = response_problems(q, r)
    assert (problem.code, problem.expression, problem.malformed) == (
        "structure",
        "QuestionnaireResponse.item[0].answer",
        True,
    )
    assert "Item 'g' (\"Section\") is a group" in problem.message


def test_a_display_item_with_an_answer_is_a_structure_problem() -> None:
    q = questionnaire({"linkId": "intro", "type": "display", "text": "Read this"}, question("a"))
    r = response(answered("intro", {"valueString": "x"}), answered("a", {"valueInteger": 1}))
    assert problems_of(q, r) == [("intro", "structure", "QuestionnaireResponse.item[0].answer")]


def test_a_child_of_a_question_is_validated_under_its_answer() -> None:
    q = questionnaire(question("smokes", "boolean", item=[question("per-day")]))
    r = response(
        {
            "linkId": "smokes",
            "answer": [{"valueBoolean": True, "item": [answered("per-day", {"valueString": "ten"})]}],
        }
    )
    assert problems_of(q, r) == [
        ("per-day", "value", "QuestionnaireResponse.item[0].answer[0].item[0].answer[0].valueString")
    ]


def test_a_child_of_a_question_placed_under_item_rather_than_answer_item_is_refused() -> None:
    q = questionnaire(question("smokes", "boolean", item=[question("per-day")]))
    r = response(
        {
            "linkId": "smokes",
            "answer": [{"valueBoolean": True}],
            "item": [answered("per-day", {"valueInteger": 1})],
        }
    )
    assert problems_of(q, r) == [("smokes", "structure", "QuestionnaireResponse.item[0].item")]


def test_a_required_child_is_required_under_each_answer_of_its_parent() -> None:
    q = questionnaire(question("meds", "string", repeats=True, item=[question("dose", required=True)]))
    r = response(
        {
            "linkId": "meds",
            "answer": [
                {"valueString": "a", "item": [answered("dose", {"valueInteger": 1})]},
                {"valueString": "b"},
            ],
        }
    )
    assert problems_of(q, r) == [
        ("dose", "required", "QuestionnaireResponse.item[0].answer[1].item.where(linkId='dose')")
    ]


# --- Answer types ----------------------------------------------------------------------------------


def test_value_string_for_a_choice_item_is_a_wrong_answer_type() -> None:
    r = complete_response(PHQ9)
    r["item"][3]["answer"] = [{"valueString": "Several days"}]
    [problem] = response_problems(PHQ9, r)
    assert (problem.link_id, problem.code, problem.malformed) == ("/44254-1", "value", True)
    assert problem.expression == "QuestionnaireResponse.item[3].answer[0].valueString"
    assert "valueString does not fit a choice item, which takes valueCoding" in problem.message
    assert "Feeling tired or having little energy" in problem.message


@pytest.mark.parametrize(
    ("item_type", "answer"),
    [
        ("integer", {"valueInteger": "3"}),
        ("integer", {"valueInteger": True}),
        ("integer", {"valueInteger": 3.5}),
        ("integer", {"valueInteger": 2**31}),
        ("integer", {"valueDecimal": 3}),
        ("decimal", {"valueDecimal": "3.5"}),
        ("decimal", {"valueDecimal": False}),
        ("boolean", {"valueBoolean": "true"}),
        ("date", {"valueDate": "01/05/2024"}),
        ("date", {"valueDate": "2024-02-30"}),
        ("date", {"valueDate": "2024-05-01T10:00:00Z"}),
        ("dateTime", {"valueDateTime": "2024-05-01T10:00"}),
        ("dateTime", {"valueDateTime": "2024-05-01T10:00:00"}),
        ("time", {"valueTime": "25:00:00"}),
        ("string", {"valueString": ""}),
        ("string", {"valueString": 7}),
        ("url", {"valueUri": "http://a b"}),
        ("choice", {"valueCoding": "LA6568-5"}),
        ("choice", {"valueCoding": {"display": "Not at all"}}),
        ("quantity", {"valueQuantity": {"unit": "kg"}}),
        ("reference", {"valueReference": {}}),
        ("attachment", {"valueAttachment": {}}),
    ],
)
def test_a_value_of_the_wrong_type_or_json_shape_is_refused_as_malformed(
    item_type: str, answer: dict[str, Any]
) -> None:
    q = questionnaire(question("q", item_type))
    [problem] = response_problems(q, response(answered("q", answer)))
    assert (problem.link_id, problem.code, problem.malformed) == ("q", "value", True)
    assert problem.expression.startswith("QuestionnaireResponse.item[0].answer[0].value")


@pytest.mark.parametrize(
    ("item_type", "answer"),
    [
        ("decimal", {"valueDecimal": 3}),
        ("decimal", {"valueDecimal": -0.25}),
        ("date", {"valueDate": "2024"}),
        ("date", {"valueDate": "2024-02"}),
        ("dateTime", {"valueDateTime": "2024-05-01"}),
        ("dateTime", {"valueDateTime": "2024-05-01T10:00:00.123+02:00"}),
        ("time", {"valueTime": "23:59:60"}),
        ("open-choice", {"valueString": "something else"}),
        ("open-choice", {"valueCoding": {"system": LOINC, "code": "LA1"}}),
        ("quantity", {"valueQuantity": {"value": 70, "unit": "kg"}}),
        ("reference", {"valueReference": {"reference": "Patient/1"}}),
        ("attachment", {"valueAttachment": {"contentType": "image/png"}}),
    ],
)
def test_a_value_of_the_right_type_is_accepted(item_type: str, answer: dict[str, Any]) -> None:
    q = questionnaire(question("q", item_type))
    assert response_problems(q, response(answered("q", answer))) == []


def test_an_answer_not_among_the_options_names_the_code() -> None:
    r = complete_response(PHQ9)
    r["item"][1]["answer"] = [coding("LA9999-9")]
    [problem] = response_problems(PHQ9, r)
    assert (problem.link_id, problem.code, problem.malformed) == ("/44255-8", "code-invalid", False)
    assert "http://loinc.org|LA9999-9 is not one of its answerOptions" in problem.message


def test_integer_options_take_only_those_integers() -> None:
    q = questionnaire(question("q", "choice", answerOption=[{"valueInteger": 0}, {"valueInteger": 1}]))
    assert response_problems(q, response(answered("q", {"valueInteger": 1}))) == []
    assert problems_of(q, response(answered("q", {"valueInteger": 7}))) == [
        ("q", "code-invalid", "QuestionnaireResponse.item[0].answer[0].valueInteger")
    ]


def test_open_choice_takes_free_text_beside_its_string_options_but_not_an_unlisted_coding() -> None:
    options = [{"valueString": "red"}, {"valueCoding": {"system": "urn:c", "code": "blue"}}]
    q = questionnaire(question("q", "open-choice", answerOption=options))
    assert response_problems(q, response(answered("q", {"valueString": "teal"}))) == []
    assert problems_of(q, response(answered("q", coding("green", "urn:c")))) == [
        ("q", "code-invalid", "QuestionnaireResponse.item[0].answer[0].valueCoding")
    ]


def test_a_choice_bound_to_an_external_valueset_accepts_any_coding() -> None:
    q = questionnaire(question("q", "choice", answerValueSet="http://example.org/ValueSet/anything"))
    assert response_problems(q, response(answered("q", coding("whatever", "urn:x")))) == []


def test_a_contained_valueset_with_a_filter_cannot_be_listed_so_any_coding_is_accepted() -> None:
    valueset = {
        "resourceType": "ValueSet",
        "id": "vs",
        "compose": {"include": [{"system": "urn:s", "filter": [{}]}]},
    }
    q = questionnaire(question("q", "choice", answerValueSet="#vs"), contained=[valueset])
    assert response_problems(q, response(answered("q", coding("any", "urn:s")))) == []


def test_a_contained_valueset_expansion_lists_the_allowed_codes() -> None:
    expansion = {
        "contains": [{"system": "urn:s", "code": "a", "contains": [{"system": "urn:s", "code": "b"}]}]
    }
    q = questionnaire(
        question("q", "choice", answerValueSet="#vs"),
        contained=[{"resourceType": "ValueSet", "id": "vs", "expansion": expansion}],
    )
    assert response_problems(q, response(answered("q", coding("b", "urn:s")))) == []
    assert [p.code for p in response_problems(q, response(answered("q", coding("c", "urn:s"))))] == [
        "code-invalid"
    ]


# --- Limits: maxLength, minValue, maxValue -----------------------------------------------------------


def bounded(item_type: str, low: dict[str, Any], high: dict[str, Any]) -> dict[str, Any]:
    extension = [
        {"url": "http://hl7.org/fhir/StructureDefinition/minValue", **low},
        {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", **high},
    ]
    return questionnaire(question("q", item_type, extension=extension))


@pytest.mark.parametrize(
    ("item_type", "low", "high", "answer", "problem"),
    [
        ("integer", {"valueInteger": 0}, {"valueInteger": 10}, {"valueInteger": 0}, None),
        ("integer", {"valueInteger": 0}, {"valueInteger": 10}, {"valueInteger": 11}, "above the maxValue 10"),
        ("integer", {"valueInteger": 0}, {"valueInteger": 10}, {"valueInteger": -1}, "below the minValue 0"),
        (
            "decimal",
            {"valueDecimal": 0.5},
            {"valueDecimal": 2.5},
            {"valueDecimal": 2.51},
            "above the maxValue 2.5",
        ),
        ("decimal", {"valueDecimal": 0.5}, {"valueDecimal": 2.5}, {"valueDecimal": 1}, None),
        (
            "date",
            {"valueDate": "2000-01-01"},
            {"valueDate": "2030-12-31"},
            {"valueDate": "1999-12-31"},
            "below",
        ),
        ("date", {"valueDate": "2000-01-01"}, {"valueDate": "2030-12-31"}, {"valueDate": "2031"}, "above"),
        ("date", {"valueDate": "2000-01-01"}, {"valueDate": "2030-12-31"}, {"valueDate": "2000"}, None),
    ],
)
def test_min_and_max_value_extensions_bound_the_answer(
    item_type: str, low: dict[str, Any], high: dict[str, Any], answer: dict[str, Any], problem: str | None
) -> None:
    found = response_problems(bounded(item_type, low, high), response(answered("q", answer)))
    if problem is None:
        assert found == []
    else:
        [only] = found
        assert (only.code, only.malformed) == ("value", False)
        assert problem in only.message


def test_a_string_longer_than_max_length_is_refused_without_echoing_it() -> None:
    q = questionnaire(question("q", "string", maxLength=5))
    assert response_problems(q, response(answered("q", {"valueString": "12345"}))) == []
    [problem] = response_problems(q, response(answered("q", {"valueString": "secret diary"})))
    assert (problem.code, problem.malformed) == ("value", False)
    assert "maxLength of 5" in problem.message
    assert "secret" not in problem.message


# --- required --------------------------------------------------------------------------------------


def test_a_required_item_missing_from_a_completed_response_is_refused() -> None:
    q = questionnaire(question("a", required=True), question("b"))
    assert problems_of(q, response(answered("b", {"valueInteger": 1}))) == [
        ("a", "required", "QuestionnaireResponse.item.where(linkId='a')")
    ]


@pytest.mark.parametrize(
    ("status", "enforced"), [("in-progress", False), ("stopped", False), ("amended", True)]
)
def test_required_binds_only_a_definitive_response(status: str, enforced: bool) -> None:
    q = questionnaire(question("a", required=True))
    assert bool(response_problems(q, response(status=status))) is enforced


def test_a_required_question_present_without_an_answer_is_refused_at_that_item() -> None:
    q = questionnaire(question("a", required=True))
    assert problems_of(q, response({"linkId": "a"})) == [("a", "required", "QuestionnaireResponse.item[0]")]


def test_a_required_group_needs_one_answered_question() -> None:
    q = questionnaire(
        {"linkId": "g", "type": "group", "required": True, "item": [question("a"), question("b")]}
    )
    assert [
        p.link_id for p in response_problems(q, response({"linkId": "g", "item": [{"linkId": "a"}]}))
    ] == ["g"]
    assert response_problems(q, response({"linkId": "g", "item": [answered("b", {"valueInteger": 1})]})) == []


def test_a_required_question_in_an_absent_optional_group_is_not_required() -> None:
    q = questionnaire({"linkId": "g", "type": "group", "item": [question("a", required=True)]}, question("b"))
    assert response_problems(q, response(answered("b", {"valueInteger": 1}))) == []


def test_a_repetition_of_a_group_is_checked_for_its_own_required_items() -> None:
    q = questionnaire(
        {
            "linkId": "g",
            "type": "group",
            "repeats": True,
            "item": [question("a", required=True), question("b")],
        }
    )
    r = response(
        {"linkId": "g", "item": [answered("a", {"valueInteger": 1})]},
        {"linkId": "g", "item": [answered("b", {"valueInteger": 1})]},
    )
    assert problems_of(q, r) == [("a", "required", "QuestionnaireResponse.item[1].item.where(linkId='a')")]


# --- repeats ---------------------------------------------------------------------------------------


def test_two_answers_to_a_non_repeating_question_are_refused() -> None:
    q = questionnaire(question("a"))
    r = response(answered("a", {"valueInteger": 1}, {"valueInteger": 2}))
    assert problems_of(q, r) == [("a", "business-rule", "QuestionnaireResponse.item[0].answer[1]")]


def test_a_question_listed_twice_breaks_qrs_2_even_when_it_repeats() -> None:
    q = questionnaire(question("a", repeats=True))
    r = response(answered("a", {"valueInteger": 1}), answered("a", {"valueInteger": 2}))
    [problem] = response_problems(q, r)
    assert (problem.code, problem.expression, problem.malformed) == (
        "structure",
        "QuestionnaireResponse.item[1]",
        True,
    )


def test_a_non_repeating_group_given_twice_is_refused_but_a_repeating_one_is_not() -> None:
    group = {"linkId": "g", "type": "group", "item": [question("a")]}
    instance = {"linkId": "g", "item": [answered("a", {"valueInteger": 1})]}
    assert problems_of(questionnaire(group), response(instance, instance)) == [
        ("g", "business-rule", "QuestionnaireResponse.item[1]")
    ]
    assert response_problems(questionnaire({**group, "repeats": True}), response(instance, instance)) == []


# --- enableWhen ------------------------------------------------------------------------------------


def gated(
    operator: str, answer: dict[str, Any], trigger_type: str = "integer", **extra: Any
) -> dict[str, Any]:
    condition = {"question": "trigger", "operator": operator, **answer}
    return questionnaire(
        question("trigger", trigger_type, repeats=True),
        question("gated", "string", enableWhen=[condition], **extra),
    )


def with_trigger(*answers: dict[str, Any]) -> dict[str, Any]:
    items = [answered("trigger", *answers)] if answers else []
    return response(*items, answered("gated", {"valueString": "x"}))


@pytest.mark.parametrize(
    ("operator", "expected", "given", "enabled"),
    [
        ("exists", {"answerBoolean": True}, [{"valueInteger": 1}], True),
        ("exists", {"answerBoolean": True}, [], False),
        ("exists", {"answerBoolean": False}, [], True),
        ("exists", {"answerBoolean": False}, [{"valueInteger": 1}], False),
        ("=", {"answerInteger": 2}, [{"valueInteger": 2}], True),
        ("=", {"answerInteger": 2}, [{"valueInteger": 3}], False),
        ("=", {"answerInteger": 2}, [{"valueInteger": 1}, {"valueInteger": 2}], True),
        ("=", {"answerInteger": 2}, [], False),
        ("!=", {"answerInteger": 2}, [{"valueInteger": 3}], True),
        ("!=", {"answerInteger": 2}, [{"valueInteger": 2}], False),
        ("!=", {"answerInteger": 2}, [], True),  # R4: "no answer has a value that is equal"
        (">", {"answerInteger": 2}, [{"valueInteger": 3}], True),
        (">", {"answerInteger": 2}, [{"valueInteger": 2}], False),
        ("<", {"answerInteger": 2}, [{"valueInteger": 1}], True),
        ("<", {"answerInteger": 2}, [{"valueInteger": 2}], False),
        (">=", {"answerInteger": 2}, [{"valueInteger": 2}], True),
        (">=", {"answerInteger": 2}, [{"valueInteger": 1}], False),
        ("<=", {"answerInteger": 2}, [{"valueInteger": 2}], True),
        ("<=", {"answerInteger": 2}, [{"valueInteger": 3}], False),
        (">", {"answerDecimal": 1.5}, [{"valueInteger": 2}], True),
        (">", {"answerInteger": 2}, [], False),
    ],
)
def test_enable_when_operators_decide_whether_an_item_may_be_answered(
    operator: str, expected: dict[str, Any], given: list[dict[str, Any]], enabled: bool
) -> None:
    found = problems_of(gated(operator, expected), with_trigger(*given))
    assert found == (
        [] if enabled else [("gated", "business-rule", f"QuestionnaireResponse.item[{1 if given else 0}]")]
    )


@pytest.mark.parametrize(
    ("expected", "given", "enabled"),
    [
        ({"system": LOINC, "code": "LA33-6"}, {"system": LOINC, "code": "LA33-6"}, True),
        ({"system": LOINC, "code": "LA33-6"}, {"system": "urn:other", "code": "LA33-6"}, False),
        ({"system": LOINC, "code": "LA33-6"}, {"code": "LA33-6"}, False),
        ({"code": "LA33-6"}, {"system": LOINC, "code": "LA33-6"}, True),
        ({"code": "LA33-6"}, {"system": LOINC, "code": "LA32-8"}, False),
    ],
)
def test_enable_when_compares_codings_by_system_and_code_or_code_alone(
    expected: dict[str, Any], given: dict[str, Any], enabled: bool
) -> None:
    q = gated("=", {"answerCoding": expected}, trigger_type="choice")
    assert (response_problems(q, with_trigger({"valueCoding": given})) == []) is enabled


@pytest.mark.parametrize(
    ("behavior", "given", "enabled"),
    [("all", 5, True), ("all", 1, False), ("any", 1, True), ("any", -1, False)],
)
def test_enable_behavior_all_needs_every_condition_and_any_needs_one(
    behavior: str, given: int, enabled: bool
) -> None:
    conditions = [
        {"question": "trigger", "operator": ">", "answerInteger": 0},
        {"question": "trigger", "operator": ">", "answerInteger": 3},
    ]
    q = questionnaire(
        question("trigger"), question("gated", "string", enableWhen=conditions, enableBehavior=behavior)
    )
    assert (response_problems(q, with_trigger({"valueInteger": given})) == []) is enabled


def test_several_conditions_without_enable_behavior_must_all_hold() -> None:
    conditions = [
        {"question": "trigger", "operator": ">", "answerInteger": 0},
        {"question": "trigger", "operator": ">", "answerInteger": 3},
    ]
    q = questionnaire(question("trigger"), question("gated", "string", enableWhen=conditions))
    assert [p.link_id for p in response_problems(q, with_trigger({"valueInteger": 1}))] == ["gated"]


def test_an_answer_to_a_disabled_item_is_refused_as_a_business_rule() -> None:
    q = gated("=", {"answerInteger": 2})
    [problem] = response_problems(q, with_trigger({"valueInteger": 3}))
    assert (problem.link_id, problem.code, problem.malformed) == ("gated", "business-rule", False)
    assert "enableWhen" in problem.message
    with pytest.raises(errors.BusinessRuleViolation) as raised:
        check_response(q, with_trigger({"valueInteger": 3}))
    assert errors.http_status(raised.value) == 422


def test_a_disabled_required_item_is_not_required() -> None:
    q = gated("=", {"answerInteger": 2}, required=True)
    assert response_problems(q, response(answered("trigger", {"valueInteger": 3}))) == []
    assert [p.code for p in response_problems(q, response(answered("trigger", {"valueInteger": 2})))] == [
        "required"
    ]


def test_a_disabled_group_is_reported_once_not_for_each_of_its_questions() -> None:
    group = {
        "linkId": "g",
        "type": "group",
        "enableWhen": [{"question": "t", "operator": "=", "answerBoolean": True}],
        "item": [question("a"), question("b")],
    }
    q = questionnaire(question("t", "boolean"), group)
    r = response(
        answered("t", {"valueBoolean": False}),
        {"linkId": "g", "item": [answered("a", {"valueInteger": 1}), answered("b", {"valueInteger": 1})]},
    )
    assert problems_of(q, r) == [("g", "business-rule", "QuestionnaireResponse.item[1]")]


def test_enable_when_reads_an_answer_to_a_disabled_question_as_no_answer() -> None:
    q = questionnaire(
        question("a", "boolean"),
        question("b", "boolean", enableWhen=[{"question": "a", "operator": "=", "answerBoolean": True}]),
        question("c", "string", enableWhen=[{"question": "b", "operator": "exists", "answerBoolean": True}]),
    )
    r = response(
        answered("a", {"valueBoolean": False}),
        answered("b", {"valueBoolean": True}),
        answered("c", {"valueString": "x"}),
    )
    assert [p.link_id for p in response_problems(q, r)] == ["b", "c"]


def test_enable_when_inside_a_repeating_group_reads_its_own_repetition() -> None:
    inner = [
        question("has-dose", "boolean"),
        question("dose", enableWhen=[{"question": "has-dose", "operator": "=", "answerBoolean": True}]),
    ]
    q = questionnaire({"linkId": "med", "type": "group", "repeats": True, "item": inner})
    r = response(
        {
            "linkId": "med",
            "item": [answered("has-dose", {"valueBoolean": True}), answered("dose", {"valueInteger": 2})],
        },
        {
            "linkId": "med",
            "item": [answered("has-dose", {"valueBoolean": False}), answered("dose", {"valueInteger": 2})],
        },
    )
    assert problems_of(q, r) == [("dose", "business-rule", "QuestionnaireResponse.item[1].item[1]")]


def test_a_child_enabled_by_its_parent_questions_answer() -> None:
    child = question(
        "per-day", required=True, enableWhen=[{"question": "smokes", "operator": "=", "answerBoolean": True}]
    )
    q = questionnaire(question("smokes", "boolean", item=[child]))
    assert response_problems(q, response(answered("smokes", {"valueBoolean": False}))) == []
    assert problems_of(q, response(answered("smokes", {"valueBoolean": True}))) == [
        ("per-day", "required", "QuestionnaireResponse.item[0].answer[0].item.where(linkId='per-day')")
    ]


def test_an_item_enabled_by_an_sdc_expression_is_neither_required_nor_refused() -> None:
    expression = {
        "url": "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-enableWhenExpression",
        "valueExpression": {"language": "text/fhirpath", "expression": "false"},
    }
    q = questionnaire(question("total", "decimal", required=True, extension=[expression]))
    assert response_problems(q, response()) == []
    assert response_problems(q, response(answered("total", {"valueDecimal": 4}))) == []


def test_circular_or_broken_enable_when_neither_crashes_nor_refuses() -> None:
    q = questionnaire(
        question(
            "a", enableWhen=[{"question": "b", "operator": "exists", "answerBoolean": True}], required=True
        ),
        question(
            "b", enableWhen=[{"question": "a", "operator": "exists", "answerBoolean": True}], required=True
        ),
        question(
            "c", enableWhen=[{"question": "nowhere", "operator": "=", "answerInteger": 1}], required=True
        ),
        question("d", enableWhen=[{"question": "a", "operator": "~", "answerInteger": 1}]),
    )
    r = response(
        answered("a", {"valueInteger": 1}),
        answered("b", {"valueInteger": 1}),
        answered("d", {"valueInteger": 1}),
    )
    assert response_problems(q, r) == []


# --- Junk ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expression"),
    [
        (
            {
                "resourceType": "QuestionnaireResponse",
                "questionnaire": URL,
                "status": "completed",
                "item": {"linkId": "a"},
            },
            "QuestionnaireResponse.item",
        ),
        (response("not an item"), "QuestionnaireResponse.item[0]"),
        (response({"answer": [{"valueInteger": 1}]}), "QuestionnaireResponse.item[0]"),
        (response({"linkId": 7}), "QuestionnaireResponse.item[0]"),
        (response({"linkId": "a", "answer": {"valueInteger": 1}}), "QuestionnaireResponse.item[0].answer"),
        (response({"linkId": "a", "answer": [3]}), "QuestionnaireResponse.item[0].answer[0]"),
        (response({"linkId": "a", "answer": [{}]}), "QuestionnaireResponse.item[0].answer[0]"),
        (
            response({"linkId": "a", "answer": [{"valueInteger": 1, "valueString": "1"}]}),
            "QuestionnaireResponse.item[0].answer[0]",
        ),
        (
            response({"linkId": "a", "answer": [{"valueInteger": 1, "item": "x"}]}),
            "QuestionnaireResponse.item[0].answer[0].item",
        ),
        ({**response(), "resourceType": "Patient"}, "QuestionnaireResponse"),
        (
            {"resourceType": "QuestionnaireResponse", "status": "completed"},
            "QuestionnaireResponse.questionnaire",
        ),
        ({"resourceType": "QuestionnaireResponse", "questionnaire": URL}, "QuestionnaireResponse.status"),
        ({**response(), "status": "done"}, "QuestionnaireResponse.status"),
        ([], "QuestionnaireResponse"),
    ],
)
def test_junk_shapes_are_malformed_problems_not_exceptions(given: Any, expression: str) -> None:
    q = questionnaire(question("a"))
    found = response_problems(q, given)
    assert found and all(p.malformed for p in found)
    assert found[0].expression == expression
    with pytest.raises(errors.InvalidInput):
        check_response(q, given)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.text(max_size=5)
        | st.sampled_from(["a", "g", "item", "answer"]),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["linkId", "item", "answer", "valueInteger", "valueCoding", "status"]),
                inner,
                max_size=4,
            )
        ),
        max_leaves=20,
    )
)
def test_any_json_yields_problems_and_never_another_exception(junk: Any) -> None:
    q = questionnaire(
        {
            "linkId": "g",
            "type": "group",
            "item": [question("a", enableWhen=[{"question": "b", "operator": ">", "answerInteger": 1}])],
        },
        question("b", "choice", answerOption=[{"valueInteger": 1}]),
    )
    r = response(*junk) if isinstance(junk, list) else junk
    assert all(isinstance(p, ResponseProblem) for p in response_problems(q, r))


def test_a_questionnaire_that_is_not_one_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput):
        index_questionnaire({"resourceType": "Patient"})


def test_junk_inside_a_questionnaire_is_skipped_when_indexing() -> None:
    q = questionnaire("junk", {"type": "integer"}, question("a"), question("a", "string"), {"linkId": "b"})
    index = index_questionnaire(q)
    assert isinstance(index, QuestionnaireIndex)
    assert list(index.by_link_id) == ["a", "b"]
    assert index.by_link_id["a"].type == "integer"


# --- check_response and questionnaire_reference ----------------------------------------------------


def test_a_fitting_response_passes_check_response() -> None:
    check_response(PHQ9, complete_response(PHQ9))


def test_check_response_raises_invalid_input_pointing_at_the_item_and_counting_the_rest() -> None:
    r = complete_response(PHQ9)
    r["item"][0]["answer"] = [coding("LA9999-9")]  # 422 problem, first in document order
    r["item"][2]["answer"] = [{"valueString": "often"}]  # malformed: chosen to lead
    del r["item"][4]  # required missing
    with pytest.raises(errors.InvalidInput) as raised:
        check_response(PHQ9, r)
    error = raised.value
    assert errors.http_status(error) == 400
    assert error.expression == ["QuestionnaireResponse.item[2].answer[0].valueString"]
    assert error.issue_code == "value"
    assert "/44259-0" in error.diagnostics
    assert error.diagnostics.endswith("and 2 more problems.")
    outcome = errors.operation_outcome(error)
    assert outcome["issue"][0]["expression"] == ["QuestionnaireResponse.item[2].answer[0].valueString"]
    assert "often" not in json.dumps(outcome)


def test_check_response_raises_business_rule_violation_for_a_missing_required_item() -> None:
    r = complete_response(PHQ9)
    del r["item"][0]
    with pytest.raises(errors.BusinessRuleViolation) as raised:
        check_response(PHQ9, r)
    assert errors.http_status(raised.value) == 422
    assert raised.value.issue_code == "required"
    assert raised.value.expression == ["QuestionnaireResponse.item.where(linkId='/44250-9')"]
    assert "Little interest or pleasure in doing things?" in raised.value.diagnostics


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("http://example.org/Questionnaire/phq9|2.1", ("http://example.org/Questionnaire/phq9", "2.1")),
        ("http://example.org/Questionnaire/phq9", ("http://example.org/Questionnaire/phq9", None)),
        ("http://example.org/Questionnaire/phq9|", ("http://example.org/Questionnaire/phq9", None)),
    ],
)
def test_questionnaire_reference_splits_url_and_version(
    reference: str, expected: tuple[str, str | None]
) -> None:
    assert questionnaire_reference({"questionnaire": reference}) == expected


@pytest.mark.parametrize(
    "given",
    [{}, {"questionnaire": ""}, {"questionnaire": 7}, {"questionnaire": "a b"}, {"questionnaire": "|1"}, "x"],
)
def test_a_missing_or_malformed_questionnaire_reference_is_invalid_input(given: Any) -> None:
    with pytest.raises(errors.InvalidInput) as raised:
        questionnaire_reference(given)
    assert raised.value.expression == ["QuestionnaireResponse.questionnaire"]
