"""Resource versions on both databases: create, read, vread, update, delete, history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC

import orjson
import pytest
from sqlalchemy import select

from shared.errors import Conflict, Gone, InvalidInput, NotFound, PreconditionFailed
from shared.store import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    yield store
    await store.close()


def patient(family: str = "Smith", **extra: object) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": family}], **extra}


async def test_create_assigns_an_id_version_1_and_last_updated_in_the_stored_json(store: Store) -> None:
    async with store.transaction() as tx:
        created = await tx.create(patient())

    body = orjson.loads(created.content)
    assert created.version_id == 1 and not created.deleted
    assert body["id"] == created.id and len(created.id) == 36
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] == created.last_updated.isoformat(timespec="milliseconds")
    assert body["meta"]["lastUpdated"].endswith("+00:00")
    assert created.last_updated.tzinfo is not None and created.last_updated.utcoffset().total_seconds() == 0
    assert created.last_updated.microsecond % 1000 == 0


async def test_read_returns_exactly_the_stored_bytes(store: Store) -> None:
    async with store.transaction() as tx:
        created = await tx.create(patient(), id="p-1")

    assert await store.read("Patient", "p-1") == created


async def test_create_keeps_the_callers_key_order_and_other_meta_and_leaves_the_dict_alone(
    store: Store,
) -> None:
    resource = {
        "gender": "female",
        "resourceType": "Patient",
        "meta": {"versionId": "99", "security": [{"code": "42CFRPart2"}], "tag": [{"code": "t"}]},
        "birthDate": "1970",
    }
    original = orjson.dumps(resource)
    async with store.transaction() as tx:
        created = await tx.create(resource, id="ordered")

    body = orjson.loads(created.content)
    assert list(body) == ["resourceType", "id", "meta", "gender", "birthDate"]
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["security"] == [{"code": "42CFRPart2"}] and body["meta"]["tag"] == [{"code": "t"}]
    assert orjson.dumps(resource) == original


async def test_create_uses_the_id_in_the_resource_when_none_is_given(store: Store) -> None:
    async with store.transaction() as tx:
        created = await tx.create(patient(id="from-body"))

    assert created.id == "from-body"


async def test_reading_a_resource_that_never_existed_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.read("Patient", "nobody")
    with pytest.raises(NotFound):
        await store.vread("Patient", "nobody", 1)
    with pytest.raises(NotFound):
        await store.history("Patient", "nobody")


async def test_create_with_an_existing_id_raises_conflict(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="dup")

    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await tx.create(patient("Other"), id="dup")

    assert orjson.loads((await store.read("Patient", "dup")).content)["name"] == [{"family": "Smith"}]


async def test_a_conflict_leaves_the_transaction_usable_for_other_work(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="taken")
    async with store.transaction() as tx:
        with pytest.raises(Conflict):
            await tx.create(patient(), id="taken")
        await tx.create(patient(), id="fresh")

    assert (await store.read("Patient", "fresh")).version_id == 1


async def test_creating_over_a_deleted_resource_still_conflicts(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="gone")
        await tx.delete("Patient", "gone")

    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await tx.create(patient(), id="gone")


@pytest.mark.parametrize("bad_id", ["", "has space", "a/b", "x" * 65, "ünïcode"])
async def test_an_invalid_id_raises_invalid_input(store: Store, bad_id: str) -> None:
    with pytest.raises(InvalidInput):
        async with store.transaction() as tx:
            await tx.create(patient(), id=bad_id)


async def test_a_resource_without_a_resource_type_raises_invalid_input(store: Store) -> None:
    with pytest.raises(InvalidInput):
        async with store.transaction() as tx:
            await tx.create({"name": []})


async def test_update_increments_the_version_and_keeps_every_version_readable(store: Store) -> None:
    async with store.transaction() as tx:
        first = await tx.create(patient("One"), id="u1")
    async with store.transaction() as tx:
        second, created = await tx.update(patient("Two", id="u1"))

    assert not created
    assert second.version_id == 2 and second.last_updated > first.last_updated
    assert orjson.loads(second.content)["meta"]["versionId"] == "2"
    assert await store.read("Patient", "u1") == second
    assert await store.vread("Patient", "u1", 1) == first
    assert await store.vread("Patient", "u1", 2) == second
    with pytest.raises(NotFound):
        await store.vread("Patient", "u1", 3)


async def test_versions_written_in_the_same_millisecond_still_get_increasing_last_updated(
    store: Store,
) -> None:
    async with store.transaction() as tx:
        versions = [await tx.create(patient(), id="fast")]
        for _ in range(5):
            stored, _created = await tx.update(patient(id="fast"))
            versions.append(stored)

    stamps = [v.last_updated for v in versions]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_update_with_a_matching_if_match_succeeds(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="m1")
    async with store.transaction() as tx:
        stored, _ = await tx.update(patient("New", id="m1"), if_match=1)

    assert stored.version_id == 2


async def test_update_with_a_stale_if_match_raises_precondition_failed_and_changes_nothing(
    store: Store,
) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="m2")
        await tx.update(patient("Second", id="m2"))

    with pytest.raises(PreconditionFailed, match="version 2, not 1"):
        async with store.transaction() as tx:
            await tx.update(patient("Lost update", id="m2"), if_match=1)

    current = await store.read("Patient", "m2")
    assert current.version_id == 2
    assert orjson.loads(current.content)["name"] == [{"family": "Second"}]


async def test_update_of_an_absent_resource_creates_it(store: Store) -> None:
    async with store.transaction() as tx:
        stored, created = await tx.update(patient(id="client-chosen"))

    assert created and stored.version_id == 1
    assert await store.read("Patient", "client-chosen") == stored


async def test_update_with_if_match_of_an_absent_resource_raises_precondition_failed(store: Store) -> None:
    with pytest.raises(PreconditionFailed):
        async with store.transaction() as tx:
            await tx.update(patient(id="absent"), if_match=1)

    with pytest.raises(NotFound):
        await store.read("Patient", "absent")


async def test_update_without_an_id_raises_invalid_input(store: Store) -> None:
    with pytest.raises(InvalidInput):
        async with store.transaction() as tx:
            await tx.update(patient())


async def test_delete_then_read_raises_gone_and_history_shows_three_versions(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient("One"), id="d1")
    async with store.transaction() as tx:
        await tx.update(patient("Two", id="d1"))
    async with store.transaction() as tx:
        deleted = await tx.delete("Patient", "d1")

    assert deleted is not None and deleted.deleted and deleted.version_id == 3 and deleted.content == b""
    with pytest.raises(Gone):
        await store.read("Patient", "d1")
    history = await store.history("Patient", "d1")
    assert [(v.version_id, v.deleted) for v in history] == [(3, True), (2, False), (1, False)]
    assert history[0].content == b""
    assert orjson.loads(history[2].content)["name"] == [{"family": "One"}]
    with pytest.raises(Gone):
        await store.vread("Patient", "d1", 3)
    assert (await store.vread("Patient", "d1", 2)).version_id == 2


async def test_delete_is_idempotent(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="d2")
    async with store.transaction() as tx:
        first = await tx.delete("Patient", "d2")
        again = await tx.delete("Patient", "d2")
        never_existed = await tx.delete("Patient", "never")

    assert first is not None and again is None and never_existed is None
    assert len(await store.history("Patient", "d2")) == 2


async def test_delete_with_a_stale_if_match_raises_precondition_failed(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="d3")
        await tx.update(patient(id="d3"))

    with pytest.raises(PreconditionFailed):
        async with store.transaction() as tx:
            await tx.delete("Patient", "d3", if_match=1)
    async with store.transaction() as tx:
        assert await tx.delete("Patient", "d3", if_match=2) is not None


async def test_updating_a_deleted_resource_recreates_it_with_the_next_version(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="phoenix")
        await tx.delete("Patient", "phoenix")
    async with store.transaction() as tx:
        stored, created = await tx.update(patient("Reborn", id="phoenix"))

    assert created and stored.version_id == 3
    assert await store.read("Patient", "phoenix") == stored


async def test_transaction_read_sees_its_own_writes_and_reports_deletes(store: Store) -> None:
    async with store.transaction() as tx:
        created = await tx.create(patient(), id="rw")
        assert await tx.read("Patient", "rw") == created
        await tx.delete("Patient", "rw")
        with pytest.raises(Gone):
            await tx.read("Patient", "rw")
        with pytest.raises(NotFound):
            await tx.read("Patient", "nothing")


async def test_an_exception_inside_the_transaction_rolls_every_write_back(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.create(patient(), id="rolled-back")
            raise RuntimeError("boom")

    with pytest.raises(NotFound):
        await store.read("Patient", "rolled-back")


async def test_history_timestamps_come_back_as_utc(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.create(patient(), id="tz")

    (only,) = await store.history("Patient", "tz")
    assert only.last_updated.tzinfo == UTC


async def test_timestamps_the_store_writes_compare_correctly_in_sqlalchemy_queries(store: Store) -> None:
    async with store.transaction() as tx:
        created = await tx.create(patient(), id="ts")
    r = store.tables.resources
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(r.c.last_updated).where(r.c.id == "ts"))).scalar_one()
        same_or_later = (
            (await conn.execute(select(r.c.id).where(r.c.last_updated >= created.last_updated)))
            .scalars()
            .all()
        )
        later = (await conn.execute(select(r.c.id).where(r.c.last_updated > created.last_updated))).all()

    assert stored == created.last_updated
    assert same_or_later == ["ts"] and later == []
