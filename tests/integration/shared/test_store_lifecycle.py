"""Opening, migrating, concurrency and failure behaviour of the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.errors import DependencyUnavailable
from shared.store import Migration, Store, create_tables

_archive_metadata = sa.MetaData()
ARCHIVE = sa.Table(
    "test_archive",
    _archive_metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Index("ix_test_archive_body", "body"),
)

#: What a new database gets before any service migration: the core schema, its search-index
#: upgrade (store 2) and the REST layer's tables (store.rest 1).
CORE = [("store", 1), ("store", 2), ("store.rest", 1)]


def archive_migrations(calls: list[str]) -> list[Migration]:
    async def add_note(connection: AsyncConnection) -> None:
        calls.append("v2")
        await connection.execute(sa.text("ALTER TABLE test_archive ADD COLUMN note TEXT"))

    create = create_tables(ARCHIVE)

    async def create_archive(connection: AsyncConnection) -> None:
        calls.append("v1")
        await create(connection)

    return [
        Migration("test.archive", 2, add_note, "archive note column"),
        Migration("test.archive", 1, create_archive, "archive table"),
    ]


async def test_opening_the_same_sqlite_file_twice_applies_migrations_only_once(sqlite_url: str) -> None:
    first = await Store.open(sqlite_url)
    await first.close()
    second = await Store.open(sqlite_url)
    await second.close()

    assert first.applied_migrations == CORE
    assert second.applied_migrations == []


async def test_extra_migrations_of_another_component_are_applied_once_in_version_order(
    database_url: str,
) -> None:
    calls: list[str] = []
    store = await Store.open(database_url, extra_migrations=archive_migrations(calls))
    async with store.transaction() as tx:
        await tx.connection.execute(
            sa.text("INSERT INTO test_archive (id, body, note) VALUES ('a', :b, 'n')"), {"b": b"x"}
        )
    await store.close()
    again = await Store.open(database_url, extra_migrations=archive_migrations(calls))
    async with again.engine.connect() as conn:
        recorded = (
            await conn.execute(
                sa.text("SELECT component, version FROM schema_migrations ORDER BY component, version")
            )
        ).all()
        rows = (await conn.execute(sa.text("SELECT id, note FROM test_archive"))).all()
    await again.close()

    assert calls == ["v1", "v2"]
    assert store.applied_migrations == [*CORE, ("test.archive", 1), ("test.archive", 2)]
    assert again.applied_migrations == []
    assert [tuple(r) for r in recorded] == [*CORE, ("test.archive", 1), ("test.archive", 2)]
    assert [tuple(r) for r in rows] == [("a", "n")]


async def test_a_services_own_table_commits_and_rolls_back_with_the_store_writes(database_url: str) -> None:
    store = await Store.open(database_url, extra_migrations=archive_migrations([]))
    async with store.transaction() as tx:
        await tx.connection.execute(ARCHIVE.insert().values(id="kept", body=b"1"))
        await tx.create({"resourceType": "Patient"}, id="kept")
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.create({"resourceType": "Patient"}, id="lost")
            await tx.connection.execute(ARCHIVE.insert().values(id="lost", body=b"2"))
            raise RuntimeError("after both writes")
    with pytest.raises(sa.exc.IntegrityError):  # a service's own constraint surfaces as it is
        async with store.transaction() as tx:
            await tx.create({"resourceType": "Patient"}, id="also-lost")
            await tx.connection.execute(ARCHIVE.insert().values(id="kept", body=b"3"))
    async with store.engine.connect() as conn:
        archived = (await conn.execute(sa.select(ARCHIVE.c.id))).scalars().all()
        patients = (await conn.execute(sa.select(store.tables.resources.c.id))).scalars().all()
    await store.close()

    assert archived == ["kept"]
    assert patients == ["kept"]


async def test_a_failing_migration_leaves_nothing_behind(sqlite_url: str) -> None:
    async def broken(connection: AsyncConnection) -> None:
        await create_tables(ARCHIVE)(connection)
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError):
        await Store.open(sqlite_url, extra_migrations=[Migration("test.archive", 1, broken, "broken")])
    store = await Store.open(sqlite_url)
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    await store.close()

    assert store.applied_migrations == CORE
    assert "test_archive" not in tables


@pytest.mark.parametrize(
    "migrations",
    [
        [Migration("store", 2, create_tables(ARCHIVE), "not ours")],
        [Migration("x", 1, create_tables(ARCHIVE), "a"), Migration("x", 1, create_tables(ARCHIVE), "b")],
    ],
    ids=["reserved-component", "duplicate-version"],
)
async def test_clashing_extra_migrations_are_rejected_before_touching_the_database(
    sqlite_url: str, migrations: list[Migration]
) -> None:
    with pytest.raises(ValueError):
        await Store.open(sqlite_url, extra_migrations=migrations)


async def test_two_processes_starting_together_on_postgresql_migrate_once(postgres_url: str) -> None:
    calls: list[str] = []
    stores = await asyncio.gather(
        *(Store.open(postgres_url, extra_migrations=archive_migrations(calls)) for _ in range(3))
    )
    for store in stores:
        await store.close()

    assert calls == ["v1", "v2"]
    assert sorted(len(s.applied_migrations) for s in stores) == [0, 0, len(CORE) + 2]


async def test_twenty_concurrent_transactions_on_one_database_all_commit(database_url: str) -> None:
    store = await Store.open(database_url)

    async def create(n: int) -> None:
        async with store.transaction() as tx:
            await tx.create({"resourceType": "Patient", "name": [{"family": f"N{n}"}]}, id=f"c{n}")
            await tx.add_outbox(event_id=f"e{n}", topic="t", key=None, value=b"{}")
            await asyncio.sleep(0)  # let the others pile up behind this writer

    await asyncio.gather(*(create(n) for n in range(20)))
    count = await store.outbox_pending_count()
    found = await store.search("Patient", string={"family": "n"}, limit=100)
    await store.close()

    assert count == 20 and len(found) == 20


async def test_two_stores_on_the_same_sqlite_file_wait_for_each_other_instead_of_failing(
    sqlite_url: str,
) -> None:
    # Two Store objects stand in for two processes: only SQLite's busy_timeout orders them.
    first, second = await Store.open(sqlite_url), await Store.open(sqlite_url)

    async def create(store: Store, n: int) -> None:
        async with store.transaction() as tx:
            await tx.create({"resourceType": "Patient"}, id=f"x{n}")
            await asyncio.sleep(0.001)

    await asyncio.gather(*(create(first if n % 2 else second, n) for n in range(20)))
    history = [await first.history("Patient", f"x{n}") for n in range(20)]
    await first.close()
    await second.close()

    assert all(len(h) == 1 for h in history)


async def test_concurrent_updates_of_a_new_id_create_it_once_and_serialize_versions(
    database_url: str,
) -> None:
    store = await Store.open(database_url)

    async def upsert(n: int) -> bool:
        async with store.transaction() as tx:
            _stored, created = await tx.update({"resourceType": "Patient", "id": "same", "gender": "other"})
            return created

    created = await asyncio.gather(*(upsert(n) for n in range(10)))
    history = await store.history("Patient", "same")
    await store.close()

    assert created.count(True) == 1
    assert [v.version_id for v in history] == list(range(10, 0, -1))


async def test_reads_run_while_a_write_transaction_is_open(database_url: str) -> None:
    store = await Store.open(database_url)
    async with store.transaction() as tx:
        await tx.create({"resourceType": "Patient"}, id="visible")
    async with store.transaction() as tx:
        await tx.update({"resourceType": "Patient", "id": "visible", "gender": "male"})
        before_commit = await asyncio.wait_for(store.read("Patient", "visible"), 5)
    await store.close()

    assert before_commit.version_id == 1


async def test_a_nested_transaction_is_refused_instead_of_deadlocking(sqlite_url: str) -> None:
    store = await Store.open(sqlite_url)
    try:
        async with store.transaction():
            with pytest.raises(RuntimeError, match="already active"):
                async with store.transaction():
                    pass
    finally:
        await store.close()


async def test_ping_succeeds_on_a_live_database(database_url: str) -> None:
    store = await Store.open(database_url)
    try:
        await store.ping()
    finally:
        await store.close()


async def test_an_unreachable_postgresql_raises_dependency_unavailable() -> None:
    with pytest.raises(DependencyUnavailable):
        await Store.open("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")


async def test_reads_writes_and_ping_recover_after_the_server_drops_every_connection(
    postgres_url: str,
) -> None:
    store = await Store.open(postgres_url)
    async with store.transaction() as tx:
        await tx.create({"resourceType": "Patient"}, id="survivor")
    await asyncio.gather(*(store.read("Patient", "survivor") for _ in range(4)))  # fill the read pool
    # What a restart or failover does: every session on the database ends, pooled ones included.
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    try:
        async with store.transaction() as tx:  # the pooled connection is dead: begin retries
            await tx.update({"resourceType": "Patient", "id": "survivor"})
        assert (await store.read("Patient", "survivor")).version_id == 2  # so are the readers
        await store.ping()
        assert len(await store.search("Patient", token={"identifier": ("urn:x", "")})) == 0
    finally:
        await store.close()


async def test_the_sqlite_directory_is_created_when_missing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'nested' / 'service.db'}"
    store = await Store.open(url)
    await store.close()

    assert (tmp_path / "new" / "nested" / "service.db").exists()


async def test_sqlite_connections_use_wal_and_wait_for_busy_writers(sqlite_url: str) -> None:
    store = await Store.open(sqlite_url)
    async with store.engine.connect() as conn:
        journal = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
        busy = (await conn.execute(sa.text("PRAGMA busy_timeout"))).scalar_one()
        fks = (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar_one()
    await store.close()

    assert (journal, busy, fks) == ("wal", 10000, 1)


async def test_an_in_memory_sqlite_database_is_refused() -> None:
    with pytest.raises(ValueError, match="SQLite file"):
        await Store.open("sqlite+aiosqlite:///:memory:")
