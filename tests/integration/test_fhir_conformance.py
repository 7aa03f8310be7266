"""FHIR R4 conformance through the gateway, driven by a FHIR client nobody here wrote (fhirpy).

Every test makes its own data, tagged with a per-run identifier system, so the shared stack's
other contents never match.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, ResourceNotFound

from tests.integration.stack import Stack
from tests.synthetic import letters_tag, synthetic_ssn_identifier

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def system(run_id: str) -> str:
    """An identifier/code system of this test alone."""
    return f"urn:carebridge:test:{run_id}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(stack: Stack) -> AsyncFHIRClient:
    return AsyncFHIRClient(stack.fhir, authorization=f"Bearer {stack.token}")


def client_with(stack: Stack, **headers: str) -> AsyncFHIRClient:
    return AsyncFHIRClient(stack.fhir, authorization=f"Bearer {stack.token}", extra_headers=headers)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as client:
        yield client


def patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


async def post_transaction(
    http: httpx.AsyncClient, entries: list[dict[str, Any]], kind: str = "transaction"
) -> Any:
    bundle = {"resourceType": "Bundle", "type": kind, "entry": entries}
    response = await http.post("/fhir", content=orjson.dumps(bundle), headers=FHIR_JSON)
    return response


def create_entry(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


# --- create, read, vread, update ----------------------------------------------------------------


async def test_create_read_vread_and_update_with_if_match(
    client: AsyncFHIRClient, stack: Stack, system: str
) -> None:
    created = client.resource("Patient", **patient(system, "crud-1", name=[{"family": "Conformance"}]))
    await created.save()
    assert created["meta"]["versionId"] == "1"

    read = await client.reference("Patient", created.id).to_resource()
    assert read["name"] == [{"family": "Conformance"}]

    read["name"] = [{"family": "Conformance", "given": ["Updated"]}]
    await client_with(stack, **{"If-Match": 'W/"1"'}).resource("Patient", **read.serialize()).save()
    current = await client.reference("Patient", created.id).to_resource()
    assert current["meta"]["versionId"] == "2"

    first = await client.execute(f"Patient/{created.id}/_history/1", method="get")
    assert first["name"] == [{"family": "Conformance"}]

    stale = client_with(stack, **{"If-Match": 'W/"1"'}).resource("Patient", **current.serialize())
    with pytest.raises(MultipleResourcesFound):  # fhirpy's name for a 412: someone else's change came first
        await stale.save()


async def test_stale_if_match_gets_412_with_an_operation_outcome(
    http: httpx.AsyncClient, system: str
) -> None:
    created = (
        await http.post("/fhir/Patient", content=orjson.dumps(patient(system, "412")), headers=FHIR_JSON)
    ).json()
    body = orjson.dumps({**created, "active": True})
    response = await http.put(
        f"/fhir/Patient/{created['id']}", content=body, headers={**FHIR_JSON, "If-Match": 'W/"7"'}
    )
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_conditional_create_raced_from_20_tasks_makes_exactly_one_resource(
    client: AsyncFHIRClient, stack: Stack, system: str
) -> None:
    racer = client_with(stack, **{"If-None-Exist": f"identifier={system}|race"})
    results = await asyncio.gather(
        *(racer.resource("Patient", **patient(system, "race")).create() for _ in range(20)),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)], results
    found = await client.resources("Patient").search(identifier=f"{system}|race").fetch_all()
    assert len(found) == 1
    assert {r.id for r in results} == {found[0].id}  # type: ignore[union-attr]


# --- search --------------------------------------------------------------------------------------


@pytest.fixture
async def people(http: httpx.AsyncClient, system: str) -> dict[str, str]:
    """Four patients with names, birth dates, genders and one observation each. Family names end
    in a tag of this run, so identity matching does not fold them into another test's people."""
    tag = letters_tag(6)
    specs = {
        "ana": {
            "name": [{"family": f"Alvarez{tag}", "given": ["Ana"]}],
            "birthDate": "1980-03-15",
            "gender": "female",
        },
        "jose": {
            "name": [{"family": f"Núñez{tag}", "given": ["José"]}],
            "birthDate": "1980-11-02",
            "gender": "male",
        },
        "kim": {
            "name": [{"family": f"Kimura{tag}", "given": ["Kim"]}],
            "birthDate": "1995-06-30",
            "gender": "other",
        },
        "lee": {"name": [{"family": f"Leeson{tag}"}], "gender": "unknown"},  # no birth date
    }
    ids: dict[str, str] = {}
    for key, fields in specs.items():
        person = patient(system, key, **fields)
        person["identifier"].append(synthetic_ssn_identifier())  # this run's Ana is not another's
        response = await http.post("/fhir/Patient", content=orjson.dumps(person), headers=FHIR_JSON)
        assert response.status_code == 201, response.text
        ids[key] = response.json()["id"]
    for n, key in enumerate(("ana", "jose", "kim")):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "44261-6"}],
                "text": "PHQ-9 total score",
            },
            "subject": {"reference": f"Patient/{ids[key]}"},
            "identifier": [{"system": system, "value": f"obs-{key}"}],
            "effectiveDateTime": f"2024-0{n + 1}-10T09:00:00Z",
            "valueQuantity": {"value": 5 + 7 * n, "system": "http://unitsofmeasure.org", "code": "{score}"},
        }
        response = await http.post("/fhir/Observation", content=orjson.dumps(observation), headers=FHIR_JSON)
        assert response.status_code == 201, response.text
        ids[f"obs-{key}"] = response.json()["id"]
    return ids


