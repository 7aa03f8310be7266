"""The REST layer on each database (SQLite and PostgreSQL): history pages by resource, type and
system, and conditional create / update raced by concurrent clients giving exactly one resource
(the `conditional_keys` constraint, not only a lookup)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import pytest

from shared.fhir.rest import FhirRest
from shared.fhir.rest.history import history_bundle
from shared.settings import IntakeSettings
from shared.store import Store
from shared.store.versions import HistoryCursor


@dataclass
class Holder:
    store: Store
    settings: IntakeSettings


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    yield store
    await store.close()


def rest_over(store: Store) -> FhirRest:
    return FhirRest(Holder(store, IntakeSettings(database_url="unused")), ("Patient", "Observation"))


def patient(mrn: str, family: str = "Racer") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        "name": [{"family": family}],
    }


async def count_patients(store: Store, mrn: str) -> int:
    return len(await store.search("Patient", token={"identifier": ("urn:mrn", mrn)}, limit=100))


# --- history --------------------------------------------------------------------------------------


async def test_type_history_is_newest_first_with_deletions_and_no_other_types(store: Store) -> None:
    rest = rest_over(store)
    async with store.transaction() as tx:
        a = (await rest.create(tx, "Patient", patient("h1"))).stored
    async with store.transaction() as tx:
        await rest.create(
            tx, "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
        )
    async with store.transaction() as tx:
        await rest.update(tx, "Patient", a.id, {**patient("h1", "Renamed"), "id": a.id})
    async with store.transaction() as tx:
        await rest.delete(tx, "Patient", a.id)

    page = await store.history_page("Patient")
    assert [(v.id, v.version_id, v.deleted) for v in page] == [
        (a.id, 3, True),
        (a.id, 2, False),
        (a.id, 1, False),
    ]
    everything = await store.history_page()
    assert {v.resource_type for v in everything} == {"Patient", "Observation"} and len(everything) == 4
    assert [v.version_id for v in await store.history_page("Patient", a.id, count=2)] == [3, 2]


async def test_history_since_keeps_only_versions_written_at_or_after_it(store: Store) -> None:
    rest = rest_over(store)
    async with store.transaction() as tx:
        first = (await rest.create(tx, "Patient", patient("s1"))).stored
    async with store.transaction() as tx:
        second = (await rest.create(tx, "Patient", patient("s2"))).stored
    page = await store.history_page("Patient", since=second.last_updated)
    assert [v.id for v in page] == [second.id]
    page = await store.history_page("Patient", since=first.last_updated - timedelta(seconds=1))
    assert [v.id for v in page] == [second.id, first.id]


async def test_history_pages_by_cursor_neither_skip_nor_repeat_when_new_versions_arrive(store: Store) -> None:
    rest = rest_over(store)
    for n in range(7):
        async with store.transaction() as tx:
            await rest.create(tx, "Patient", patient(f"c{n}"))
    seen: list[tuple[str, int]] = []
    cursor: HistoryCursor | None = None
    while True:
        page = await store.history_page("Patient", cursor=cursor, count=3)
        if not page:
            break
        seen += [(v.id, v.version_id) for v in page]
        last = page[-1]
        cursor = HistoryCursor(last.last_updated, last.resource_type, last.id, last.version_id)
        async with store.transaction() as tx:  # newer versions must not push older ones into view twice
            await rest.create(tx, "Patient", patient(f"late{len(seen)}"))
    assert len(seen) == len(set(seen)) == 7


async def test_history_bundle_links_to_the_next_page(store: Store) -> None:
    rest = rest_over(store)
    for n in range(3):
        async with store.transaction() as tx:
            await rest.create(tx, "Patient", patient(f"b{n}"))
    body = orjson.loads(
        await history_bundle(store, "Patient", None, [("_count", "2")], base="B", lenient=False)
    )
    assert len(body["entry"]) == 2
    (next_link,) = [link["url"] for link in body["link"] if link["relation"] == "next"]
    assert next_link.startswith("B/Patient/_history?_count=2&_cursor=")


# --- conditional create races -----------------------------------------------------------------


async def conditional_create(rest: FhirRest, mrn: str) -> tuple[int, str]:
    async with rest.store.transaction() as tx:
        written = await rest.create(tx, "Patient", patient(mrn), if_none_exist=f"identifier=urn:mrn|{mrn}")
    return written.status, written.stored.id


async def test_twenty_concurrent_conditional_creates_make_exactly_one_resource(store: Store) -> None:
    rest = rest_over(store)
    results = await asyncio.gather(*(conditional_create(rest, "RACE-1") for _ in range(20)))

    assert sorted(status for status, _ in results).count(201) == 1
    assert {id_ for _, id_ in results} == {results[0][1]}  # the 19 others got the one created
    assert await count_patients(store, "RACE-1") == 1
    assert await store.outbox_pending_count() == 1  # one created event, no phantom ones


async def test_conditional_creates_from_two_store_instances_on_one_database_make_one_resource(
    store: Store, database_url: str
) -> None:
    other = await Store.open(database_url)  # another replica: no in-process lock is shared
    try:
        left, right = rest_over(store), rest_over(other)
        tasks = [conditional_create(left if n % 2 else right, "RACE-2") for n in range(20)]
        results = await asyncio.gather(*tasks)
    finally:
        await other.close()
    assert [status for status, _ in results].count(201) == 1
    assert await count_patients(store, "RACE-2") == 1


async def test_a_key_whose_resource_no_longer_matches_does_not_block_a_new_create(store: Store) -> None:
    rest = rest_over(store)
    status, first = await conditional_create(rest, "STALE")
    assert status == 201
    async with store.transaction() as tx:  # the resource moves away from the criteria
        await rest.update(tx, "Patient", first, {**patient("OTHER"), "id": first})

    status, second = await conditional_create(rest, "STALE")
    assert status == 201 and second != first
    assert (await conditional_create(rest, "STALE")) == (200, second)


async def test_twenty_concurrent_conditional_updates_with_no_match_create_exactly_one(store: Store) -> None:
    rest = rest_over(store)

    async def put() -> int:
        async with store.transaction() as tx:
            written = await rest.conditional_update(
                tx, "Patient", "identifier=urn:mrn|RACE-3", patient("RACE-3")
            )
        return written.status

    statuses = await asyncio.gather(*(put() for _ in range(20)))
    assert statuses.count(201) == 1 and statuses.count(200) == 19
    (only,) = await store.search("Patient", token={"identifier": ("urn:mrn", "RACE-3")})
    assert only.version_id == 20  # one create, then 19 updates of it
