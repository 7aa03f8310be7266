"""Schema migrations: the store's own and any a service adds, each applied once per database.

Applied migrations are recorded in `schema_migrations(component, version, ...)`. All pending
migrations run in one transaction, so a failure leaves the schema as it was. Concurrent starts
are serialized: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write
lock BEGIN IMMEDIATE takes (see `engine.py`).
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateIndex, CreateTable, DropIndex

from shared.fhir.search_params import SEARCH_PARAMETERS, SearchParam
from shared.store.indexing import IndexRows, extract_index_rows
from shared.store.schema import EXACT_SUFFIX, TEXT_SUFFIX, CoreTables

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


def core_migrations(
    tables: CoreTables, search_params: Mapping[str, Sequence[SearchParam]] = SEARCH_PARAMETERS
) -> list[Migration]:
    return [
        Migration(
            CORE_COMPONENT,
            1,
            create_tables(*tables.version_1),
            "resources, history, indexes, outbox, inbox, projections",
        ),
        Migration(
            CORE_COMPONENT,
            2,
            _search_index_v2(tables, search_params),
            "number and quantity indexes, token :text and string :exact rows",
        ),
    ]


#: Resources re-indexed per batch by migration 2.
_BACKFILL_BATCH = 500


def _search_index_v2(
    tables: CoreTables, search_params: Mapping[str, Sequence[SearchParam]]
) -> Callable[[AsyncConnection], Awaitable[None]]:
    """Create the number and quantity tables, rebuild the index tables' indexes, then index what
    version 1 did not for the resources already stored: without it, an upgraded database
    would miss them in searches."""
    create = create_tables(*tables.version_2)

    async def apply(connection: AsyncConnection) -> None:
        await create(connection)
        # Rebuilt as schema.py now defines them: resource_id in every search index, and
        # param and value in the by-resource ones.
        for table in tables.index_tables:
            for index in sorted(table.indexes, key=lambda ix: ix.name or ""):
                await connection.execute(DropIndex(index, if_exists=True))
                await connection.execute(CreateIndex(index))
        r = tables.resources
        after = ("", "")
        while True:  # keyset batches: bounded memory, and no cursor left open while inserting
            query = (
                select(r.c.resource_type, r.c.id, r.c.content)
                .where(r.c.deleted.is_(False), r.c.resource_type.in_(list(search_params)))
                .where(
                    (r.c.resource_type > after[0]) | ((r.c.resource_type == after[0]) & (r.c.id > after[1]))
                )
                .order_by(r.c.resource_type, r.c.id)
                .limit(_BACKFILL_BATCH)
            )
            batch = (await connection.execute(query)).all()
            if not batch:
                return
            keyed = [
                (rtype, rid, extract_index_rows(orjson.loads(content), search_params[rtype]))
                for rtype, rid, content in batch
            ]
            await _insert_v2_rows(connection, tables, keyed)
            after = (batch[-1][0], batch[-1][1])

    return apply


async def _insert_v2_rows(
    connection: AsyncConnection, tables: CoreTables, keyed: list[tuple[str, str, IndexRows]]
) -> None:
    strings: list[dict[str, Any]] = []
    numbers: list[dict[str, Any]] = []
    quantities: list[dict[str, Any]] = []
    for resource_type, resource_id, rows in keyed:
        key = {"resource_type": resource_type, "resource_id": resource_id}
        strings += [{**key, "param": p + TEXT_SUFFIX, "value": v} for p, v in rows.text]
        strings += [{**key, "param": p + EXACT_SUFFIX, "value": v} for p, v in rows.exact]
        numbers += [{**key, "param": p, "value": v} for p, v in rows.number]
        quantities += [
            {**key, "param": p, "value": v, "system": s, "code": c, "unit": u}
            for p, v, s, c, u in rows.quantity
        ]
    for table, values in (
        (tables.idx_string, strings),
        (tables.idx_number, numbers),
        (tables.idx_quantity, quantities),
    ):
        if values:
            await connection.execute(table.insert(), values)


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
