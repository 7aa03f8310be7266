"""`Measure/fuh/$evaluate-measure` through the gateway over encounters written at intake and an
Appointment written at careplan. The measurement year is 2019, which no other test uses, so the
shared stack's other discharges do not count here. Synthetic people only."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from services.careplan.domain.valuesets import ICD10CM, V3_ACT_CODE
from tests.integration.stack import Stack, eventually
from tests.synthetic import letters_tag

FHIR = {"Content-Type": "application/fhir+json"}
PERIOD = {"periodStart": "2019-01-01", "periodEnd": "2019-12-31"}


async def post(http: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers=FHIR
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def person(http: httpx.AsyncClient, birth_date: str) -> str:
    tag = letters_tag()
    return await post(http, {
        "resourceType": "Patient", "name": [{"family": f"Measure{tag}", "given": ["Fuh"]}],
        "birthDate": birth_date, "identifier": [{"system": "urn:carebridge:test:fuh", "value": tag}],
    })  # fmt: skip


async def encounter(
    http: httpx.AsyncClient, patient: str, klass: str, start: str, end: str | None, code: str
) -> str:
    condition = await post(http, {
        "resourceType": "Condition", "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": ICD10CM, "code": code}]},
    })  # fmt: skip
    period = {"start": start, **({"end": end} if end else {})}
    return await post(http, {
        "resourceType": "Encounter", "status": "finished", "class": {"system": V3_ACT_CODE, "code": klass},
        "subject": {"reference": f"Patient/{patient}"}, "period": period,
        "diagnosis": [{"condition": {"reference": f"Condition/{condition}"}, "rank": 1}],
    })  # fmt: skip


async def stay(
    http: httpx.AsyncClient, patient: str, admitted: str, discharged: str, code: str = "F32.2"
) -> str:
    return await encounter(http, patient, "IMP", f"{admitted}T09:00:00Z", f"{discharged}T12:00:00Z", code)


async def visit(http: httpx.AsyncClient, patient: str, on: str, code: str = "F32.2") -> str:
    return await encounter(http, patient, "AMB", f"{on}T10:00:00Z", f"{on}T11:00:00Z", code)


async def test_fuh_counts_each_boundary_and_lists_the_subjects(stack: Stack) -> None:
    async with stack.client() as http:
        on_day_5, day_8, day_31, other_dx, aged_5, after_dec_1, appointment = [
            await person(http, born)
            for born in ("1980-01-01", "1975-05-05", "1990-02-02", "1985-03-03", "2014-06-01",
                         "1970-07-07", "1988-08-08")
        ]  # fmt: skip
        await stay(http, on_day_5, "2019-03-01", "2019-03-10")
        await visit(http, on_day_5, "2019-03-15")  # day 5: 7 and 30
        await stay(http, day_8, "2019-03-25", "2019-04-01")
        await visit(http, day_8, "2019-04-01")  # discharge day: does not count
        await visit(http, day_8, "2019-04-09")  # day 8: 30 only
        await stay(http, day_31, "2019-04-20", "2019-05-01")
        await visit(http, day_31, "2019-06-01")  # day 31: neither
        await stay(http, other_dx, "2019-05-01", "2019-05-05", code="E11.9")  # not a mental-health stay
        await stay(http, aged_5, "2019-05-01", "2019-05-05")  # 4 years old
        await stay(http, after_dec_1, "2019-11-28", "2019-12-02")  # after Dec 1
        await stay(http, appointment, "2019-06-25", "2019-07-01")
        fulfilled = await post(http, {
            "resourceType": "Appointment", "status": "fulfilled", "start": "2019-07-03T15:00:00Z",
            "end": "2019-07-03T16:00:00Z", "reasonCode": [{"coding": [{"system": ICD10CM, "code": "F32.2"}]}],
            "participant": [{"actor": {"reference": f"Patient/{appointment}"}, "status": "accepted"}],
        })  # fmt: skip

        async def report() -> dict[str, Any] | None:
            response = await http.get("/fhir/Measure/fuh/$evaluate-measure", params=PERIOD)
            assert response.status_code == 200, response.text
            body = response.json()
            groups = {g["id"]: g for g in body["group"]}
            counts = {p["code"]["coding"][0]["code"]: p["count"] for p in groups["fuh-30"]["population"]}
            return body if counts["numerator"] == 3 and counts["denominator"] == 4 else None

        body = await eventually(report, timeout=30)
        assert body["resourceType"] == "MeasureReport" and body["status"] == "complete"
        groups = {g["id"]: g for g in body["group"]}
        seven = {p["code"]["coding"][0]["code"]: p["count"] for p in groups["fuh-7"]["population"]}
        assert seven["numerator"] == 2 and seven["denominator"] == 4
        assert groups["fuh-7"]["measureScore"]["value"] == 0.5
        assert groups["fuh-30"]["measureScore"]["value"] == 0.75

        listed = await http.get(
            "/fhir/Measure/fuh/$evaluate-measure", params={**PERIOD, "reportType": "subject-list"}
        )
        assert listed.status_code == 200, listed.text
        lists = {c["id"]: c for c in listed.json().get("contained", [])}
        numerator_7 = next(
            p for p in {g["id"]: g for g in listed.json()["group"]}["fuh-7"]["population"]
            if p["code"]["coding"][0]["code"] == "numerator"
        )  # fmt: skip
        members = lists[numerator_7["subjectResults"]["reference"].lstrip("#")]["entry"]
        assert {e["item"]["reference"] for e in members} == {f"Patient/{on_day_5}", f"Patient/{appointment}"}
        assert fulfilled


async def test_evaluate_measure_errors_are_operation_outcomes(stack: Stack) -> None:
    async with stack.client() as http:
        no_period = await http.get("/fhir/Measure/fuh/$evaluate-measure")
        unknown = await http.get("/fhir/Measure/nope/$evaluate-measure", params=PERIOD)
        backwards = await http.get(
            "/fhir/Measure/fuh/$evaluate-measure",
            params={"periodStart": "2019-12-31", "periodEnd": "2019-01-01"},
        )
        definition = await http.get("/fhir/Measure/fuh")
    assert no_period.status_code == 400 and "periodStart" in no_period.text
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    assert backwards.status_code == 400
    assert definition.status_code == 200 and definition.json()["url"].endswith("/Measure/fuh")
