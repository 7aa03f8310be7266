"""`_include` and `_revinclude` for one page of matches (R4 search.html#include), local types only.

Included resources are current, not deleted, each listed once, and never one of the matches
(a resource that is both is a match). Targets of another service are resolved by the gateway
from `SearchQuery.remote_includes` / `remote_revincludes`. Each include statement returns at
most `MAX_INCLUDED` resources.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.fhir.search.model import SearchQuery
from shared.store import StoredResource
from shared.store.schema import CoreTables

MAX_INCLUDED = 1000


async def included_resources(
    connection: AsyncConnection, tables: CoreTables, query: SearchQuery, matches: list[StoredResource]
) -> list[StoredResource]:
    if not matches or not (query.includes or query.revincludes):
        return []
    ids = [m.id for m in matches]
    seen = {(m.resource_type, m.id) for m in matches}
    found: list[StoredResource] = []

    def keep(rows: list[StoredResource]) -> None:
        for row in rows:
            if (row.resource_type, row.id) not in seen:
                seen.add((row.resource_type, row.id))
                found.append(row)

    ref = tables.idx_reference
    targets: dict[str, set[str]] = defaultdict(set)
    for include in query.includes:
        statement = select(ref.c.target_type, ref.c.target_id).where(
            ref.c.resource_type == query.resource_type,
            ref.c.param == include.param,
            ref.c.resource_id.in_(ids),
        )
        if include.target is not None:
            statement = statement.where(ref.c.target_type == include.target)
        for target_type, target_id in await connection.execute(statement.distinct().limit(MAX_INCLUDED)):
            targets[target_type].add(target_id)
    for target_type, target_ids in targets.items():
        keep(await _resources(connection, tables, target_type, tables.resources.c.id.in_(sorted(target_ids))))
    for include in query.revincludes:
        referring = select(ref.c.resource_id).where(
            ref.c.resource_type == include.source,
            ref.c.param == include.param,
            ref.c.target_type == query.resource_type,
            ref.c.target_id.in_(ids),
        )
        keep(await _resources(connection, tables, include.source, tables.resources.c.id.in_(referring)))
    return found


async def _resources(
    connection: AsyncConnection, tables: CoreTables, resource_type: str, condition: Any
) -> list[StoredResource]:
    r = tables.resources
    statement = (
        select(r.c.id, r.c.version_id, r.c.last_updated, r.c.content)
        .where(r.c.resource_type == resource_type, r.c.deleted.is_(False), condition)
        .order_by(r.c.id)
        .limit(MAX_INCLUDED)
    )
    rows = (await connection.execute(statement)).all()
    return [
        StoredResource(resource_type, row.id, row.version_id, row.last_updated, False, bytes(row.content))
        for row in rows
    ]
