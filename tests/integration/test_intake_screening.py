"""Screening through the gateway on the in-process stack (real HTTP, broker, Redis, SQLite):
a PHQ-9 with item 9 = 2 yields the scored Observations, a safety Flag, and careplan's same-day
activity; the same response twice is one response; bad responses get OperationOutcomes naming
the problem. Synthetic people only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import GAD7, PHQ9
from services.intake.domain.observations import observation_id
from tests.corpus import CORPUS
from tests.integration.stack import Stack, eventually
from tests.synthetic import letters_tag
from tests.unit.intake.screening_answers import scored_answers

FHIR_JSON = {"Content-Type": "application/fhir+json"}


async def new_patient(http: httpx.AsyncClient) -> str:
    tag = letters_tag()
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.77", "value": f"SCR-{tag}"}],
        "name": [{"family": f"Screen{tag}", "given": [f"Pat{tag[:4]}"]}],
        "gender": "female",
        "birthDate": "1984-03-0" + str(1 + ord(tag[0]) % 9),
    }
    created = await http.post("/fhir/Patient", content=orjson.dumps(patient), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def response_to(url: str, patient: str, answers: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": url,
        "status": "completed",
        "subject": {"reference": f"Patient/{patient}"},
        "authored": "2026-11-20T10:00:00Z",
        "item": [{"linkId": f"/{code}", "answer": answer} for code, answer in answers.items()],
    }


async def post(http: httpx.AsyncClient, resource: dict[str, Any]) -> httpx.Response:
    return await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR_JSON
    )


async def test_shipped_instruments_are_served_as_questionnaires(stack: Stack) -> None:
    async with stack.client() as http:
        found = await http.get("/fhir/Questionnaire", params={"url": PHQ9.url})
    entries = found.json()["entry"]
    assert [e["resource"]["url"] for e in entries] == [PHQ9.url]
    assert entries[0]["resource"]["code"][0]["code"] == c.PHQ9_PANEL


async def test_phq9_with_item_9_answered_2_is_scored_flagged_and_reaches_careplan_once(stack: Stack) -> None:
    async with stack.client() as http:
        patient = await new_patient(http)
        # Items 1-8 score 1 each, item 9 scores 2: total 10, moderate.
        answers = scored_answers(PHQ9, [1, 1, 1, 1, 1, 1, 1, 1, 2])
        response = response_to(PHQ9.url, patient, answers)
        first = await post(http, response)
        assert first.status_code == 201, first.text
        response_id = first.json()["id"]

        total = await http.get(f"/fhir/Observation/{observation_id(response_id, PHQ9.total.code)}")
        assert total.status_code == 200, total.text
        body = total.json()
        assert body["valueQuantity"]["value"] == 10 and body["valueQuantity"]["code"] == "{score}"
        assert body["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{response_id}"}]
        assert body["interpretation"][0]["coding"][0]["code"] == "LA6710-3"  # moderate (LL382-3)

        panel = await http.get(
            "/fhir/Observation", params={"subject": f"Patient/{patient}", "code": f"{c.LOINC}|{c.PHQ9_PANEL}"}
        )
        members = panel.json()["entry"][0]["resource"]["hasMember"]
        assert len(members) == 10  # nine items and the total

        flags = (await http.get("/fhir/Flag", params={"subject": f"Patient/{patient}"})).json()
        assert len(flags["entry"]) == 1
        flag = flags["entry"][0]["resource"]
        assert flag["status"] == "active" and flag["period"]["start"]

        again = await post(http, response)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == response_id
        responses = await http.get("/fhir/QuestionnaireResponse", params={"subject": f"Patient/{patient}"})
        assert len(responses.json()["entry"]) == 1
        assert (
            len((await http.get("/fhir/Flag", params={"subject": f"Patient/{patient}"})).json()["entry"]) == 1
        )

        async def plan_with_safety_activity() -> dict[str, Any] | None:
            found = await http.get(
                "/fhir/CarePlan", params={"subject": f"Patient/{patient}", "status": "active"}
            )
            entries = found.json().get("entry") or []
            return entries[0]["resource"] if entries else None

        plan = await eventually(plan_with_safety_activity)
        activities = plan["activity"]
        assert len(activities) == 1
        assert activities[0]["detail"]["code"]["coding"][0]["code"] == "93373-9"  # C-SSRS, same day
        assert activities[0]["detail"]["scheduledPeriod"] == {"start": "2026-11-20", "end": "2026-11-20"}


async def test_a_response_to_an_unknown_questionnaire_is_refused_naming_it(stack: Stack) -> None:
    async with stack.client() as http:
        patient = await new_patient(http)
        refused = await post(http, response_to("http://example.org/Questionnaire/nope", patient, {}))
    assert refused.status_code == 422
    issue = refused.json()["issue"][0]
    assert "http://example.org/Questionnaire/nope" in issue["diagnostics"]
    assert issue["expression"] == ["QuestionnaireResponse.questionnaire"]


async def test_wrong_type_unknown_answer_and_missing_item_are_refused_naming_the_item(stack: Stack) -> None:
    async with stack.client() as http:
        patient = await new_patient(http)
        answers = scored_answers(PHQ9, [0] * 9)
        wrong_type = {**answers, "44250-9": [{"valueString": "several days"}]}
        not_an_option = {**answers, "44250-9": [{"valueCoding": {"system": c.LOINC, "code": "LA9999-9"}}]}
        missing = {k: v for k, v in answers.items() if k != "44260-8"}
        outcomes = [
            await post(http, response_to(PHQ9.url, patient, a)) for a in (wrong_type, not_an_option, missing)
        ]
    assert [o.status_code // 100 for o in outcomes] == [4, 4, 4], [o.text for o in outcomes]
    for outcome, item in zip(outcomes, ("44250-9", "44250-9", "44260-8"), strict=True):
        assert outcome.json()["resourceType"] == "OperationOutcome"
        assert item in outcome.text


async def test_a_total_that_is_not_the_sum_of_the_answers_is_refused(stack: Stack) -> None:
    async with stack.client() as http:
        patient = await new_patient(http)
        response = response_to(PHQ9.url, patient, scored_answers(PHQ9, [1] * 9))
        response["item"].append({"linkId": f"/{PHQ9.total.code}", "answer": [{"valueInteger": 3}]})
        refused = await post(http, response)
    assert refused.status_code == 422, refused.text
    assert "9" in refused.json()["issue"][0]["diagnostics"]


async def test_a_gad7_response_to_a_public_corpus_questionnaire_is_scored(stack: Stack) -> None:
    questionnaire = orjson.loads(
        (CORPUS / "questionnaires" / "gad7.uwcirg-asbi-screening-app.json").read_bytes()
    )
    # It carries no canonical URL: whoever loads it gives it one.
    questionnaire["url"] = f"http://clinic.example/fhir/Questionnaire/gad7-{uuid.uuid4().hex[:8]}"
    async with stack.client() as http:
        loaded = await post(http, {k: v for k, v in questionnaire.items() if k != "id"})
        assert loaded.status_code in (200, 201), loaded.text
        patient = await new_patient(http)
        items = []
        for item in questionnaire["item"]:
            options = item.get("answerOption") or []
            if item.get("type") == "choice" and options and not item.get("readOnly"):
                items.append(
                    {"linkId": item["linkId"], "answer": [{"valueCoding": options[1]["valueCoding"]}]}
                )
        response = {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": questionnaire["url"],
            "status": "completed",
            "subject": {"reference": f"Patient/{patient}"},
            "item": items,
        }
        created = await post(http, response)
        assert created.status_code == 201, created.text
        total = await http.get(f"/fhir/Observation/{observation_id(created.json()['id'], GAD7.total.code)}")
    assert total.status_code == 200, total.text
    assert total.json()["valueQuantity"]["value"] == 7  # "several days" (1) on each of 7 items
