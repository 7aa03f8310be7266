"""Writes by restricted tokens (patient/ scopes, a clinic's organization): checked before they are
forwarded, so a token can neither write outside what it may see nor change what it may not see.

- create and update: the resource sent must be inside the restriction (its patient reference,
  or the Organization a referral is addressed to);
- update, patch and delete of an existing resource: the current version is read first and must
  be inside the restriction too (an update-as-create finds nothing and is judged by its body);
- conditional update, patch and delete (type level, with a search): the restriction's search
  parameters are added to the condition, so it can only match what the token may see.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from services.gateway.access import Restriction, require_permitted, search_restrictions
from services.gateway.context import Call
from services.gateway.proxy import Route
from services.gateway.searchsets import encode_query


async def check_write(call: Call, route: Route, restriction: Restriction, resource: Any) -> None:
    """Raise Forbidden unless the write stays inside the restriction (see the module doc)."""
    if restriction.unrestricted:
        return
    if route.interaction in ("create", "update") and isinstance(resource, dict):
        require_permitted(route.resource_type, resource, restriction)
    if route.id is not None and route.interaction in ("update", "patch", "delete"):
        current = await call.clients.send(
            route.service,
            "GET",
            f"/fhir/{route.resource_type}/{quote(route.id, safe='')}".encode(),
            [("accept", "application/fhir+json")],
            b"",
            call.base,
        )
        if current.status == 200:
            require_permitted(route.resource_type, orjson.loads(current.body), restriction)


def body_resource(body: bytes) -> Any:
    """The JSON body of a write, or None when it is not JSON (the owner then says why)."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def restricted_condition(route: Route, query: str, restriction: Restriction) -> str:
    """The query of a conditional write (or a search) with the restriction's parameters added."""
    added = search_restrictions(route.resource_type, restriction)
    if not added:
        return query
    extra = encode_query(added)
    return f"{query}&{extra}" if query else extra
