"""One record per person, through the gateway on the in-process stack: a second record of the
same person is the first one; a possible duplicate is kept apart and listed for review;
`$match` scores candidates; `$merge` moves references (in intake and, by event, in careplan) and
`$unmerge` moves them back, both audited. Synthetic people only."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.integration.stack import Stack, eventually
from tests.synthetic import letters_tag

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def person(tag: str, *, given: str, system: str, mrn: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": mrn}],
        "name": [{"family": f"Idtest{tag}", "given": [given]}],
        "gender": "male",
        "birthDate": "1979-08-14",
        "telecom": [{"system": "phone", "value": f"555-01{sum(map(ord, tag)) % 100:02d}"}],
        "address": [
            {"line": [f"{sum(map(ord, tag))} Elm Street"], "city": "Springfield", "postalCode": "62704"}
        ],
        **extra,
    }


async def post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await http.post(path, content=orjson.dumps(body), headers=FHIR_JSON)


def parameters(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parts)}


async def test_the_same_person_from_another_facility_is_the_same_record(stack: Stack) -> None:
    tag = letters_tag()
    async with stack.client() as http:
        first = await post(
            http, "/fhir/Patient", person(tag, given="Robert", system="urn:hosp-a", mrn=f"A-{tag}")
        )
        assert first.status_code == 201, first.text
        # Hospital B: nickname, its own MRN.
        second = await post(
            http, "/fhir/Patient", person(tag, given="Bob", system="urn:hosp-b", mrn=f"B-{tag}")
        )
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert {i["system"] for i in second.json()["identifier"]} == {"urn:hosp-a", "urn:hosp-b"}


async def test_a_possible_duplicate_is_kept_apart_listed_and_can_be_kept_distinct(stack: Stack) -> None:
    tag = letters_tag()
    async with stack.client() as http:
        first = await post(
            http, "/fhir/Patient", person(tag, given="Marcus", system="urn:hosp-a", mrn=f"A-{tag}")
        )
        # Same family, birth date and address, another given name, phone gone: maybe a relative.
        other = person(tag, given="Marco", system="urn:hosp-c", mrn=f"C-{tag}")
        del other["telecom"]
        second = await post(http, "/fhir/Patient", other)
        assert second.status_code == 201, second.text
        ids = {first.json()["id"], second.json()["id"]}
        assert len(ids) == 2

        listed = await http.get("/fhir/Patient/$match-reviews", params={"status": "open", "_count": "500"})
        assert listed.status_code == 200, listed.text
        reviews = [
            {
                p["name"]: p.get("valueString") or p.get("valueReference", {}).get("reference")
                for p in r["part"]
            }
            | {
                "patients": {
                    p["valueReference"]["reference"][8:] for p in r["part"] if p["name"] == "patient"
                }
            }
            for r in listed.json()["parameter"]
        ]
        ours = [r for r in reviews if r["patients"] == ids]
        assert len(ours) == 1, reviews[-3:]

        resolved = await post(
            http,
            "/fhir/Patient/$resolve-match-review",
            parameters(
                {"name": "review", "valueString": ours[0]["id"]},
                {"name": "decision", "valueCode": "distinct"},
            ),
        )
        assert resolved.status_code == 200, resolved.text
        again = await post(
            http,
            "/fhir/Patient/$resolve-match-review",
            parameters(
                {"name": "review", "valueString": ours[0]["id"]},
                {"name": "decision", "valueCode": "distinct"},
            ),
        )
    assert again.status_code == 422


async def test_match_operation_returns_scored_graded_candidates(stack: Stack) -> None:
    tag = letters_tag()
    async with stack.client() as http:
        stored = await post(
            http, "/fhir/Patient", person(tag, given="Elizabeth", system="urn:hosp-a", mrn=f"A-{tag}")
        )
        probe = person(tag, given="Liz", system="urn:hosp-z", mrn=f"Z-{tag}")
        found = await post(http, "/fhir/Patient/$match", parameters({"name": "resource", "resource": probe}))
    assert found.status_code == 200, found.text
    bundle = found.json()
    assert bundle["type"] == "searchset"
    top = bundle["entry"][0]
    assert top["resource"]["id"] == stored.json()["id"]
    assert 0 < top["search"]["score"] <= 1
    grades = [e["valueCode"] for e in top["search"]["extension"] if e["url"].endswith("match-grade")]
    assert grades in (["certain"], ["probable"])


async def test_merge_moves_references_everywhere_and_unmerge_moves_them_back_audited(stack: Stack) -> None:
    tag = letters_tag()
    async with stack.client() as http:
        source = (
            await post(http, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": f"Src{tag}"}]})
        ).json()
        target = (
            await post(http, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": f"Tgt{tag}"}]})
        ).json()
        condition = await post(
            http,
            "/fhir/Condition",
            {
                "resourceType": "Condition",
                "subject": {"reference": f"Patient/{source['id']}"},
                "code": {"text": "x"},
            },
        )
        plan = await post(
            http,
            "/fhir/CarePlan",
            {
                "resourceType": "CarePlan",
                "status": "active",
                "intent": "plan",
                "subject": {"reference": f"Patient/{source['id']}"},
            },
        )
        assert condition.status_code == 201 and plan.status_code == 201, (condition.text, plan.text)

        merged = await post(
            http,
            "/fhir/Patient/$merge",
            parameters(
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{source['id']}"}},
                {"name": "target-patient", "valueReference": {"reference": f"Patient/{target['id']}"}},
            ),
        )
        assert merged.status_code == 200, merged.text
        old = (await http.get(f"/fhir/Patient/{source['id']}")).json()
        assert old["active"] is False
        assert old["link"] == [{"other": {"reference": f"Patient/{target['id']}"}, "type": "replaced-by"}]
        moved = (await http.get(f"/fhir/Condition/{condition.json()['id']}")).json()
        assert moved["subject"]["reference"] == f"Patient/{target['id']}"

        async def plan_subject() -> str | None:
            current = (await http.get(f"/fhir/CarePlan/{plan.json()['id']}")).json()
            subject = current["subject"]["reference"]
            return subject if subject == f"Patient/{target['id']}" else None

        await eventually(plan_subject)

        unmerged = await post(
            http,
            "/fhir/Patient/$unmerge",
            parameters(
                {"name": "source-patient", "valueReference": {"reference": f"Patient/{source['id']}"}}
            ),
        )
        assert unmerged.status_code == 200, unmerged.text
        back = (await http.get(f"/fhir/Patient/{source['id']}")).json()
        assert "link" not in back and back.get("active") is not False
        restored = (await http.get(f"/fhir/Condition/{condition.json()['id']}")).json()
        assert restored["subject"]["reference"] == f"Patient/{source['id']}"

        async def plan_back() -> str | None:
            current = (await http.get(f"/fhir/CarePlan/{plan.json()['id']}")).json()
            subject = current["subject"]["reference"]
            return subject if subject == f"Patient/{source['id']}" else None

        await eventually(plan_back)

        async def audits() -> list[str] | None:
            found = await http.get("/fhir/AuditEvent", params={"entity": f"Patient/{source['id']}"})
            subtypes = sorted(e["resource"]["subtype"][0]["code"] for e in found.json().get("entry") or [])
            return subtypes if len(subtypes) == 2 else None

        assert await eventually(audits) == ["merge", "unmerge"]


async def test_operation_errors_are_operation_outcomes_naming_the_problem(stack: Stack) -> None:
    async with stack.client() as http:
        patient = (
            await post(http, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "Solo"}]})
        ).json()
        ref = {"reference": f"Patient/{patient['id']}"}
        itself = await post(
            http,
            "/fhir/Patient/$merge",
            parameters(
                {"name": "source-patient", "valueReference": ref},
                {"name": "target-patient", "valueReference": ref},
            ),
        )
        unknown = await post(
            http,
            "/fhir/Patient/$merge",
            parameters(
                {"name": "source-patient", "valueReference": {"reference": "Patient/does-not-exist"}},
                {"name": "target-patient", "valueReference": ref},
            ),
        )
        not_merged = await post(
            http, "/fhir/Patient/$unmerge", parameters({"name": "source-patient", "valueReference": ref})
        )
        no_resource = await post(http, "/fhir/Patient/$match", parameters())
        not_parameters = await post(http, "/fhir/Patient/$match", {"resourceType": "Patient"})
        unknown_op = await post(http, "/fhir/Patient/$frobnicate", parameters())
    assert (itself.status_code, unknown.status_code, not_merged.status_code) == (422, 422, 422)
    assert "itself" in itself.json()["issue"][0]["diagnostics"]
    assert "does-not-exist" in unknown.json()["issue"][0]["diagnostics"]
    assert "not merged" in not_merged.json()["issue"][0]["diagnostics"]
    assert (no_resource.status_code, not_parameters.status_code, unknown_op.status_code) == (400, 400, 404)
    assert all(
        r.json()["resourceType"] == "OperationOutcome" for r in (no_resource, not_parameters, unknown_op)
    )
