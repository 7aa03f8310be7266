"""The store's minimal search and the index tables behind it, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from shared.errors import InvalidInput
from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam
from shared.store import Store, StoredResource

OBSERVATION_PARAMS = (
    SearchParam("subject", "reference", ("subject",), targets=("Patient",)),
    SearchParam("date", "date", ("effective[x]",)),
    SearchParam("code", "token", ("code",)),
)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(
        database_url, search_params={**SEARCH_PARAMETERS, "Observation": OBSERVATION_PARAMS}
    )
    yield store
    await store.close()


def patient(id_: str, family: str, given: str, mrn: str, **extra: object) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": id_,
        "identifier": [{"system": "urn:mrn", "value": mrn}],
        "name": [{"family": family, "given": [given]}],
        **extra,
    }


@pytest.fixture
async def people(store: Store) -> Store:
    async with store.transaction() as tx:
        await tx.create(patient("jose", "García", "José", "M1", gender="male", active=True))
        await tx.create(patient("josefina", "Lopez", "Josefina", "M2", gender="female", active=False))
        await tx.create(
            patient(
                "ana",
                "Garcia",
                "Ana",
                "M3",
                gender="female",
                telecom=[{"system": "phone", "value": "555"}, {"system": "email", "value": "a@x"}],
            )
        )
    return store


def ids(found: list[StoredResource]) -> list[str]:
    return [r.id for r in found]


async def test_search_by_identifier_token_with_and_without_system(people: Store) -> None:
    assert ids(await people.search("Patient", token={"identifier": ("urn:mrn", "M2")})) == ["josefina"]
    assert ids(await people.search("Patient", token={"identifier": (None, "M2")})) == ["josefina"]
    assert await people.search("Patient", token={"identifier": ("urn:other", "M2")}) == []
    assert await people.search("Patient", token={"identifier": ("", "M2")}) == []  # "|M2": no system


async def test_search_by_system_alone_finds_every_code_in_it(people: Store) -> None:
    found = await people.search("Patient", token={"identifier": ("urn:mrn", "")})

    assert sorted(ids(found)) == ["ana", "jose", "josefina"]


async def test_search_by_name_prefix_ignores_accents_and_case(people: Store) -> None:
    assert ids(await people.search("Patient", string={"name": "Jose"})) == ["jose", "josefina"]
    assert ids(await people.search("Patient", string={"name": "JOSÉ"})) == ["jose", "josefina"]
    assert ids(await people.search("Patient", string={"given": "josé"})) == ["jose", "josefina"]
    # (order is by lastUpdated, which two creates in one millisecond share: compare as sets)
    assert sorted(ids(await people.search("Patient", string={"family": "garc"}))) == ["ana", "jose"]
    assert await people.search("Patient", string={"family": "garcias"}) == []


async def test_criteria_are_combined_with_and(people: Store) -> None:
    found = await people.search("Patient", token={"gender": (None, "female")}, string={"name": "gar"})

    assert ids(found) == ["ana"]


async def test_boolean_and_contact_point_tokens(people: Store) -> None:
    assert ids(await people.search("Patient", token={"active": (None, "false")})) == ["josefina"]
    assert ids(await people.search("Patient", token={"phone": (None, "555")})) == ["ana"]
    assert ids(await people.search("Patient", token={"email": (None, "a@x")})) == ["ana"]
    assert await people.search("Patient", token={"email": (None, "555")}) == []


async def test_results_are_ordered_by_last_updated_and_limited(people: Store) -> None:
    async with people.transaction() as tx:
        await tx.update(patient("jose", "García", "José", "M1"))

    assert ids(await people.search("Patient", string={"name": "jos"})) == ["josefina", "jose"]
    assert ids(await people.search("Patient", string={"name": "jos"}, limit=1)) == ["josefina"]


async def test_updates_reindex_and_deleted_resources_are_not_found(people: Store) -> None:
    async with people.transaction() as tx:
        await tx.update(patient("jose", "Pérez", "Pepe", "M9"))
        await tx.delete("Patient", "josefina")

    assert await people.search("Patient", token={"identifier": (None, "M1")}) == []
    assert ids(await people.search("Patient", token={"identifier": (None, "M9")})) == ["jose"]
    assert ids(await people.search("Patient", string={"name": "jos"})) == []
    assert ids(await people.search("Patient", string={"family": "perez"})) == ["jose"]


async def test_a_resource_recreated_after_delete_is_searchable_again(people: Store) -> None:
    async with people.transaction() as tx:
        await tx.delete("Patient", "ana")
    async with people.transaction() as tx:
        await tx.update(patient("ana", "Garcia", "Ana", "M3"))

    assert ids(await people.search("Patient", token={"identifier": (None, "M3")})) == ["ana"]


async def test_search_results_carry_the_stored_bytes(people: Store) -> None:
    (found,) = await people.search("Patient", token={"identifier": (None, "M1")})

    assert found == await people.read("Patient", "jose")


async def test_unknown_or_mistyped_parameters_raise_invalid_input(people: Store) -> None:
    with pytest.raises(InvalidInput, match="Unknown search parameter"):
        await people.search("Patient", token={"shoe-size": (None, "9")})
    with pytest.raises(InvalidInput, match="is a string"):
        await people.search("Patient", token={"name": (None, "x")})
    with pytest.raises(InvalidInput):
        await people.search("Patient", string={"name": "x"}, limit=0)


async def test_reference_and_date_rows_are_written_and_removed_with_the_resource(store: Store) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44249-1"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-05-01T10:30:00+02:00",
    }
    async with store.transaction() as tx:
        stored = await tx.create(observation)

    t = store.tables
    async with store.engine.connect() as conn:
        refs = (
            await conn.execute(
                select(t.idx_reference.c.param, t.idx_reference.c.target_type, t.idx_reference.c.target_id)
            )
        ).all()
        dates = (await conn.execute(select(t.idx_date.c.low, t.idx_date.c.high))).all()
    assert [tuple(r) for r in refs] == [("subject", "Patient", "p1")]
    assert [tuple(d) for d in dates] == [
        (datetime(2024, 5, 1, 8, 30, tzinfo=UTC), datetime(2024, 5, 1, 8, 30, 1, tzinfo=UTC))
    ]
    assert ids(await store.search("Observation", token={"code": ("http://loinc.org", "44249-1")})) == [
        stored.id
    ]

    async with store.transaction() as tx:
        await tx.delete("Observation", stored.id)
    async with store.engine.connect() as conn:
        for table in t.index_tables:
            assert (await conn.execute(select(table))).all() == []


async def test_date_index_orders_correctly_across_offsets_and_centuries(store: Store) -> None:
    async with store.transaction() as tx:
        for n, when in enumerate(["1899-12-31", "2024-05-01T00:30:00+02:00", "2024-04-30T23:00:00Z", "1980"]):
            await tx.create(
                {"resourceType": "Observation", "status": "final", "effectiveDateTime": when}, id=f"o{n}"
            )

    d = store.tables.idx_date
    async with store.engine.connect() as conn:
        order = (await conn.execute(select(d.c.resource_id).order_by(d.c.low))).scalars().all()
        after = (
            (
                await conn.execute(
                    select(d.c.resource_id)
                    .where(d.c.low >= datetime(2024, 4, 30, 22, 15, tzinfo=UTC))
                    .order_by(d.c.low)
                )
            )
            .scalars()
            .all()
        )
    assert order == ["o0", "o3", "o1", "o2"]
    assert after == ["o1", "o2"]


async def test_uri_parameters_are_searched_like_tokens_and_reindexed_on_update(database_url: str) -> None:
    params = {"Questionnaire": (SearchParam("url", "uri", ("url",)),)}
    store = await Store.open(database_url, search_params=params)
    try:
        async with store.transaction() as tx:
            await tx.create({"resourceType": "Questionnaire", "url": "http://x.org/q/phq-9"}, id="q1")
        found = await store.search("Questionnaire", token={"url": (None, "http://x.org/q/phq-9")})
        async with store.transaction() as tx:
            await tx.update({"resourceType": "Questionnaire", "id": "q1", "url": "http://x.org/q/gad-7"})
        stale = await store.search("Questionnaire", token={"url": (None, "http://x.org/q/phq-9")})
    finally:
        await store.close()

    assert ids(found) == ["q1"] and stale == []
