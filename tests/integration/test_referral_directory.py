"""The resource directory and matching on the in-process stack (real HTTP, broker, Redis, SQLite):
`carebridge directory import` of the shipped directory and of a CSV through the gateway, twice,
with nothing changed the second time; `HealthcareService/$match` for a patient whose needs came
from an SDOH screening in intake; the index following the directory's changes; and bad requests
answered with OperationOutcomes. Synthetic people and services only."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.intake.domain import screening_codes as c
from services.intake.domain.instruments import AHC_HRSN
from services.referral.directory_data.build import DIRECTORY_FILE
from services.referral.domain import directory_codes as codes
from services.referral.domain.match_parameters import MATCH_REASON
from shared import cli
from shared.auth import mint_token
from tests.integration.stack import Stack, eventually
from tests.synthetic import letters_tag
from tests.unit.intake.screening_answers import coded, scored_answers

FHIR_JSON = {"Content-Type": "application/fhir+json"}
#: Wednesday 18 November 2026, 09:00 in Riverbend (America/Chicago).
NOW = "2026-11-18T15:00:00Z"
HOUSING = {"homelessness", "housing-instability", "inadequate-housing", "utility-insecurity"}


async def import_file(stack: Stack, path: Path, *extra: str) -> tuple[int, str, str]:
    """Run `carebridge directory import` against the stack's gateway (in a thread: the CLI is
    synchronous and the servers run on this event loop)."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return cli.main(
                [
                    "directory",
                    "import",
                    str(path),
                    "--gateway",
                    stack.gateway.url,
                    "--token",
                    stack.token,
                    *extra,
                ]
            )

    code = await asyncio.to_thread(run)
    return code, out.getvalue(), err.getvalue()


def counts(output: str) -> dict[str, int]:
    return {outcome: int(n) for n, outcome in re.findall(r"(\d+) (created|updated|unchanged)", output)}


async def match(http: httpx.AsyncClient, *parameters: dict[str, Any]) -> httpx.Response:
    body = {"resourceType": "Parameters", "parameter": [*parameters, {"name": "now", "valueDateTime": NOW}]}
    return await http.post("/fhir/HealthcareService/$match", content=orjson.dumps(body), headers=FHIR_JSON)


def gravity_of(entry: dict[str, Any]) -> set[str]:
    return {
        coding["code"]
        for concept in entry["resource"].get("category", [])
        for coding in concept["coding"]
        if coding["system"] == codes.SDOHCC
    }