async def search_ids(client: AsyncFHIRClient, resource_type: str, **params: Any) -> set[str]:
    return {r.id for r in await client.resources(resource_type).search(**params).fetch_all()}


async def test_search_by_token_in_every_form(
    client: AsyncFHIRClient, people: dict[str, str], system: str
) -> None:
    assert await search_ids(client, "Patient", identifier=f"{system}|ana") == {people["ana"]}
    assert await search_ids(client, "Patient", identifier=f"{system}|") == {
        people[k] for k in ("ana", "jose", "kim", "lee")
    }
    mine = {"identifier": f"{system}|"}
    assert await search_ids(client, "Patient", gender="female", **mine) == {people["ana"]}
    assert await search_ids(client, "Patient", **{"gender:not": "female"}, **mine) == {
        people[k] for k in ("jose", "kim", "lee")
    }
    obs = await search_ids(client, "Observation", code="http://loinc.org|44261-6", identifier=f"{system}|")
    assert obs == {people[f"obs-{k}"] for k in ("ana", "jose", "kim")}
    assert await search_ids(client, "Observation", **{"code:text": "phq-9"}, identifier=f"{system}|") == obs


async def test_search_by_string_is_prefix_case_and_accent_insensitive_with_exact_and_contains(
    client: AsyncFHIRClient, people: dict[str, str], system: str
) -> None:
    mine = {"identifier": f"{system}|"}
    assert await search_ids(client, "Patient", family="nunez", **mine) == {people["jose"]}
    assert await search_ids(client, "Patient", name="jos", **mine) == {people["jose"]}
    exact = (await client.reference("Patient", people["jose"]).to_resource())["name"][0]["family"]
    assert exact.startswith("Núñez")
    assert await search_ids(client, "Patient", **{"family:exact": exact}, **mine) == {people["jose"]}
    assert await search_ids(client, "Patient", **{"family:exact": "nunez"}, **mine) == set()
    assert await search_ids(client, "Patient", **{"family:contains": "mur"}, **mine) == {people["kim"]}


@pytest.mark.parametrize(
    ("birthdate", "expected"),
    [
        ("1980", {"ana", "jose"}),
        ("eq1980-03", {"ana"}),
        ("ne1980", {"kim"}),
        ("lt1980-06-01", {"ana"}),
        ("gt1980-06-01", {"jose", "kim"}),
        ("le1980-03-15", {"ana"}),
        ("ge1995-06-30", {"kim"}),
        ("sa1990", {"kim"}),
        ("eb1981", {"ana", "jose"}),
        ("ap1995-06-30", {"kim"}),
    ],
)
async def test_search_by_date_with_each_prefix_and_partial_dates(
    client: AsyncFHIRClient, people: dict[str, str], system: str, birthdate: str, expected: set[str]
) -> None:
    found = await search_ids(client, "Patient", birthdate=birthdate, identifier=f"{system}|")
    assert found == {people[k] for k in expected}


async def test_search_by_missing(client: AsyncFHIRClient, people: dict[str, str], system: str) -> None:
    mine = {"identifier": f"{system}|"}
    assert await search_ids(client, "Patient", **{"birthdate:missing": "true"}, **mine) == {people["lee"]}
    assert len(await search_ids(client, "Patient", **{"birthdate:missing": "false"}, **mine)) == 3


async def test_search_by_reference_and_quantity(
    client: AsyncFHIRClient, people: dict[str, str], system: str
) -> None:
    mine = {"identifier": f"{system}|"}
    assert await search_ids(client, "Observation", subject=f"Patient/{people['ana']}", **mine) == {
        people["obs-ana"]
    }
    assert await search_ids(client, "Observation", patient=people["jose"], **mine) == {people["obs-jose"]}
    # values 5, 12, 19 {score}
    assert await search_ids(client, "Observation", **{"value-quantity": "gt10"}, **mine) == {
        people["obs-jose"],
        people["obs-kim"],
    }
    assert await search_ids(
        client, "Observation", **{"value-quantity": "12|http://unitsofmeasure.org|{score}"}, **mine
    ) == {people["obs-jose"]}
    assert await search_ids(client, "Observation", date="ge2024-02-01", **mine) == {
        people["obs-jose"],
        people["obs-kim"],
    }


