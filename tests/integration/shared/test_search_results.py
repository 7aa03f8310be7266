"""Result parameters on a real store: _include, _revinclude, _summary, _elements, _total, _count."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import delete, text

from shared.fhir.search import SUBSETTED_TAG, run_search, searchset_bundle
from shared.store import Store
from tests.integration.shared.test_search_support import id_set, parse, search


def patient(id_: str, family: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family}], **extra}


def observation(id_: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"text": "PHQ-9", "coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": subject},
        **extra,
    }


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    async with store.transaction() as tx:
        await tx.create(patient("ana", "Ng", gender="female"))
        await tx.create(
            patient(
                "bo", "Ng", gender="male", link=[{"other": {"reference": "Patient/ana"}, "type": "seealso"}]
            )
        )
        await tx.create(patient("cy", "Oh", gender="female"))
        await tx.create(observation("o1", "Patient/ana", performer=[{"reference": "Practitioner/dr"}]))
        await tx.create(observation("o2", "Patient/ana", valueQuantity={"value": 5, "unit": "pts"}))
        await tx.create(observation("o3", "Patient/bo"))
        await tx.create(observation("o4", "Patient/gone"))
        encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"}}
        await tx.create({**encounter, "subject": {"reference": "Patient/cy"}})
    yield store
    await store.close()


def entries(store_result: Any) -> list[tuple[str, str]]:
    return [(r.resource_type, r.id) for r in store_result]


async def test_include_adds_each_referenced_resource_once(store: Store) -> None:
    result = await search(store, "Observation", "_include=Observation:subject&_sort=_id")

    assert entries(result.matches) == [("Observation", f"o{i}") for i in range(1, 5)]
    assert sorted(entries(result.included)) == [("Patient", "ana"), ("Patient", "bo")]  # "gone" is not there


async def test_include_with_a_target_type_and_an_included_match_is_not_repeated(store: Store) -> None:
    result = await search(store, "Patient", "_include=Patient:link:Patient&_sort=_id")

    assert entries(result.matches) == [("Patient", "ana"), ("Patient", "bo"), ("Patient", "cy")]
    assert result.included == []  # bo links to ana, which is already a match


async def test_revinclude_adds_the_resources_that_refer_to_the_matches(store: Store) -> None:
    result = await search(
        store, "Patient", "gender=female&_revinclude=Observation:subject&_revinclude=Encounter:subject"
    )

    assert sorted(entries(result.matches)) == [("Patient", "ana"), ("Patient", "cy")]
    assert sorted(entries(result.included)) == [
        ("Encounter", "e1"),
        ("Observation", "o1"),
        ("Observation", "o2"),
    ]


async def test_an_include_of_another_service_s_type_is_left_to_the_gateway(store: Store) -> None:
    query = parse("Observation", "_include=Observation:performer&_id=o1")

    result = await run_search(store, query)

    assert query.remote_includes == ("Observation:performer",)
    assert result.included == []  # Practitioner/dr lives in the referral service


async def test_include_and_revinclude_entries_are_marked_include_in_the_bundle(store: Store) -> None:
    query = parse("Patient", "_id=bo&_revinclude=Observation:subject")
    bundle = orjson.loads(searchset_bundle(query, await run_search(store, query), base_url="http://cb/fhir"))

    assert [(e["fullUrl"], e["search"]["mode"]) for e in bundle["entry"]] == [
        ("http://cb/fhir/Patient/bo", "match"),
        ("http://cb/fhir/Observation/o3", "include"),
    ]


async def test_summary_count_and_count_zero_return_the_total_without_entries(store: Store) -> None:
    for query_text in ("gender=female&_summary=count", "gender=female&_count=0"):
        query = parse("Patient", query_text)
        result = await run_search(store, query)
        bundle = orjson.loads(searchset_bundle(query, result, base_url="http://cb/fhir"))
        assert (bundle["total"], "entry" in bundle) == (2, False)


async def test_elements_reduce_the_stored_resource_and_tag_it(store: Store) -> None:
    query = parse("Observation", "_id=o1&_elements=subject")
    bundle = orjson.loads(searchset_bundle(query, await run_search(store, query), base_url="http://cb/fhir"))

    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "status", "code", "subject"}
    assert resource["meta"]["tag"] == [SUBSETTED_TAG] and resource["meta"]["versionId"] == "1"


@pytest.mark.parametrize(
    ("total", "first", "second"),
    [
        ("accurate", 4, 4),
        ("estimate", 4, 4),  # counted on the first page, carried by the cursor
        ("none", None, None),
        ("", 4, 4),  # the default counts (up to 1,000) on the first page
    ],
)
async def test_total_modes_on_the_first_and_a_later_page(
    store: Store, total: str, first: int | None, second: int | None
) -> None:
    query_text = "_count=3" + (f"&_total={total}" if total else "")
    page1 = await search(store, "Observation", query_text)
    page2 = await search(store, "Observation", f"{query_text}&_cursor={page1.next_cursor}")

    assert (page1.total, page2.total) == (first, second)
    assert len(page1.matches) + len(page2.matches) == 4


async def test_a_first_page_that_holds_everything_knows_its_total_without_counting(store: Store) -> None:
    assert (await search(store, "Patient", "family=ng")).total == 2


async def test_an_update_reindexes_and_a_delete_unindexes(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.update(patient("cy", "Ng", gender="female"))
        await tx.delete("Patient", "ana")

    assert await id_set(store, "Patient", "family=ng") == {"bo", "cy"}
    assert await id_set(store, "Patient", "family=oh") == set()
    assert await id_set(store, "Observation", "subject.family=ng") == {"o3"}


async def test_upgrading_a_version_1_database_indexes_existing_resources_for_the_new_tables(
    store: Store, database_url: str
) -> None:
    tables = store.tables
    async with store.engine.begin() as connection:  # back to what core migration 1 left
        await connection.execute(text("DROP TABLE idx_number"))
        await connection.execute(text("DROP TABLE idx_quantity"))
        await connection.execute(delete(tables.idx_string).where(tables.idx_string.c.param.like("%:%")))
        await connection.execute(
            text("DELETE FROM schema_migrations WHERE component = 'store' AND version = 2")
        )
    await store.close()

    upgraded = await Store.open(database_url)
    try:
        assert ("store", 2) in upgraded.applied_migrations
        assert await id_set(upgraded, "Observation", "code:text=phq") == {"o1", "o2", "o3", "o4"}
        assert await id_set(upgraded, "Patient", "family:exact=Oh") == {"cy"}
        assert await id_set(upgraded, "Observation", "value-quantity=5||pts") == {"o2"}
    finally:
        await upgraded.close()
