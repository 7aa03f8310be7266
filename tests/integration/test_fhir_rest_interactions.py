"""The FHIR R4 interactions through the gateway, as an EHR's client sees them: read, vread,
create, update (and update-as-create), delete, history, patch, conditional create / update /
delete, search by GET and POST, and the versioning headers on each (R4 http.html)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from tests.integration.stack import Stack
from tests.synthetic import letters_tag

FHIR = {"Content-Type": "application/fhir+json"}
PATCH = {"Content-Type": "application/json-patch+json"}


def patient(mrn: str | None = None, family: str | None = None, **extra: Any) -> dict[str, Any]:
    """A synthetic person of their own: a unique MRN and a unique family name, so identity
    matching keeps each test's patients apart."""
    mrn = mrn or uuid.uuid4().hex[:12]
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": mrn}],
        "name": [{"family": family or f"Restful{letters_tag()}", "given": ["Ada"]}],
        **extra,
    }


def practitioner(npi: str, family: str = "Restful") -> dict[str, Any]:
    """The conditional interactions are generic; they are shown on Practitioner because a Patient
    write goes through identity matching (two Patients with one MRN are one person)."""
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": "urn:test:npi", "value": npi}],
        "name": [{"family": family, "given": ["Ada"]}],
    }


GOAL = {
    "resourceType": "Goal",
    "lifecycleStatus": "proposed",
    "description": {"text": "walk daily"},
    "subject": {"reference": "Patient/x"},
}


async def create(http: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> httpx.Response:
    response = await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers={**FHIR, **headers}
    )
    assert response.status_code in (200, 201), response.text
    return response


async def test_create_assigns_the_id_and_answers_201_with_location_etag_and_last_modified(
    stack: Stack,
) -> None:
    async with stack.client() as http:
        response = await create(http, {**patient(), "id": "client-chosen"})
    body = response.json()
    assert response.status_code == 201
    assert body["id"] != "client-chosen" and body["meta"]["versionId"] == "1"
    assert response.headers["location"] == f"{stack.fhir}/Patient/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")


async def test_read_returns_the_resource_with_its_etag_and_a_conditional_read_gets_304(stack: Stack) -> None:
    async with stack.client() as http:
        pid = (await create(http, patient())).json()["id"]
        read = await http.get(f"/fhir/Patient/{pid}")
        again = await http.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert read.status_code == 200 and read.json()["id"] == pid
    assert read.headers["etag"] == 'W/"1"' and read.headers["content-type"].startswith(
        "application/fhir+json"
    )
    assert again.status_code == 304 and again.content == b""


async def test_update_makes_version_2_and_vread_still_serves_version_1(stack: Stack) -> None:
    async with stack.client() as http:
        created = (await create(http, patient(family="Before"))).json()
        changed = {**created, "name": [{"family": "After"}]}
        updated = await http.put(
            f"/fhir/Patient/{created['id']}", content=orjson.dumps(changed), headers=FHIR
        )
        v1 = await http.get(f"/fhir/Patient/{created['id']}/_history/1")
        v2 = await http.get(f"/fhir/Patient/{created['id']}/_history/2")
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2" and updated.headers["etag"] == 'W/"2"'
    assert updated.headers["location"].endswith(f"/Patient/{created['id']}/_history/2")
    assert v1.json()["name"][0]["family"] == "Before" and v1.headers["etag"] == 'W/"1"'
    assert v2.json()["name"][0]["family"] == "After"


async def test_update_with_a_client_id_that_does_not_exist_creates_it_201(stack: Stack) -> None:
    new_id = f"client-{uuid.uuid4().hex[:8]}"
    async with stack.client() as http:
        response = await http.put(
            f"/fhir/Patient/{new_id}", content=orjson.dumps({**patient(), "id": new_id}), headers=FHIR
        )
        read = await http.get(f"/fhir/Patient/{new_id}")
    assert response.status_code == 201, response.text
    assert response.json()["id"] == new_id and read.status_code == 200


