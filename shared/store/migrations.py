"""Schema migrations: the store's own and any a service adds, each applied once per database.

Applied migrations are recorded in `schema_migrations(component, version, ...)`. All pending
migrations run in one transaction, so a failure leaves the schema as it was. Concurrent starts
are serialized: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write
lock BEGIN IMMEDIATE takes (see `engine.py`).
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateIndex, CreateTable

from shared.store.schema import CoreTables

#: The component name of the store's own migrations.
CORE_COMPONENT = "store"

#: Key of the PostgreSQL advisory lock held while migrating (any fixed 64-bit number will do;
#: deriving it from a name keeps it recognisable in pg_locks).
MIGRATION_LOCK_KEY = zlib.crc32(b"carebridge.schema_migrations")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change. `apply` should use SQLAlchemy DDL constructs so it runs on both databases."""

    component: str  # "store" for the core, else the owner, e.g. "gateway.hl7"
    version: int  # ascending within a component, starting at 1
    apply: Callable[[AsyncConnection], Awaitable[None]]
    description: str


def create_tables(*tables: Table) -> Callable[[AsyncConnection], Awaitable[None]]:
    """An `apply` that creates these tables and their indexes (CREATE TABLE, CREATE INDEX)."""

    async def apply(connection: AsyncConnection) -> None:
        for table in tables:
            await connection.execute(CreateTable(table))
            for index in sorted(table.indexes, key=lambda ix: ix.name or ""):
                await connection.execute(CreateIndex(index))

    return apply


def core_migrations(tables: CoreTables) -> list[Migration]:
    return [
        Migration(
            CORE_COMPONENT,
            1,
            create_tables(*tables.version_1),
            "resources, history, indexes, outbox, inbox, projections",
        )
    ]


def ordered(core: Sequence[Migration], extra: Sequence[Migration]) -> list[Migration]:
    """Core first, then each other component in version order; rejects clashes early."""
    seen: set[tuple[str, int]] = set()
    for migration in extra:
        if migration.component == CORE_COMPONENT:
            raise ValueError(f"component name {CORE_COMPONENT!r} is reserved for the store's own migrations")
    for migration in (*core, *extra):
        key = (migration.component, migration.version)
        if key in seen:
            raise ValueError(f"duplicate migration {key}")
        seen.add(key)
    return [*core, *sorted(extra, key=lambda m: (m.component, m.version))]


async def apply_pending(
    connection: AsyncConnection, tables: CoreTables, migrations: Sequence[Migration]
) -> list[tuple[str, int]]:
    """Apply what is not yet recorded, inside the caller's transaction; returns what was applied."""
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: a second process starting at the same moment waits
        # here, then finds everything recorded.
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    await connection.execute(CreateTable(tables.schema_migrations, if_not_exists=True))
    recorded = tables.schema_migrations
    done = {
        (row.component, row.version)
        for row in await connection.execute(select(recorded.c.component, recorded.c.version))
    }
    applied: list[tuple[str, int]] = []
    for migration in migrations:
        key = (migration.component, migration.version)
        if key in done:
            continue
        await migration.apply(connection)
        await connection.execute(
            recorded.insert().values(
                component=migration.component,
                version=migration.version,
                description=migration.description,
                applied_at=datetime.now(UTC),
            )
        )
        applied.append(key)
    return applied
