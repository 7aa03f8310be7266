"""The directory on both databases, through referral's FHIR interactions without HTTP: an update
that changes nothing writes nothing, the matching index follows creates, updates and deletes,
the needs consumer applies the same event once and never goes back to older needs, and $match
answers from both projections. Synthetic data only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from services.referral import directory, matching
from services.referral.domain import directory_codes as codes
from services.referral.handlers import PATIENTS
from shared.events import CloudEvent, topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import Dispatcher, FhirRest, RestRequest
from shared.settings import ReferralSettings
from shared.store import Store
from tests.unit.referral.directory_fixture import location, service

FHIR_JSON = {"content-type": "application/fhir+json"}


@dataclass
class Holder:
    store: Store
    settings: ReferralSettings


@pytest.fixture
async def rest(database_url: str) -> AsyncIterator[FhirRest]:
    store = await Store.open(database_url)
    cache = directory.DirectoryCache()
    yield FhirRest(
        Holder(store, ReferralSettings(database_url="unused")),
        OWNED_TYPES["referral"],
        hooks=directory.hooks(),
        operations=matching.operations(cache),
    )
    await store.close()


async def put(rest: FhirRest, resource: dict[str, Any]) -> Any:
    async with rest.store.transaction() as tx:
        return await rest.update(tx, resource["resourceType"], resource["id"], resource)


async def test_an_update_that_changes_nothing_writes_no_version_and_no_event(rest: FhirRest) -> None:
    site = location("site-1", 40.0, -100.0)
    first = await put(rest, site)
    events = await rest.store.outbox_pending_count()
    again = await put(rest, {**site})
    assert (again.status, again.stored.version_id) == (200, first.stored.version_id)
    assert "unchanged" in again.message
    assert await rest.store.outbox_pending_count() == events
    changed = await put(rest, {**site, "name": "Renamed"})
    assert changed.stored.version_id == first.stored.version_id + 1
    assert await rest.store.outbox_pending_count() == events + 1


async def test_the_index_follows_creates_updates_and_deletes(rest: FhirRest) -> None:
    cache = directory.DirectoryCache()
    await put(rest, location("site-2", 40.0, -100.0))
    await put(rest, service("svc-a", site="site-2"))
    loaded = await cache.current(rest.store)
    assert set(loaded.index.by_id) >= {"svc-a"} and cache.reloads == 1
    assert await cache.current(rest.store) is loaded  # nothing changed: no reload

    await put(rest, service("svc-a", site="site-2", capacity=0))
    assert (await cache.current(rest.store)).index.by_id["svc-a"].capacity == 0
    async with rest.store.transaction() as tx:
        await rest.delete(tx, "HealthcareService", "svc-a")
    assert "svc-a" not in (await cache.current(rest.store)).index.by_id  # deletes have no hooks
    await put(rest, {**location("site-2", 40.0, -100.0), "status": "inactive"})
    await cache.current(rest.store)
    assert cache.reloads == 4


def needs_event(patient: str, *needs: str, time: str, event_id: str = "e1") -> CloudEvent:
    data = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}},
            {"name": "questionnaireResponse", "valueReference": {"reference": "QuestionnaireResponse/qr"}},
            *({"name": "need", "valueCoding": {"system": codes.SDOHCC, "code": n}} for n in needs),
        ],
    }
    return CloudEvent(type=topics.SDOH_NEEDS_EVENT, source="intake", data=data, time=time, id=event_id)


async def test_the_same_needs_event_twice_is_one_effect_and_older_needs_never_win(rest: FhirRest) -> None:
    handle = matching.on_triage_event()
    newer = needs_event("p-1", "homelessness", time="2026-11-18T10:00:00.000+00:00", event_id="new")
    older = needs_event("p-1", "food-insecurity", time="2026-11-17T10:00:00.000+00:00", event_id="old")
    other = CloudEvent(type=topics.RISK_IDENTIFIED_EVENT, source="intake", data={"resourceType": "Flag"})
    for event in (newer, newer, older, other):
        async with rest.store.transaction() as tx:
            await handle(event, tx)
    kept = await rest.store.get_projection(matching.NEEDS, "p-1")
    assert kept is not None and kept.change_count == 1
    assert [n["code"] for n in orjson.loads(kept.data)["needs"]] == ["homelessness"]


async def test_match_ranks_for_the_patients_projected_needs_language_and_position(rest: FhirRest) -> None:
    await put(rest, location("near", 40.0, -100.0))
    await put(rest, location("far", 40.3, -100.0))
    await put(rest, service("near-en", site="near", langs=("en",)))
    await put(rest, service("far-es", site="far", langs=("es",)))
    await put(rest, service("food", "food-insecurity", site="near"))
    patient = {
        "resourceType": "Patient",
        "id": "p-2",
        "meta": {"versionId": "1"},
        "communication": [
            {"language": {"coding": [{"system": codes.BCP47, "code": "es"}]}, "preferred": True}
        ],
    }
    async with rest.store.transaction() as tx:
        await tx.put_projection(PATIENTS, "p-2", 1, orjson.dumps(patient))
        await matching.on_triage_event()(needs_event("p-2", "homelessness", time="2026-11-18T10:00:00Z"), tx)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueReference": {"reference": "Patient/p-2"}},
            {"name": "latitude", "valueDecimal": 40.0},
            {"name": "longitude", "valueDecimal": -100.0},
            {"name": "now", "valueDateTime": "2026-11-18T15:00:00Z"},
        ],
    }
    request = RestRequest(
        "POST", "HealthcareService/$match", [], FHIR_JSON, "http://x/fhir", orjson.dumps(body)
    )
    answer = await Dispatcher(rest).handle(request)
    assert answer.status == 200
    matches = [e for e in orjson.loads(answer.body)["entry"] if e["search"]["mode"] == "match"]
    # English on site (0.85) narrowly beats Spanish 33 km away (0.833): the language's 0.15
    # against the distance's 0.2 x 33/40; the food service serves no need.
    assert [e["resource"]["id"] for e in matches] == ["near-en", "far-es"]
    assert matches[0]["search"]["score"] > matches[1]["search"]["score"]