def reasons_of(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for ext in entry["search"]["extension"]:
        if ext["url"] == MATCH_REASON:
            parts = {
                p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in ext["extension"]
            }
            found[parts["factor"]] = parts
    return found


_IMPORTED: set[int] = set()


@pytest.fixture
async def shipped_directory(stack: Stack) -> None:
    """The shipped directory, imported once per stack (an import changes nothing the second time)."""
    if id(stack) not in _IMPORTED:
        code, _, err = await import_file(stack, DIRECTORY_FILE)
        assert code == 0, err
        _IMPORTED.add(id(stack))


async def test_importing_the_shipped_directory_twice_creates_it_once_and_then_changes_nothing(
    stack: Stack,
) -> None:
    total = DIRECTORY_FILE.read_bytes().count(b'"fullUrl"')
    code, out, err = await import_file(stack, DIRECTORY_FILE)
    assert code == 0, err
    first = counts(out)
    assert first.get("created", 0) + first.get("unchanged", 0) == total and first.get("updated", 0) == 0

    code, out, err = await import_file(stack, DIRECTORY_FILE, "--chunk-size", "120")
    assert code == 0, err
    assert counts(out) == {"created": 0, "updated": 0, "unchanged": total}, out
    _IMPORTED.add(id(stack))

    async with stack.client() as http:
        found = await http.get("/fhir/HealthcareService", params={"_count": "1", "_total": "accurate"})
        assert found.json()["total"] >= 200
        one = found.json()["entry"][0]["resource"]
        assert one["meta"]["versionId"] == "1"  # two imports, one version
        history = await http.get(f"/fhir/HealthcareService/{one['id']}/_history")
        assert len(history.json()["entry"]) == 1


async def test_match_for_a_screened_patient_ranks_housing_services_first_with_reasons(
    stack: Stack, shipped_directory: None
) -> None:
    async with stack.client() as http:
        patient = await _patient_in_riverbend(http)
        answers = scored_answers(AHC_HRSN, [1, 1, 1, 1])  # interpersonal safety negative
        answers |= {
            c.AHC_LIVING_SITUATION: [coded(c.LA_NO_STEADY_PLACE)],  # homelessness
            c.AHC_HOUSING_PROBLEMS: [coded(c.LA_NONE_OF_THE_ABOVE)],
            c.AHC_FOOD_WORRY: [coded(c.LA_NEVER_TRUE)],
            c.AHC_FOOD_DID_NOT_LAST: [coded(c.LA_NEVER_TRUE)],
            c.AHC_TRANSPORTATION: [coded(c.LA_NO)],
            c.AHC_UTILITIES_SHUT_OFF: [coded(c.LA_NO)],
        }
        in_order = [item.code for item in AHC_HRSN.items if item.code in answers]
        response = {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": AHC_HRSN.url,
            "status": "completed",
            "subject": {"reference": f"Patient/{patient}"},
            "authored": "2026-11-18T08:30:00Z",
            "item": [{"linkId": f"/{code}", "answer": answers[code]} for code in in_order],
        }
        screened = await http.post(
            "/fhir/QuestionnaireResponse", content=orjson.dumps(response), headers=FHIR_JSON
        )
        assert screened.status_code == 201, screened.text

        async def matched() -> dict[str, Any] | None:
            answer = await match(
                http, {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}}
            )
            return answer.json() if answer.status_code == 200 else None

        bundle = await eventually(matched, timeout=30)
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 10 and bundle["total"] == 10
    assert all(gravity_of(e) & HOUSING for e in matches)
    assert "homelessness" in gravity_of(matches[0])
    scores = [e["search"]["score"] for e in matches]
    assert scores == sorted(scores, reverse=True)
    top = reasons_of(matches[0])
    assert set(top) == {"category", "distance", "language", "hours", "eligibility", "capacity"}
    assert top["category"]["code"] == "category-exact"
    assert top["language"]["code"] == "language-match"  # the patient speaks Spanish
    assert re.fullmatch(r"[\d.]+ km to .+", top["distance"]["text"])
    assert sum(r["points"] for r in top.values()) == pytest.approx(matches[0]["search"]["score"], abs=1e-3)
    included = [e for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert included and all(e["resource"]["resourceType"] == "Location" for e in included)


async def _patient_in_riverbend(http: httpx.AsyncClient) -> str:
    tag = letters_tag()
    geolocation = {
        "url": codes.GEOLOCATION_EXTENSION,
        "extension": [
            {"url": "latitude", "valueDecimal": 40.01},
            {"url": "longitude", "valueDecimal": -100.01},
        ],
    }
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5.77", "value": f"DIR-{tag}"}],
        "name": [{"family": f"Match{tag}", "given": [f"Pat{tag[:4]}"]}],
        "gender": "female",
        "birthDate": "1988-05-0" + str(1 + ord(tag[0]) % 9),
        "address": [{"use": "home", "line": ["12 Mill St"], "city": "Riverbend", "extension": [geolocation]}],
        "communication": [
            {"language": {"coding": [{"system": codes.BCP47, "code": "es"}]}, "preferred": True}
        ],
    }
    created = await http.post("/fhir/Patient", content=orjson.dumps(patient), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_match_with_needs_and_a_position_given_needs_no_patient(
    stack: Stack, shipped_directory: None
) -> None:
    async with stack.client() as http:
        answer = await match(
            http,
            {"name": "need", "valueCoding": {"system": codes.SDOHCC, "code": "food-insecurity"}},
            {"name": "language", "valueCode": "en"},
            {"name": "latitude", "valueDecimal": 40.0},
            {"name": "longitude", "valueDecimal": -100.0},
            {"name": "count", "valueInteger": 3},
        )
    assert answer.status_code == 200, answer.text
    matches = [e for e in answer.json()["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 3
    assert all("food-insecurity" in gravity_of(e) for e in matches)


CSV = (
    "service_id,service_name,organization_id,organization_name,categories,address,city,latitude,longitude,"
    "languages,hours,capacity\n"
    "S1,Island Shelter,O1,Far Island Aid,homelessness,1 Pier Rd,Far Island,10.0,10.0,en,24/7,{capacity}\n"
)


async def test_a_csv_directory_imports_once_and_matching_follows_its_changes(
    stack: Stack, tmp_path: Path
) -> None:
    source = tmp_path / "island.csv"
    source.write_text(CSV.format(capacity=4))
    code, out, err = await import_file(stack, source, "--source", f"island-{letters_tag()}")
    assert code == 0, err
    assert counts(out) == {"created": 3, "updated": 0, "unchanged": 0}, out
    here = ({"name": "latitude", "valueDecimal": 10.0}, {"name": "longitude", "valueDecimal": 10.0})
    need = {"name": "need", "valueCode": "homelessness"}
    async with stack.client() as http:
        first = await match(http, need, *here, {"name": "count", "valueInteger": 1})
        [top] = first.json()["entry"][:1]
        assert top["resource"]["name"] == "Island Shelter"
        assert reasons_of(top)["distance"]["text"] == "0.0 km to Far Island Aid"

        # The service fills up: the very next match leaves it out (the index follows writes).
        shelter = top["resource"]
        full = {**shelter, "extension": [{"url": codes.CAPACITY_EXTENSION, "valueInteger": 0}]}
        updated = await http.put(
            f"/fhir/HealthcareService/{shelter['id']}", content=orjson.dumps(full), headers=FHIR_JSON
        )
        assert updated.status_code == 200, updated.text
        after = await match(http, need, *here, {"name": "count", "valueInteger": 100})
        assert shelter["id"] not in {e["resource"]["id"] for e in after.json()["entry"]}
        listed = await match(http, need, *here, {"name": "include-unavailable", "valueBoolean": True},
                             {"name": "count", "valueInteger": 100})  # fmt: skip
        ranked = [e for e in listed.json()["entry"] if e["search"]["mode"] == "match"]
        place = next(i for i, e in enumerate(ranked) if e["resource"]["id"] == shelter["id"])
        assert reasons_of(ranked[place])["capacity"]["code"] == "capacity-full"
        unavailable = {"capacity-full", "ineligible-age"}
        available = [
            i for i, e in enumerate(ranked) if not {r["code"] for r in reasons_of(e).values()} & unavailable
        ]
        assert available and max(available) < place  # listed, but after every available service


async def test_reimporting_an_unchanged_csv_changes_nothing(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "again.csv"
    source.write_text(CSV.format(capacity=2))
    name = f"again-{letters_tag()}"
    assert (await import_file(stack, source, "--source", name))[0] == 0
    code, out, _ = await import_file(stack, source, "--source", name)
    assert code == 0 and counts(out) == {"created": 0, "updated": 0, "unchanged": 3}, out
    source.write_text(CSV.format(capacity=5))
    code, out, _ = await import_file(stack, source, "--source", name)
    assert code == 0 and counts(out) == {"created": 0, "updated": 1, "unchanged": 2}, out


async def test_a_refused_import_exits_1_with_the_servers_diagnostics(stack: Stack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    org = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:bad", "value": "1"}],
        "active": "yes",
    }
    bad.write_bytes(
        orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": org}]})
    )
    code, _, err = await import_file(stack, bad)
    assert code == 1
    assert (
        "transaction 1 of 1 refused: 400" in err
        and "Organization.active" in err
        and "nothing was saved" in err
    )


@pytest.mark.parametrize(
    ("parameters", "status", "message"),
    [
        ((), 422, "$match needs at least one need"),
        (({"name": "patient", "valueReference": {"reference": "Patient/nobody"}},), 404, "is not known"),
        (({"name": "radius", "valueDecimal": 1},), 400, "no parameter 'radius'"),
        (({"name": "need", "valueCode": "housing"},), 400, "not a Gravity SDOH category"),
    ],
)  # fmt: skip
async def test_bad_match_requests_get_operation_outcomes(
    stack: Stack, parameters: tuple[dict[str, Any], ...], status: int, message: str
) -> None:
    async with stack.client() as http:
        answer = await match(http, *parameters)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    assert message in body["issue"][0]["diagnostics"]


async def test_a_patient_without_screened_needs_is_asked_for_needs(stack: Stack) -> None:
    async with stack.client() as http:
        patient = await _patient_in_riverbend(http)

        async def answered() -> httpx.Response | None:
            answer = await match(
                http, {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}}
            )
            return answer if answer.status_code != 404 else None

        answer = await eventually(answered, timeout=30)
    assert answer.status_code == 422
    assert f"Patient/{patient} has no screened SDOH needs" in answer.json()["issue"][0]["diagnostics"]


async def test_match_is_post_only(stack: Stack) -> None:
    async with stack.client() as http:
        answer = await http.get("/fhir/HealthcareService/$match")
    assert answer.status_code == 405
    assert answer.json()["resourceType"] == "OperationOutcome"


async def test_match_needs_the_right_to_read_patients_too(stack: Stack) -> None:
    """Ranking for a patient reveals their screened needs (intimate-partner violence among them):
    directory search alone is not enough."""
    token = mint_token(stack.settings.jwt_hs256_secret, "system/HealthcareService.rs")
    async with httpx.AsyncClient(
        base_url=stack.gateway.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        answer = await http.post(
            "/fhir/HealthcareService/$match",
            content=orjson.dumps({"resourceType": "Parameters", "parameter": [
                {"name": "need", "valueCode": "food-insecurity"}]}),
            headers={"Content-Type": "application/fhir+json"},
        )  # fmt: skip
    assert answer.status_code == 403 and answer.json()["resourceType"] == "OperationOutcome"