async def test_update_with_the_current_if_match_succeeds_and_a_stale_one_is_412(stack: Stack) -> None:
    async with stack.client() as http:
        created = (await create(http, patient())).json()
        url = f"/fhir/Patient/{created['id']}"
        ok = await http.put(url, content=orjson.dumps(created), headers={**FHIR, "If-Match": 'W/"1"'})
        stale = await http.put(url, content=orjson.dumps(created), headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    assert "version 2, not 1" in stale.json()["issue"][0]["diagnostics"]


async def test_prefer_return_minimal_and_operation_outcome_shape_the_answer_to_a_write(stack: Stack) -> None:
    async with stack.client() as http:
        minimal = await create(http, patient(), Prefer="return=minimal")
        outcome = await create(http, patient(), Prefer="return=OperationOutcome")
    assert minimal.status_code == 201 and minimal.content == b"" and minimal.headers["location"]
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    assert outcome.headers["etag"] == 'W/"1"'


async def test_delete_then_read_is_410_vread_of_the_deletion_is_410_and_history_shows_it(
    stack: Stack,
) -> None:
    async with stack.client() as http:
        pid = (await create(http, patient())).json()["id"]
        deleted = await http.delete(f"/fhir/Patient/{pid}")
        read = await http.get(f"/fhir/Patient/{pid}")
        vread_deletion = await http.get(f"/fhir/Patient/{pid}/_history/2")
        vread_before = await http.get(f"/fhir/Patient/{pid}/_history/1")
        again = await http.delete(f"/fhir/Patient/{pid}")
        history = await http.get(f"/fhir/Patient/{pid}/_history")
    assert deleted.status_code == 200 and deleted.headers["etag"] == 'W/"2"'
    assert read.status_code == 410 and read.json()["issue"][0]["code"] == "deleted"
    assert vread_deletion.status_code == 410 and vread_before.status_code == 200
    assert again.status_code == 204  # deleting what is gone is not an error
    entries = history.json()["entry"]
    assert [e["request"]["method"] for e in entries] == ["DELETE", "POST"]
    assert "resource" not in entries[0] and entries[1]["resource"]["id"] == pid


async def test_deleting_what_never_existed_is_204(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.delete("/fhir/Patient/never-there")
    assert response.status_code == 204


async def test_type_history_lists_versions_newest_first_and_honours_since_and_count(stack: Stack) -> None:
    async with stack.client() as http:
        first = (await create(http, GOAL)).json()
        updated = {**first, "lifecycleStatus": "active"}
        second = (
            await http.put(f"/fhir/Goal/{first['id']}", content=orjson.dumps(updated), headers=FHIR)
        ).json()
        history = (await http.get("/fhir/Goal/_history", params={"_count": "1"})).json()
        since = (
            await http.get("/fhir/Goal/_history", params={"_since": second["meta"]["lastUpdated"]})
        ).json()
    assert history["type"] == "history"
    (newest,) = history["entry"]
    assert newest["resource"]["meta"]["versionId"] == "2" and newest["request"]["method"] == "PUT"
    assert newest["response"]["etag"] == 'W/"2"'
    assert any(link["relation"] == "next" for link in history["link"])
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["2"]


async def test_history_of_an_unknown_resource_is_404(stack: Stack) -> None:
    async with stack.client() as http:
        response = await http.get("/fhir/Patient/nobody-here/_history")
    assert response.status_code == 404 and response.json()["resourceType"] == "OperationOutcome"


async def test_patch_applies_json_patch_and_answers_the_new_version(stack: Stack) -> None:
    async with stack.client() as http:
        pid = (await create(http, patient(family="Patchme"))).json()["id"]
        ops = [
            {"op": "replace", "path": "/name/0/family", "value": "Patched"},
            {"op": "add", "path": "/gender", "value": "other"},
        ]
        response = await http.patch(
            f"/fhir/Patient/{pid}", content=orjson.dumps(ops), headers={**PATCH, "If-Match": 'W/"1"'}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"][0]["family"] == "Patched" and body["gender"] == "other"
    assert body["meta"]["versionId"] == "2" and response.headers["etag"] == 'W/"2"'


async def test_patch_with_a_stale_if_match_is_412_and_of_a_missing_resource_404(stack: Stack) -> None:
    ops = orjson.dumps([{"op": "add", "path": "/active", "value": True}])
    async with stack.client() as http:
        pid = (await create(http, patient())).json()["id"]
        stale = await http.patch(f"/fhir/Patient/{pid}", content=ops, headers={**PATCH, "If-Match": 'W/"7"'})
        missing = await http.patch("/fhir/Patient/no-such-patient", content=ops, headers=PATCH)
    assert stale.status_code == 412 and missing.status_code == 404


async def test_patch_whose_result_is_invalid_or_whose_test_fails_is_422(stack: Stack) -> None:
    async with stack.client() as http:
        pid = (await create(http, patient())).json()["id"]
        invalid = await http.patch(
            f"/fhir/Patient/{pid}",
            content=orjson.dumps([{"op": "add", "path": "/gender", "value": "femal"}]),
            headers=PATCH,
        )
        failed_test = await http.patch(
            f"/fhir/Patient/{pid}",
            content=orjson.dumps([{"op": "test", "path": "/active", "value": True}]),
            headers=PATCH,
        )
        current = await http.get(f"/fhir/Patient/{pid}")
    assert invalid.status_code == 422 and "Patient.gender" in invalid.json()["issue"][0]["diagnostics"]
    assert failed_test.status_code == 422 and failed_test.json()["issue"][0]["code"] == "processing"
    assert current.json()["meta"]["versionId"] == "1"  # nothing was written


async def test_conditional_create_creates_once_then_returns_the_match_and_412_on_several(
    stack: Stack,
) -> None:
    npi = uuid.uuid4().hex[:10]
    criteria = f"identifier=urn:test:npi|{npi}"
    async with stack.client() as http:
        first = await create(http, practitioner(npi), **{"If-None-Exist": criteria})
        second = await create(http, practitioner(npi), **{"If-None-Exist": criteria})
        await create(http, practitioner(npi))  # a plain create makes a second match
        third = await http.post(
            "/fhir/Practitioner",
            content=orjson.dumps(practitioner(npi)),
            headers={**FHIR, "If-None-Exist": criteria},
        )
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert third.status_code == 412 and third.json()["issue"][0]["code"] == "conflict"


async def test_twenty_concurrent_conditional_creates_through_the_gateway_make_one_patient(
    stack: Stack,
) -> None:
    mrn = uuid.uuid4().hex[:10]
    async with stack.client() as http:
        responses = await asyncio.gather(
            *(
                http.post("/fhir/Patient", content=orjson.dumps(patient(mrn)),
                          headers={**FHIR, "If-None-Exist": f"identifier=urn:test:mrn|{mrn}"})
                for _ in range(20)
            )
        )  # fmt: skip
        found = (await http.get("/fhir/Patient", params={"identifier": f"urn:test:mrn|{mrn}"})).json()
    assert sorted(r.status_code for r in responses) == [200] * 19 + [201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(found["entry"]) == 1


async def test_conditional_update_creates_updates_and_refuses_ambiguity(stack: Stack) -> None:
    npi = uuid.uuid4().hex[:10]
    url = f"/fhir/Practitioner?identifier=urn:test:npi|{npi}"
    async with stack.client() as http:
        created = await http.put(url, content=orjson.dumps(practitioner(npi, family="One")), headers=FHIR)
        updated = await http.put(url, content=orjson.dumps(practitioner(npi, family="Two")), headers=FHIR)
        await create(http, practitioner(npi))
        ambiguous = await http.put(url, content=orjson.dumps(practitioner(npi)), headers=FHIR)
    assert created.status_code == 201, created.text
    assert updated.status_code == 200 and updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    assert ambiguous.status_code == 412


async def test_conditional_delete_removes_the_single_match_and_refuses_several(stack: Stack) -> None:
    npi = uuid.uuid4().hex[:10]
    url = f"/fhir/Practitioner?identifier=urn:test:npi|{npi}"
    async with stack.client() as http:
        pid = (await create(http, practitioner(npi))).json()["id"]
        deleted = await http.delete(url)
        gone = await http.get(f"/fhir/Practitioner/{pid}")
        nothing = await http.delete(url)
        await create(http, practitioner(npi))
        await create(http, practitioner(npi))
        several = await http.delete(url)
    assert deleted.status_code == 200 and gone.status_code == 410
    assert nothing.status_code == 204
    assert several.status_code == 412


async def test_search_by_post_merges_the_form_body_with_the_url_query(stack: Stack) -> None:
    mrn = uuid.uuid4().hex[:10]
    async with stack.client() as http:
        pid = (await create(http, patient(mrn, family="Postsearch"))).json()["id"]
        response = await http.post(
            "/fhir/Patient/_search?family=Postsearch",
            content=f"identifier=urn:test:mrn|{mrn}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset" and [e["resource"]["id"] for e in bundle["entry"]] == [pid]


async def test_unknown_search_parameters_are_400_unless_handling_is_lenient(stack: Stack) -> None:
    async with stack.client() as http:
        strict = await http.get("/fhir/Patient", params={"favourite-colour": "blue"})
        lenient = await http.get("/fhir/Patient", params={"favourite-colour": "blue", "_count": "1"},
                                 headers={"Prefer": "handling=lenient"})  # fmt: skip
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"
    assert lenient.status_code == 200 and lenient.json()["type"] == "searchset"


async def test_every_write_puts_its_lifecycle_event_in_the_owner_outbox(stack: Stack) -> None:
    store = stack.intake.runtime.store
    async with stack.client() as http:
        pid = (await create(http, patient())).json()["id"]
        body = (await http.get(f"/fhir/Patient/{pid}")).json()
        await http.put(f"/fhir/Patient/{pid}", content=orjson.dumps(body), headers=FHIR)
        await http.delete(f"/fhir/Patient/{pid}")
    async with store.connect() as connection:
        o = store.tables.outbox
        rows = (
            await connection.execute(select(o.c.value).where(o.c.key == pid.encode()).order_by(o.c.seq))
        ).all()
    types = [orjson.loads(row.value)["type"] for row in rows]
    assert types == [f"org.carebridge.fhir.Patient.{a}.v1" for a in ("created", "updated", "deleted")]
