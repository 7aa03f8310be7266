"""Keeping a local copy of another service's resources from their lifecycle events.

Services never read each other's databases (DESIGN.md); a service that needs, say, the patients
it works with keeps a projection: the fields it needs, updated from events. Events can arrive
twice or, after a redelivery, out of order, so a copy only moves forward in version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import select

from shared.errors import PoisonMessage
from shared.events import CloudEvent, topics
from shared.store import Store, Transaction


def version_of(resource: dict[str, Any]) -> int:
    """meta.versionId of a stored resource (CareBridge assigns whole numbers)."""
    try:
        return int(resource["meta"]["versionId"])
    except (KeyError, TypeError, ValueError):
        raise PoisonMessage("Resource event without a numeric meta.versionId") from None


async def apply_to_projection(
    event: CloudEvent,
    tx: Transaction,
    *,
    projection: str,
    resource_type: str,
    keep: Callable[[dict[str, Any]], dict[str, Any]],
) -> bool:
    """Apply one lifecycle event of `resource_type` to a projection; other events are ignored.

    Returns whether the projection changed (False for other types and stale versions).
    """
    parsed = topics.parse_resource_event_type(event.type)
    if parsed is None or parsed[0] != resource_type:
        return False
    _, action = parsed
    data = event.data
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise PoisonMessage(f"{event.type} event carries no {resource_type} with an id")
    body = b"" if action == "deleted" else orjson.dumps(keep(data))
    return await tx.put_projection(projection, data["id"], version_of(data), body)


async def read_projection(store: Store, tx: Transaction, name: str, key: str) -> tuple[int, bytes] | None:
    """(version, data) of a projection row as `tx` sees it (rows it wrote included), or None."""
    table = store.tables.projections
    query = select(table.c.version, table.c.data).where(table.c.name == name, table.c.key == key)
    row = (await (await tx.sql_connection()).execute(query)).first()
    return None if row is None else (row.version, bytes(row.data))
