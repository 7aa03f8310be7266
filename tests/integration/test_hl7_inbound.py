"""Applying translated HL7 v2 messages (the gateway's transaction Bundles) in intake, careplan and
referral: merge semantics, conditional references, the Patient identifier index, $merge.

Most tests apply a Bundle directly on a real store (SQLite and PostgreSQL); the last one runs
the whole path through the broker and the four running services. Bundles are hand-built in the
shape `services.gateway.hl7.translate.bundle` produces; every identifier is synthetic.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.careplan.handlers import on_patient_event
from services.gateway.hl7.context import Identity, conditional_url, reference
from shared.errors import DependencyUnavailable, PoisonMessage
from shared.events import CloudEvent, topics
from shared.events.producer import start_producer
from shared.fhir.inbound import (
    PATIENT_IDENTIFIERS,
    Applied,
    apply_translated_bundle,
    merge_resource,
    union_identifiers,
)
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.settings import ServiceSettings
from shared.store import Store
from tests.integration.stack import Stack, eventually

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5.99"
NPI = "http://hl7.org/fhir/sid/us-npi"


# --- building Bundles the way the gateway does ---------------------------------------------------


def mrn() -> Identity:
    return Identity(MRN_SYSTEM, f"SYN-{uuid.uuid4().hex[:10]}")


def local(kind: str) -> Identity:
    return Identity(f"urn:carebridge:hl7v2:{kind}", uuid.uuid4().hex[:12])


def put(rtype: str, identity: Identity, **elements: Any) -> Any:
    """A conditional update on the identity; `source=` names the archived message (meta.source)."""
    source = elements.pop("source", "urn:carebridge:hl7v2:archive:1")
    resource = {"resourceType": rtype, "identifier": [identity.as_identifier()], **elements}
    resource["meta"] = {"source": source}
    return {"resource": resource, "request": {"method": "PUT", "url": conditional_url(rtype, identity)}}


def merge(source: Identity, target: Identity) -> dict[str, Any]:
    parameters = [
        {"name": "source-patient-identifier", "valueIdentifier": source.as_identifier()},
        {"name": "target-patient-identifier", "valueIdentifier": target.as_identifier()},
    ]
    return {
        "resource": {"resourceType": "Parameters", "parameter": parameters},
        "request": {"method": "POST", "url": "Patient/$merge"},
    }


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def patient(identity: Identity, family: str = "Synthetic", **extra: Any) -> dict[str, Any]:
    return put("Patient", identity, name=[{"family": family, "given": ["Alex"]}], gender="unknown", **extra)


def encounter(identity: Identity, subject: Identity, status: str = "in-progress", **extra: Any) -> Any:
    return put(
        "Encounter",
        identity,
        status=status,
        subject=reference("Patient", subject),
        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}},
        **extra,
    )


def condition(identity: Identity, subject: Identity, visit: Identity) -> dict[str, Any]:
    return put(
        "Condition",
        identity,
        subject=reference("Patient", subject),
        encounter=reference("Encounter", visit),
        code={"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F32.2"}]},
    )


def admission(who: Identity, visit: Identity, diagnosis: Identity) -> dict[str, Any]:
    return bundle(
        patient(who),
        encounter(visit, who, period={"start": "2024-05-01T09:30:00+00:00"}),
        condition(diagnosis, who, visit),
    )


# --- applying on a real store ------------------------------------------------------------------------


@dataclass
class Holder:
    store: Store
    settings: ServiceSettings


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    yield store
    await store.close()


def rest_of(store: Store, service: str) -> FhirRest:
    return FhirRest(Holder(store, ServiceSettings(service_name=service)), OWNED_TYPES[service])


async def apply(
    rest: FhirRest, message: dict[str, Any], sent_at: datetime | None = None, **kwargs: Any
) -> Applied:
    async with rest.store.transaction() as tx:
        return await apply_translated_bundle(
            rest, tx, message, sent_at=sent_at or datetime.now(UTC), **kwargs
        )


async def find(store: Store, rtype: str, identity: Identity) -> dict[str, Any]:
    [found] = await store.search(rtype, token={"identifier": (identity.system, identity.value)}, limit=5)
    resource: dict[str, Any] = orjson.loads(found.content)
    return resource


async def read(store: Store, rtype: str, id_: str) -> dict[str, Any]:
    resource: dict[str, Any] = orjson.loads((await store.read(rtype, id_)).content)
    return resource


# --- intake -------------------------------------------------------------------------------------------


async def test_intake_creates_an_admission_with_references_resolved_to_its_own_ids(store: Store) -> None:
    rest = rest_of(store, "intake")
    who, visit, diagnosis = mrn(), local("encounter"), local("condition")

    applied = await apply(rest, admission(who, visit, diagnosis))

    pat = await find(store, "Patient", who)
    enc = await find(store, "Encounter", visit)
    cond = await find(store, "Condition", diagnosis)
    assert len(applied.written) == 3 and not applied.unchanged
    assert enc["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert cond["subject"] == {"reference": f"Patient/{pat['id']}"}
    assert cond["encounter"] == {"reference": f"Encounter/{enc['id']}"}
    assert pat["meta"]["source"] == "urn:carebridge:hl7v2:archive:1"
    assert await store.outbox_pending_count() == 3


async def test_the_same_bundle_again_writes_no_version_and_no_event(store: Store) -> None:
    rest = rest_of(store, "intake")
    message = admission(mrn(), local("encounter"), local("condition"))
    first = await apply(rest, message)
    events = await store.outbox_pending_count()

    again = await apply(rest, message)

    assert again.written == [] and sorted(again.unchanged) == sorted(first.written)
    for label in first.written:
        rtype, id_ = label.split("/")
        assert (await store.read(rtype, id_)).version_id == 1
    assert await store.outbox_pending_count() == events


async def test_a_resend_from_another_archived_message_changes_nothing_either(store: Store) -> None:
    rest = rest_of(store, "intake")
    who = mrn()
    await apply(rest, bundle(patient(who)))
    resent = bundle(patient(who, source="urn:carebridge:hl7v2:archive:2"))

    assert (await apply(rest, resent)).written == []
    assert (await find(store, "Patient", who))["meta"]["versionId"] == "1"


async def test_a_discharge_updates_the_same_encounter_and_leaves_the_unchanged_patient_alone(
    store: Store,
) -> None:
    rest = rest_of(store, "intake")
    who, visit = mrn(), local("encounter")
    await apply(rest, admission(who, visit, local("condition")))
    admitted = await find(store, "Encounter", visit)

    discharge = bundle(
        patient(who),
        encounter(
            visit,
            who,
            status="finished",
            period={"start": "2024-05-01T09:30:00+00:00", "end": "2024-05-09T14:00:00+00:00"},
            hospitalization={"dischargeDisposition": {"coding": [{"code": "home"}]}},
        ),
    )
    applied = await apply(rest, discharge)

    discharged = await find(store, "Encounter", visit)
    assert discharged["id"] == admitted["id"] and discharged["meta"]["versionId"] == "2"
    assert discharged["status"] == "finished"
    assert discharged["period"]["end"] == "2024-05-09T14:00:00+00:00"
    assert applied.written == [f"Encounter/{admitted['id']}"]
    assert (await find(store, "Patient", who))["meta"]["versionId"] == "1"


async def test_a_null_element_in_the_message_removes_it_from_the_stored_resource(store: Store) -> None:
    rest = rest_of(store, "intake")
    who, visit = mrn(), local("encounter")
    disposition = {"dischargeDisposition": {"coding": [{"code": "home"}]}}
    await apply(
        rest, bundle(patient(who), encounter(visit, who, status="finished", hospitalization=disposition))
    )

    # A13 (cancel discharge): back in progress, the discharge disposition taken back.
    await apply(rest, bundle(encounter(visit, who, hospitalization=None)))

    cancelled = await find(store, "Encounter", visit)
    assert cancelled["status"] == "in-progress" and "hospitalization" not in cancelled
    assert cancelled["meta"]["versionId"] == "2"


async def test_what_the_message_does_not_carry_is_kept_and_identifiers_are_unioned(store: Store) -> None:
    rest = rest_of(store, "intake")
    who = mrn()
    await apply(rest, bundle(patient(who)))
    stored = await find(store, "Patient", who)
    phone = [{"system": "phone", "value": "555-0100"}]
    async with store.transaction() as tx:  # a case manager adds a phone number over FHIR REST
        await rest.update(tx, "Patient", stored["id"], {**stored, "telecom": phone})

    ssn = {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-00-0000"}
    a08 = patient(who, family="Renamed")
    a08["resource"]["identifier"].append(ssn)
    await apply(rest, bundle(a08))

    updated = await find(store, "Patient", who)
    assert updated["id"] == stored["id"] and updated["meta"]["versionId"] == "3"
    assert updated["telecom"] == phone
    assert updated["name"] == [{"family": "Renamed", "given": ["Alex"]}]
    assert updated["identifier"] == [who.as_identifier(), ssn]


async def test_merge_links_both_records_and_repoints_the_clinical_record_once(store: Store) -> None:
    rest = rest_of(store, "intake")
    old, new, visit, diagnosis, next_of_kin = (
        mrn(),
        mrn(),
        local("encounter"),
        local("condition"),
        local("nk1"),
    )
    kin = put("RelatedPerson", next_of_kin, patient=reference("Patient", old), name=[{"family": "Kin"}])
    await apply(rest, bundle(*admission(old, visit, diagnosis)["entry"], kin))
    source = await find(store, "Patient", old)

    a40 = bundle(patient(new, family="Survivor"), merge(old, new))
    await apply(rest, a40)

    target = await find(store, "Patient", new)
    source = await read(store, "Patient", source["id"])
    assert source["active"] is False
    assert source["link"] == [{"other": {"reference": f"Patient/{target['id']}"}, "type": "replaced-by"}]
    assert target["link"] == [{"other": {"reference": f"Patient/{source['id']}"}, "type": "replaces"}]
    moved = f"Patient/{target['id']}"
    assert (await find(store, "Encounter", visit))["subject"]["reference"] == moved
    assert (await find(store, "Condition", diagnosis))["subject"]["reference"] == moved
    assert (await find(store, "RelatedPerson", next_of_kin))["patient"]["reference"] == moved

    events = await store.outbox_pending_count()
    again = await apply(rest, a40)
    assert again.written == [] and await store.outbox_pending_count() == events


async def test_a_later_message_about_the_merged_away_identifier_lands_on_the_survivor(store: Store) -> None:
    rest = rest_of(store, "intake")
    old, new = mrn(), mrn()
    await apply(rest, bundle(patient(old)))
    await apply(rest, bundle(patient(new), merge(old, new)))
    source = await find(store, "Patient", old)
    target = await find(store, "Patient", new)

    later_visit = local("encounter")
    await apply(rest, bundle(patient(old, family="Later"), encounter(later_visit, old)))

    assert (await find(store, "Encounter", later_visit))["subject"]["reference"] == f"Patient/{target['id']}"
    assert (await read(store, "Patient", source["id"]))["meta"] == source["meta"]  # untouched
    survivor = await read(store, "Patient", target["id"])
    assert survivor["name"][0]["family"] == "Later"
    # The old MRN stays with the merged-away record: it still selects exactly one Patient.
    assert survivor["identifier"] == [new.as_identifier()]
    assert (await find(store, "Patient", old))["id"] == source["id"]


async def test_a_merge_that_arrives_before_the_source_records_it_and_redirects_it_later(store: Store) -> None:
    # The A40 travels under the survivor's key, the source's own A04 under its own: another
    # partition, so it may be applied after the merge.
    rest = rest_of(store, "intake")
    old, new, visit = mrn(), mrn(), local("encounter")

    applied = await apply(rest, bundle(patient(new), merge(old, new)))
    await apply(rest, bundle(patient(old, family="Late"), encounter(visit, old)))

    assert applied.notes == ["Patient/$merge: source not known here; recorded as merged away"]
    target = await find(store, "Patient", new)
    placeholder = await find(store, "Patient", old)
    assert placeholder["active"] is False
    assert placeholder["link"] == [{"other": {"reference": f"Patient/{target['id']}"}, "type": "replaced-by"}]
    assert target["link"] == [{"other": {"reference": f"Patient/{placeholder['id']}"}, "type": "replaces"}]
    assert target["name"][0]["family"] == "Late"
    assert (await find(store, "Encounter", visit))["subject"]["reference"] == f"Patient/{target['id']}"
    assert (await apply(rest, bundle(patient(new, family="Late"), merge(old, new)))).written == []


async def test_a_reference_to_an_owned_resource_that_does_not_exist_is_poison(store: Store) -> None:
    rest = rest_of(store, "intake")
    orphan = bundle(condition(local("condition"), mrn(), local("encounter")))
    with pytest.raises(PoisonMessage):
        await apply(rest, orphan)
    assert await store.outbox_pending_count() == 0


# --- careplan and referral: the Patient identifier index ----------------------------------------------


def patient_event(id_: str, identity: Identity, version: int = 1, **extra: Any) -> CloudEvent:
    data = {
        "resourceType": "Patient",
        "id": id_,
        "meta": {"versionId": str(version)},
        "identifier": [identity.as_identifier()],
        **extra,
    }
    return CloudEvent(
        type=topics.resource_event_type("Patient", "updated"), source="carebridge/intake", data=data
    )


async def project(store: Store, event: CloudEvent) -> None:
    async with store.transaction() as tx:
        await on_patient_event(rest_of(store, "careplan"))(event, tx)


def appointment(identity: Identity, who: Identity, clinician: Identity) -> dict[str, Any]:
    return put(
        "Appointment",
        identity,
        status="booked",
        start="2024-05-16T10:00:00+00:00",
        end="2024-05-16T10:30:00+00:00",
        participant=[
            {"actor": reference("Patient", who, "Alex Synthetic"), "status": "accepted"},
            {"actor": reference("Practitioner", clinician, "Dr Sample"), "status": "accepted"},
        ],
    )


async def test_careplan_resolves_the_appointment_patient_through_the_identifier_index(store: Store) -> None:
    rest = rest_of(store, "careplan")
    who, visit, slot, clinician = mrn(), local("encounter"), local("appointment"), Identity(NPI, "1234567893")
    await project(store, patient_event("p-1", who))
    assert (await store.get_projection(PATIENT_IDENTIFIERS, who.token)) is not None

    applied = await apply(
        rest, bundle(patient(who), encounter(visit, who), appointment(slot, who, clinician))
    )

    booked = await find(store, "Appointment", slot)
    assert booked["participant"][0]["actor"] == {"reference": "Patient/p-1", "display": "Alex Synthetic"}
    assert booked["participant"][1]["actor"] == {
        "display": "Dr Sample",
        "type": "Practitioner",
        "identifier": {"system": NPI, "value": "1234567893"},
    }
    assert applied.skipped == 2 and applied.written == [f"Appointment/{booked['id']}"]


async def test_careplan_waits_for_a_patient_intake_has_not_published_then_dead_letters_it(
    store: Store,
) -> None:
    rest = rest_of(store, "careplan")
    who, slot = mrn(), local("appointment")
    message = bundle(appointment(slot, who, Identity(NPI, "1234567893")))

    with pytest.raises(DependencyUnavailable):  # retried by the consumer
        await apply(rest, message)
    with pytest.raises(PoisonMessage):  # too old to wait for: to the DLQ, replayable
        await apply(rest, message, sent_at=datetime.now(UTC) - timedelta(minutes=11))
    assert await store.outbox_pending_count() == 0

    await project(store, patient_event("p-late", who))
    await apply(rest, message)
    assert (await find(store, "Appointment", slot))["participant"][0]["actor"][
        "reference"
    ] == "Patient/p-late"


async def test_careplan_follows_a_merged_patient_to_its_survivor(store: Store) -> None:
    rest = rest_of(store, "careplan")
    old, new, slot = mrn(), mrn(), local("appointment")
    await project(store, patient_event("p-old", old))
    await project(store, patient_event("p-new", new))
    survivor_link = [{"other": {"reference": "Patient/p-new"}, "type": "replaced-by"}]
    await project(store, patient_event("p-old", old, version=2, active=False, link=survivor_link))

    await apply(rest, bundle(appointment(slot, old, Identity(NPI, "1234567893"))))

    assert (await find(store, "Appointment", slot))["participant"][0]["actor"]["reference"] == "Patient/p-new"


def referral_bundle(who: Identity, request: Identity, clinician: Identity, visit: Identity) -> dict[str, Any]:
    service_request = put(
        "ServiceRequest",
        request,
        status="active",
        intent="order",
        subject=reference("Patient", who),
        requester=reference("Practitioner", clinician),
        encounter=reference("Encounter", visit, "Inpatient stay"),
    )
    practitioner = put("Practitioner", clinician, name=[{"family": "Sample", "prefix": ["Dr"]}])
    # The ServiceRequest comes first: a reference to a later entry of the same Bundle resolves too.
    return bundle(patient(who), encounter(visit, who), service_request, practitioner)


async def test_referral_resolves_its_own_practitioner_and_makes_the_encounter_a_logical_reference(
    store: Store,
) -> None:
    rest = rest_of(store, "referral")
    who, request, clinician, visit = mrn(), local("referral"), Identity(NPI, "1234567893"), local("encounter")
    await project(store, patient_event("p-ref", who))

    await apply(rest, referral_bundle(who, request, clinician, visit))

    practitioner = await find(store, "Practitioner", clinician)
    referral = await find(store, "ServiceRequest", request)
    assert referral["requester"] == {"reference": f"Practitioner/{practitioner['id']}"}
    assert referral["subject"] == {"reference": "Patient/p-ref"}
    assert referral["encounter"] == {
        "display": "Inpatient stay",
        "type": "Encounter",
        "identifier": {"system": visit.system, "value": visit.value},
    }
    assert (await apply(rest, referral_bundle(who, request, clinician, visit))).written == []


def test_merge_semantics_replace_top_level_elements_union_identifiers_and_drop_nulls() -> None:
    stored = {
        "resourceType": "Patient",
        "id": "p",
        "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00.000+00:00", "tag": [{"code": "x"}]},
        "identifier": [{"system": "a", "value": "1", "use": "usual"}],
        "telecom": [{"system": "phone", "value": "1"}],
        "deceasedBoolean": False,
        "name": [{"family": "Old"}],
    }
    incoming = {
        "resourceType": "Patient",
        "meta": {"source": "urn:m"},
        "identifier": [{"system": "b", "value": "2"}, {"system": "a", "value": "1", "type": {"text": "MR"}}],
        "name": [{"family": "New"}],
        "deceasedBoolean": None,
    }
    assert merge_resource(stored, incoming) == {
        "resourceType": "Patient",
        "id": "p",
        "identifier": [
            {"system": "a", "value": "1", "use": "usual", "type": {"text": "MR"}},
            {"system": "b", "value": "2"},
        ],
        "telecom": [{"system": "phone", "value": "1"}],
        "name": [{"family": "New"}],
        "meta": {"tag": [{"code": "x"}], "source": "urn:m"},
    }
    assert union_identifiers([], [{"value": "v"}, {"value": "v"}]) == [{"value": "v"}]


# --- end to end: through the broker, with the four services running ------------------------------------


async def test_a_published_message_is_applied_by_each_owner_and_careplan_waits_for_the_patient(
    stack: Stack,
) -> None:
    who, visit, slot = mrn(), local("encounter"), local("appointment")
    request, clinician = local("referral"), Identity(NPI, "1234567893")
    services = (stack.intake, stack.careplan, stack.referral)
    await eventually(lambda: _all_ready(services), timeout=30)
    producer = await start_producer(stack.settings)

    async def publish(message: dict[str, Any]) -> CloudEvent:
        event = CloudEvent(
            type=topics.HL7_TRANSLATED_EVENT,
            source="carebridge/gateway",
            subject=f"hl7v2/{uuid.uuid4()}",
            data=message,
        )
        topic = stack.settings.topic(topics.HL7_TRANSLATED)
        await (await producer.send(topic, event.to_json(), key=who.token.encode()))
        return event

    try:
        # A SIU that arrives before any message registered the Patient: careplan waits for it.
        await publish(bundle(appointment(slot, who, clinician)))
        await asyncio.sleep(1.0)
        assert await _search(stack, "Appointment", slot) == []

        ref_message = referral_bundle(who, request, clinician, visit)
        applied = await publish(ref_message)
        pat = (await eventually(lambda: _search(stack, "Patient", who)))[0]
        enc = (await eventually(lambda: _search(stack, "Encounter", visit)))[0]
        assert enc["subject"]["reference"] == f"Patient/{pat['id']}"
        booked = (await eventually(lambda: _search(stack, "Appointment", slot)))[0]
        assert booked["participant"][0]["actor"]["reference"] == f"Patient/{pat['id']}"
        referral = (await eventually(lambda: _search(stack, "ServiceRequest", request)))[0]
        assert referral["subject"]["reference"] == f"Patient/{pat['id']}"
        assert referral["requester"]["reference"].startswith("Practitioner/")

        # The same message published again (a new event id, e.g. a DLQ replay) changes nothing.
        resent = await publish(ref_message)
        for service in services:
            await eventually(functools.partial(_processed, service, resent))
            assert await _processed(service, applied)
        for rtype, identity in (("Patient", who), ("Encounter", visit), ("ServiceRequest", request)):
            [again] = await _search(stack, rtype, identity)
            assert again["meta"]["versionId"] == "1", rtype
    finally:
        await producer.stop()


async def _processed(service: Any, event: CloudEvent) -> bool:
    runtime = service.runtime
    return await runtime.store.inbox_contains(f"{runtime.settings.service_name}.hl7", event.id)


async def _all_ready(services: Any) -> bool:
    return all(
        any(r.ready.is_set() and r.consumer_name.endswith(".hl7") for r in s.runtime.runners)
        for s in services
    )


async def _search(stack: Stack, rtype: str, identity: Identity) -> list[dict[str, Any]]:
    async with stack.client() as http:
        response = await http.get(f"/fhir/{rtype}", params={"identifier": identity.token})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]
