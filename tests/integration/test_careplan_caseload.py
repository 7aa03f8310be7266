"""Caseload assignment on each database (SQLite and PostgreSQL): the directory copy kept from
referral's events, concurrent assignments that never put a case manager over their limit, and
a patient who keeps their case manager. Programs, roles and patients are synthetic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.careplan import caseload
from services.careplan.domain.caseload import ACT, CASE_MANAGEMENT_MODEL_SYSTEM, CASELOAD_LIMIT, ICM
from shared.events import CloudEvent, topics
from shared.events.topics import Action
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import FhirRest
from shared.settings import CareplanSettings
from shared.store import Store

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@dataclass
class Holder:
    store: Store
    settings: CareplanSettings


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url, extra_migrations=caseload.MIGRATIONS)
    yield store
    await store.close()


@pytest.fixture
def rest(store: Store) -> FhirRest:
    return FhirRest(Holder(store, CareplanSettings(database_url="unused")), OWNED_TYPES["careplan"])


def program(id_: str, model: str, version: int = 1, limit: int | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "HealthcareService",
        "id": id_,
        "meta": {"versionId": str(version)},
        "name": f"{model.upper()} team {id_}",
        "type": [{"coding": [{"system": CASE_MANAGEMENT_MODEL_SYSTEM, "code": model}]}],
        **extra,
    }
    if limit is not None:
        body["extension"] = [{"url": CASELOAD_LIMIT, "valueInteger": limit}]
    return body


def role(id_: str, *services: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": id_,
        "meta": {"versionId": str(version)},
        "practitioner": {"reference": f"Practitioner/pr-{id_}"},
        "healthcareService": [{"reference": f"HealthcareService/{s}"} for s in services],
        **extra,
    }


def event(resource: dict[str, Any], action: Action = "created") -> CloudEvent:
    return CloudEvent(
        type=topics.resource_event_type(resource["resourceType"], action),
        source="carebridge/referral",
        subject=f"{resource['resourceType']}/{resource['id']}",
        data=resource,
    )


async def apply(store: Store, *events: CloudEvent) -> None:
    handle = caseload.on_directory_event()
    for item in events:
        async with store.transaction() as tx:
            await handle(item, tx)


async def counts(store: Store, rest: FhirRest) -> dict[tuple[str, str], tuple[int, int]]:
    """(role, program) -> (count, limit)."""
    assert isinstance(rest.settings, CareplanSettings)
    async with store.connect() as connection:
        rows = await caseload.caseload_counts(connection, rest.settings)
    return {(r.role_id, r.program.id): (r.count, r.limit) for r in rows}


async def assign(rest: FhirRest, patient_id: str, **options: Any) -> caseload.Assignment | None:
    async with rest.store.transaction() as tx:
        return await caseload.assign_case_manager(rest, tx, patient_id, now=NOW, **options)


async def program_full_events(store: Store) -> list[dict[str, Any]]:
    records = await store.outbox_pending(1000)
    found = [orjson.loads(r.value) for r in records if b"program-full" in r.value]
    assert all(r.topic.endswith(topics.CAREPLAN) for r in records if b"program-full" in r.value)
    return [e for e in found if e["type"] == topics.PROGRAM_FULL_EVENT]


# --- the directory ------------------------------------------------------------------------------


async def test_directory_events_become_programs_and_case_managers_once_and_newest_wins(
    store: Store, rest: FhirRest
) -> None:
    act_v1 = event(program("act1", ACT))
    role_v1 = event(role("a", "act1"))
    await apply(store, act_v1, act_v1, role_v1, role_v1)  # the same events twice: one effect
    assert await counts(store, rest) == {("a", "act1"): (0, 10)}

    # Version 2 of the program sets its own limit; a late version 1 does not undo it.
    await apply(store, event(program("act1", ACT, version=2, limit=4), "updated"), act_v1)
    assert await counts(store, rest) == {("a", "act1"): (0, 4)}

    # The role moves to an ICM program; the older version arriving after changes nothing.
    await apply(store, event(program("icm1", ICM)), event(role("a", "icm1", version=2), "updated"), role_v1)
    assert await counts(store, rest) == {("a", "icm1"): (0, 20)}

    # Other resource types on the referral topic are ignored.
    other = {"resourceType": "Organization", "id": "org1", "meta": {"versionId": "1"}}
    await apply(store, event(other))
    psychiatrist = role(
        "psy",
        "icm1",
        code=[{"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "2084P0800X"}]}],
    )
    await apply(store, event(psychiatrist))
    assert await counts(store, rest) == {("a", "icm1"): (0, 20)}

    # A deleted role, and a deleted program, take no more clients.
    deleted_role = {"resourceType": "PractitionerRole", "id": "a", "meta": {"versionId": "3"}}
    await apply(store, event(role("b", "act1")), event(deleted_role, "deleted"))
    assert await counts(store, rest) == {("b", "act1"): (0, 4)}
    deleted_program = {"resourceType": "HealthcareService", "id": "act1", "meta": {"versionId": "3"}}
    await apply(store, event(deleted_program, "deleted"))
    assert await counts(store, rest) == {}


# --- assignment ---------------------------------------------------------------------------------


async def two_programs(store: Store) -> None:
    """ACT: limit 3, case managers a and b (6 places). ICM: limit 5, case manager c (5 places)."""
    await apply(
        store,
        event(program("act1", ACT, limit=3, providedBy={"reference": "Organization/clinic"})),
        event(program("icm1", ICM, limit=5)),
        event(role("a", "act1")),
        event(role("b", "act1")),
        event(role("c", "icm1")),
    )


async def test_twenty_concurrent_assignments_never_put_a_case_manager_over_the_limit(
    store: Store, rest: FhirRest
) -> None:
    await two_programs(store)
    patients = [f"cl-{n:02d}" for n in range(20)]

    results = await asyncio.gather(*(assign(rest, p) for p in patients))

    assigned = [r for r in results if r is not None]
    assert len(assigned) == 11
    assert await counts(store, rest) == {("a", "act1"): (3, 3), ("b", "act1"): (3, 3), ("c", "icm1"): (5, 5)}
    full = await program_full_events(store)
    assert len(full) == 9
    assert {e["subject"] for e in full} == {
        f"Patient/{r}" for r, a in zip(patients, results, strict=True) if a is None
    }
    programs = [p for p in full[0]["data"]["parameter"] if p["name"] == "program"]
    assert len(programs) == 2
    teams = await store.search("CareTeam", limit=100)
    assert len(teams) == 11
    assert {a.careteam_id for a in assigned} == {t.id for t in teams}
    by_role = {role_id: [a.patient_id for a in assigned if a.role_id == role_id] for role_id in "abc"}
    async with store.connect() as connection:
        assert sorted(await caseload.caseload_of(connection, "pr-a")) == sorted(by_role["a"])


async def test_each_client_goes_to_the_lowest_load_relative_to_the_limit(
    store: Store, rest: FhirRest
) -> None:
    await two_programs(store)
    chosen = []
    for n in range(7):
        result = await assign(rest, f"bal-{n}")
        assert result is not None and result.new
        chosen.append(result.role_id)
    # All at 0: a, then b, then c (role id). Then c at 1/5 < 1/3, then a and b (1/3 < 2/5), and so on.
    assert chosen == ["a", "b", "c", "c", "a", "b", "c"]
    assert await counts(store, rest) == {("a", "act1"): (2, 3), ("b", "act1"): (2, 3), ("c", "icm1"): (3, 5)}


async def test_an_assigned_patient_keeps_their_case_manager_and_no_new_care_team_version(
    store: Store, rest: FhirRest
) -> None:
    await two_programs(store)
    first = await assign(rest, "keep-1")
    assert first is not None and first.new
    team = await store.read("CareTeam", first.careteam_id)
    assert team.version_id == 1
    body = orjson.loads(team.content)
    assert body["subject"] == {"reference": "Patient/keep-1"} and body["status"] == "active"
    outbox_before = len(await store.outbox_pending(1000))

    again = await assign(rest, "keep-1")

    assert again is not None and not again.new
    assert (again.role_id, again.program_id, again.careteam_id) == (
        first.role_id,
        first.program_id,
        first.careteam_id,
    )
    assert (await store.read("CareTeam", first.careteam_id)).version_id == 1
    assert len(await store.outbox_pending(1000)) == outbox_before


async def test_a_care_team_without_a_case_manager_gains_one_and_one_set_by_hand_is_kept(
    store: Store, rest: FhirRest
) -> None:
    await two_programs(store)
    category = {"coding": [{"system": "http://loinc.org", "code": "LA28865-6"}]}
    async with store.transaction() as tx:
        team = {
            "resourceType": "CareTeam",
            "status": "active",
            "category": [category],
            "subject": {"reference": "Patient/team-1"},
            "participant": [
                {"role": [{"text": "Peer support"}], "member": {"reference": "Practitioner/peer"}}
            ],
        }
        existing = (await rest.create(tx, "CareTeam", team)).stored.id

    result = await assign(rest, "team-1", program_id="icm1")

    assert result is not None and (result.role_id, result.careteam_id) == ("c", existing)
    updated = await store.read("CareTeam", existing)
    assert updated.version_id == 2 and len(orjson.loads(updated.content)["participant"]) == 2

    async with store.transaction() as tx:
        by_hand = {
            **team,
            "subject": {"reference": "Patient/team-2"},
            "participant": [
                {
                    "role": [{"coding": [{"system": "http://snomed.info/sct", "code": "768820003"}]}],
                    "member": {"reference": "Practitioner/someone"},
                }
            ],
        }
        manual = (await rest.create(tx, "CareTeam", by_hand)).stored.id
    kept = await assign(rest, "team-2")
    assert kept is not None and not kept.new
    assert (kept.practitioner, kept.careteam_id, kept.assigned_at) == ("Practitioner/someone", manual, None)
    assert (await store.read("CareTeam", manual)).version_id == 1


async def test_a_restricted_assignment_reports_only_the_program_asked_for(
    store: Store, rest: FhirRest
) -> None:
    await two_programs(store)
    for n in range(6):
        assert await assign(rest, f"act-{n}", model=ACT) is not None

    assert await assign(rest, "act-6", model=ACT) is None

    (full,) = await program_full_events(store)
    assert full["subject"] == "Patient/act-6"
    (program_part,) = [p for p in full["data"]["parameter"] if p["name"] == "program"]
    parts = {p["name"]: p for p in program_part["part"]}
    assert parts["healthcareService"]["valueReference"]["reference"] == "HealthcareService/act1"
    assert (parts["limit"]["valueInteger"], parts["caseManagers"]["valueInteger"]) == (3, 2)
    assert parts["clients"]["valueInteger"] == 6


async def test_release_gives_the_place_back_and_ends_the_case_manager_on_the_team(
    store: Store, rest: FhirRest
) -> None:
    await apply(store, event(program("solo", ICM, limit=1)), event(role("s", "solo")))
    first = await assign(rest, "rel-1")
    assert first is not None and await assign(rest, "rel-2") is None

    async with store.transaction() as tx:
        released = await caseload.release(rest, tx, "rel-1", now=NOW)
    async with store.transaction() as tx:
        assert await caseload.release(rest, tx, "rel-1", now=NOW) is None

    assert released is not None and released.role_id == "s"
    team = orjson.loads((await store.read("CareTeam", first.careteam_id)).content)
    assert team["participant"][0]["period"]["end"].startswith("2025-03-03")
    second = await assign(rest, "rel-2")
    assert second is not None and second.role_id == "s"
    assert await counts(store, rest) == {("s", "solo"): (1, 1)}