async def test_chained_search_within_a_service_and_across_services(
    client: AsyncFHIRClient, http: httpx.AsyncClient, people: dict[str, str], system: str
) -> None:
    local = await search_ids(client, "Observation", **{"subject:Patient.identifier": f"{system}|kim"})
    assert local == {people["obs-kim"]}
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{people['kim']}"},
        "identifier": [{"system": system, "value": "plan-kim"}],
    }
    created = await http.post("/fhir/CarePlan", content=orjson.dumps(plan), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    remote = await search_ids(client, "CarePlan", **{"subject:Patient.identifier": f"{system}|kim"})
    assert remote == {created.json()["id"]}


async def test_include_and_revinclude_across_services(
    http: httpx.AsyncClient, people: dict[str, str], system: str
) -> None:
    plan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{people['ana']}"},
        "identifier": [{"system": system, "value": "plan-ana"}],
    }
    plan_id = (await http.post("/fhir/CarePlan", content=orjson.dumps(plan), headers=FHIR_JSON)).json()["id"]

    forward = (
        await http.get("/fhir/CarePlan", params={"_id": plan_id, "_include": "CarePlan:subject"})
    ).json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in forward["entry"]}
    assert modes == {("CarePlan", "match"), ("Patient", "include")}

    reverse = (
        await http.get("/fhir/Patient", params={"_id": people["ana"], "_revinclude": "CarePlan:subject"})
    ).json()
    included = [e["resource"]["id"] for e in reverse["entry"] if e["search"]["mode"] == "include"]
    assert included == [plan_id]


async def test_paging_through_1000_resources_has_no_gap_and_no_duplicate_while_data_arrives(
    client: AsyncFHIRClient, http: httpx.AsyncClient, system: str
) -> None:
    for chunk in range(10):
        entries = [create_entry(patient(system, f"p{chunk * 100 + i:04d}")) for i in range(100)]
        response = await post_transaction(http, entries)
        assert response.status_code == 200, response.text
    expected = {f"p{i:04d}" for i in range(1000)}

    seen: list[str] = []
    url: str | None = f"/fhir/Patient?identifier={system}|&_count=50"
    pages = 0
    while url:
        bundle = (await http.get(url)).json()
        seen.extend(e["resource"]["identifier"][0]["value"] for e in bundle.get("entry", []))
        pages += 1
        if pages == 3:  # new data arrives mid-paging: it must not shift what is left to read
            late = [create_entry(patient(system, f"late{i}")) for i in range(30)]
            assert (await post_transaction(http, late)).status_code == 200
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    original = [v for v in seen if not v.startswith("late")]
    assert len(original) == len(set(original)) == 1000
    assert set(original) == expected


async def test_history_after_delete(client: AsyncFHIRClient, http: httpx.AsyncClient, system: str) -> None:
    created = (
        await http.post("/fhir/Patient", content=orjson.dumps(patient(system, "h")), headers=FHIR_JSON)
    ).json()
    pid = created["id"]
    await http.put(
        f"/fhir/Patient/{pid}", content=orjson.dumps({**created, "active": True}), headers=FHIR_JSON
    )
    assert (await http.delete(f"/fhir/Patient/{pid}")).status_code in (200, 204)

    gone = await http.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    with pytest.raises(ResourceNotFound):
        await client.reference("Patient", pid).to_resource()

    history = (await http.get(f"/fhir/Patient/{pid}/_history")).json()
    assert history["type"] == "history"
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]


async def test_transaction_rolls_back_entirely_when_one_entry_fails(
    client: AsyncFHIRClient, http: httpx.AsyncClient, system: str
) -> None:
    good = create_entry(patient(system, "tx-good"), "urn:uuid:" + str(uuid.uuid4()))
    bad = create_entry(patient(system, "tx-bad", gender="not-a-gender"))
    response = await post_transaction(http, [good, bad])
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await search_ids(client, "Patient", identifier=f"{system}|tx-good") == set()


async def test_transaction_resolves_urn_uuid_references_between_its_entries(
    client: AsyncFHIRClient, http: httpx.AsyncClient, system: str
) -> None:
    full_url = "urn:uuid:" + str(uuid.uuid4())
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "PHQ-2 total"},
        "subject": {"reference": full_url},
        "identifier": [{"system": system, "value": "tx-obs"}],
    }
    response = await post_transaction(
        http, [create_entry(patient(system, "tx-p"), full_url), create_entry(observation)]
    )
    assert response.status_code == 200, response.text
    [obs] = await client.resources("Observation").search(identifier=f"{system}|tx-obs").fetch_all()
    [pat] = await client.resources("Patient").search(identifier=f"{system}|tx-p").fetch_all()
    assert obs["subject"]["reference"] == f"Patient/{pat.id}"
