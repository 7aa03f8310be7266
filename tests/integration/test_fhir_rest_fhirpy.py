"""The REST interactions driven by a FHIR client library nobody here wrote (fhirpy, from PyPI)
through the gateway: what an EHR integration built on it would do."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, ResourceNotFound

from tests.integration.stack import Stack


def client(stack: Stack) -> AsyncFHIRClient:
    return AsyncFHIRClient(stack.fhir, authorization=f"Bearer {stack.token}")


async def test_fhirpy_creates_reads_updates_patches_refreshes_and_deletes_a_patient(stack: Stack) -> None:
    fhir = client(stack)
    patient = fhir.resource("Patient", name=[{"family": "Fhirpy", "given": ["Flo"]}], gender="female")
    await patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"

    fetched = await fhir.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == "Fhirpy"

    patient["birthDate"] = "1990-01-02"
    await patient.save()  # PUT
    assert patient["meta"]["versionId"] == "2"

    await patient.refresh()  # If-None-Match: 304, nothing to reload
    assert patient["meta"]["versionId"] == "2"

    await patient.patch(active=True)  # PATCH with a JSON object: merge patch
    assert patient["active"] is True and patient["meta"]["versionId"] == "3"

    await patient.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone
        await fhir.reference("Patient", patient.id).to_resource()
    history = await fhir.execute(f"Patient/{patient.id}/_history", method="get")
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "PUT", "POST"]


async def test_fhirpy_update_with_a_stale_if_match_is_refused(stack: Stack) -> None:
    fhir = client(stack)
    patient = fhir.resource("Patient", name=[{"family": "Stale"}])
    await patient.save()
    body = patient.serialize()
    await fhir._do_request("put", f"Patient/{patient.id}", data=body, extra_headers={"If-Match": 'W/"1"'})
    with pytest.raises(MultipleResourcesFound):  # fhirpy's name for any 412
        await fhir._do_request("put", f"Patient/{patient.id}", data=body, extra_headers={"If-Match": 'W/"1"'})


async def test_fhirpy_conditional_create_raced_from_twenty_tasks_gives_one_patient(stack: Stack) -> None:
    fhir = client(stack)
    mrn = uuid.uuid4().hex[:10]

    async def create() -> str:
        patient = fhir.resource("Patient", identifier=[{"system": "urn:test:fhirpy", "value": mrn}])
        await patient.create(identifier=f"urn:test:fhirpy|{mrn}")
        return str(patient.id)

    ids = await asyncio.gather(*(create() for _ in range(20)))
    found = await fhir.resources("Patient").search(identifier=f"urn:test:fhirpy|{mrn}").fetch_all()
    assert len(set(ids)) == 1 and [p.id for p in found] == [ids[0]]
