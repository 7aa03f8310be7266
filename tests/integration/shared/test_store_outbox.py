"""Transactional outbox, consumer inbox and projections, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.errors import Conflict, NotFound
from shared.store import Store, Transaction


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    yield store
    await store.close()


async def add_event(tx: Transaction, n: int, **overrides: object) -> None:
    values: dict[str, object] = {
        "event_id": f"e{n}",
        "topic": "carebridge.patient.v1",
        "key": b"p1",
        "value": b'{"n":%d}' % n,
        "headers": (),
    }
    values.update(overrides)
    await tx.add_outbox(**values)  # type: ignore[arg-type]


async def test_outbox_events_are_pending_in_order_until_marked_published(store: Store) -> None:
    async with store.transaction() as tx:
        for n in range(3):
            await add_event(tx, n)
    async with store.transaction() as tx:
        await add_event(tx, 3, key=None)

    pending = await store.outbox_pending(10)
    assert [r.event_id for r in pending] == ["e0", "e1", "e2", "e3"]
    assert [r.seq for r in pending] == sorted(r.seq for r in pending)
    assert pending[3].key is None and pending[0].value == b'{"n":0}'
    assert await store.outbox_pending_count() == 4
    assert [r.event_id for r in await store.outbox_pending(2)] == ["e0", "e1"]

    await store.outbox_mark_published([pending[0].seq, pending[2].seq])

    assert [r.event_id for r in await store.outbox_pending(10)] == ["e1", "e3"]
    assert await store.outbox_pending_count() == 2
    await store.outbox_mark_published([])
    await store.outbox_mark_published([r.seq for r in pending])
    assert await store.outbox_pending(10) == []


async def test_outbox_headers_round_trip_any_bytes(store: Store) -> None:
    headers = [
        ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ("raw", bytes(range(256))),
    ]
    async with store.transaction() as tx:
        await add_event(tx, 1, headers=headers)

    (record,) = await store.outbox_pending(1)
    assert record.headers == headers
    assert record.created_at.tzinfo is not None


async def test_a_failed_transaction_leaves_neither_the_resource_nor_its_event(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.create({"resourceType": "Patient"}, id="p1")
            await add_event(tx, 1)
            raise RuntimeError("handler failed after writing")

    with pytest.raises(NotFound):
        await store.read("Patient", "p1")
    assert await store.outbox_pending(10) == []
    assert await store.outbox_pending_count() == 0


async def test_a_duplicate_event_id_raises_conflict(store: Store) -> None:
    async with store.transaction() as tx:
        await add_event(tx, 1)

    with pytest.raises(Conflict):
        async with store.transaction() as tx:
            await add_event(tx, 1)
    assert len(await store.outbox_pending(10)) == 1


async def test_the_outbox_listener_is_called_after_commits_that_added_events_only(store: Store) -> None:
    calls: list[int] = []

    def listener() -> None:
        calls.append(len(calls))

    store.outbox_listener = listener
    async with store.transaction() as tx:
        await tx.create({"resourceType": "Patient"})
    assert calls == []
    async with store.transaction() as tx:
        await add_event(tx, 1)
        assert calls == []  # not before commit
    assert calls == [0]
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await add_event(tx, 2)
            raise RuntimeError
    assert calls == [0]


async def test_a_failing_outbox_listener_does_not_fail_the_committed_write(store: Store) -> None:
    def listener() -> None:
        raise ValueError("relay is gone")

    store.outbox_listener = listener
    async with store.transaction() as tx:
        await add_event(tx, 1)

    assert await store.outbox_pending_count() == 1


async def test_claiming_the_same_event_twice_returns_true_then_false(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.claim_event("careplan.patients", "e1") is True
    async with store.transaction() as tx:
        assert await tx.claim_event("careplan.patients", "e1") is False
        assert await tx.claim_event("referral.patients", "e1") is True  # another consumer

    assert await store.inbox_contains("careplan.patients", "e1")
    assert not await store.inbox_contains("careplan.patients", "e2")


async def test_a_claim_rolls_back_with_its_failed_effect_so_the_event_is_retried(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            assert await tx.claim_event("c", "e1")
            raise RuntimeError("effect failed")

    assert not await store.inbox_contains("c", "e1")
    async with store.transaction() as tx:
        assert await tx.claim_event("c", "e1")


async def test_projections_keep_the_newest_version_and_count_applied_changes(store: Store) -> None:
    assert await store.get_projection("patients", "p1") is None
    async with store.transaction() as tx:
        assert await tx.put_projection("patients", "p1", 2, b"v2") is True
    first = await store.get_projection("patients", "p1")
    assert first is not None and (first.version, first.data, first.change_count) == (2, b"v2", 1)

    async with store.transaction() as tx:
        assert await tx.put_projection("patients", "p1", 1, b"v1 arrives late") is False
        assert await tx.put_projection("patients", "p1", 2, b"v2 redelivered") is False
        assert await tx.put_projection("patients", "p1", 5, b"v5") is True
        assert await tx.put_projection("patients", "p2", 1, b"other key") is True
    async with store.transaction() as tx:
        assert await tx.put_projection("patients", "p1", 6, b"") is True  # a deletion

    latest = await store.get_projection("patients", "p1")
    assert latest is not None
    assert (latest.version, latest.data, latest.change_count) == (6, b"", 3)
    assert latest.updated_at >= first.updated_at
    other = await store.get_projection("patients", "p2")
    assert other is not None and other.change_count == 1


async def test_projection_versions_may_exceed_32_bits(store: Store) -> None:
    version = 1_700_000_000_000  # e.g. epoch milliseconds
    async with store.transaction() as tx:
        assert await tx.put_projection("patients", "p1", version, b"x")

    stored = await store.get_projection("patients", "p1")
    assert stored is not None and stored.version == version


async def test_on_postgresql_a_patients_events_become_pending_in_commit_order(postgres_url: str) -> None:
    store = await Store.open(postgres_url)
    first_added, release_first = asyncio.Event(), asyncio.Event()

    async def slow_first() -> None:
        async with store.transaction() as tx:
            await add_event(tx, 1, key=b"patient-1")
            first_added.set()
            await release_first.wait()

    async def same_patient() -> None:
        async with store.transaction() as tx:
            await add_event(tx, 2, key=b"patient-1")

    async def other_patient() -> None:
        async with store.transaction() as tx:
            await add_event(tx, 3, key=b"patient-2")

    try:
        first = asyncio.create_task(slow_first())
        await first_added.wait()
        second = asyncio.create_task(same_patient())
        await asyncio.wait_for(other_patient(), 5)  # another key does not wait
        await asyncio.sleep(0.2)
        assert not second.done()  # same key waits for the first transaction to commit
        release_first.set()
        await asyncio.wait_for(asyncio.gather(first, second), 5)
        pending = await store.outbox_pending(10)
    finally:
        await store.close()

    by_event = {r.event_id: r.seq for r in pending}
    assert by_event["e1"] < by_event["e2"]
