"""Paging with next/previous cursors while others write: no gap, no repeat (R4 http.html#paging)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import text

from shared.errors import InvalidInput
from shared.fhir.search import SearchResult, run_search, searchset_bundle
from shared.store import Store
from tests.integration.shared.test_search_support import parse, search

FAMILIES = ("Abe", "Baker", "Cruz", "Diaz", "Eze", "Fox", "Gil")


def patient(rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": rng.choice(FAMILIES)}],
        "birthDate": f"{rng.randrange(1940, 2010)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}",
        "active": True,
    }


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    yield store
    await store.close()


async def create(store: Store, rng: random.Random, n: int) -> list[str]:
    async with store.transaction() as tx:
        return [(await tx.create(patient(rng))).id for _ in range(n)]


async def analyze(store: Store) -> None:
    """Planner statistics, as autovacuum gathers them soon after a bulk load. Without them a
    fresh PostgreSQL database may look a sort key up through the wrong index (one scan per row)."""
    if store.dialect == "postgresql":
        async with store.connect() as connection:
            await connection.execute(text("ANALYZE"))


async def touch(store: Store, ids: list[str]) -> None:
    """Update without changing anything a search or sort here looks at."""
    async with store.transaction() as tx:
        for id_ in ids:
            current = orjson.loads((await tx.read("Patient", id_)).content)
            current["active"] = not current["active"]
            await tx.update(current)


@pytest.mark.parametrize("sort", ["", "_sort=-_lastUpdated", "_sort=family,-birthdate", "_sort=_lastUpdated"])
async def test_paging_through_1000_patients_while_others_write_shows_each_existing_one_exactly_once(
    store: Store, sort: str
) -> None:
    rng = random.Random(sort)
    existing = await create(store, rng, 1000)
    await analyze(store)
    query_text = "&".join(p for p in (sort, "_count=37", "_total=accurate") if p)

    seen: list[str] = []
    page = await search(store, "Patient", query_text)
    pages = 1
    while True:
        seen += [r.id for r in page.matches]
        assert page.total == 1000
        if page.next_cursor is None:
            break
        await create(store, rng, 5)  # new ones land before and after the cursor
        await touch(store, rng.sample(existing, 4))  # seen and not yet seen ones change
        page = await search(store, "Patient", f"{query_text}&_cursor={page.next_cursor}")
        pages += 1

    assert [id_ for id_, n in Counter(seen).items() if n > 1] == []
    assert set(seen) == set(existing)
    assert pages == 28  # 27 full pages of 37 and one of 1


@pytest.mark.parametrize("sort", ["_sort=family", "_sort=-_id", "_sort=-_lastUpdated"])
async def test_previous_links_walk_back_over_the_same_pages(store: Store, sort: str) -> None:
    ids = await create(store, random.Random(1), 100)
    query_text = f"{sort}&_count=30"
    forward: list[list[str]] = []
    page = await search(store, "Patient", query_text)
    while True:
        forward.append([r.id for r in page.matches])
        if page.next_cursor is None:
            break
        await touch(store, ids[:3])
        page = await search(store, "Patient", f"{query_text}&_cursor={page.next_cursor}")

    backward: list[list[str]] = []
    while page.previous_cursor is not None:
        page = await search(store, "Patient", f"{query_text}&_cursor={page.previous_cursor}")
        backward.append([r.id for r in page.matches])

    assert backward == forward[-2::-1]
    assert page.next_cursor is not None  # the first page, reached backwards, still leads on


async def test_the_bundle_links_carry_the_cursor_and_the_first_page_has_no_previous(store: Store) -> None:
    await create(store, random.Random(2), 5)
    query = parse("Patient", "family=a,b,c,d,e,f,g&_count=2")
    first = await run_search(store, query)
    second_query = parse("Patient", f"family=a,b,c,d,e,f,g&_count=2&_cursor={first.next_cursor}")
    second = await run_search(store, second_query)

    links = _links(searchset_bundle(second_query, second, base_url="http://cb/fhir"))
    assert set(_links(searchset_bundle(query, first, base_url="http://cb/fhir"))) == {"self", "next"}
    assert set(links) == {"self", "next", "previous"}
    assert (
        links["self"] == f"http://cb/fhir/Patient?family=a,b,c,d,e,f,g&_count=2&_cursor={first.next_cursor}"
    )


async def test_a_resource_deleted_between_pages_is_not_served_and_nothing_else_is_lost(store: Store) -> None:
    ids = sorted(await create(store, random.Random(3), 10))
    first = await search(store, "Patient", "_count=4")
    async with store.transaction() as tx:
        await tx.delete("Patient", ids[5])
    rest = await search(store, "Patient", f"_count=10&_cursor={first.next_cursor}")

    assert [r.id for r in first.matches] + [r.id for r in rest.matches] == ids[:5] + ids[6:]


async def test_a_cursor_for_another_query_is_refused(store: Store) -> None:
    await create(store, random.Random(4), 3)
    first: SearchResult = await search(store, "Patient", "_count=1")

    with pytest.raises(InvalidInput, match="other criteria or sort order"):
        parse("Patient", f"_sort=family&_count=1&_cursor={first.next_cursor}")


def _links(body: bytes) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in orjson.loads(body)["link"]}
