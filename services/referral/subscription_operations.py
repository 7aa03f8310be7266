"""`Subscription/[id]/$status` and `Subscription/[id]/$events` (HL7 Subscriptions R5 Backport IG,
OperationDefinitions backport-subscription-status and backport-subscription-events), answered from
referral's subscription tables (subscriptions.py).

A clinic's token sees only the subscriptions it made itself; any other answers 404, as if there
were none.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import sqlalchemy as sa

from services.referral.domain.notifications import notification_bundle, status_bundle
from services.referral.subscriptions import (
    event_of,
    focus_versions,
    state_of,
    state_row,
    subscription_notifications,
)
from shared.errors import InvalidInput, NotFound
from shared.fhir.rest import OperationCall, RestResponse
from shared.fhir.rest.caller import current_caller

#: Most events one `$events` call returns (errors.md: a server MAY restrict what it replays);
#: a client asks again from the next number.
MAX_EVENTS_PER_QUERY: Final = 200


def operations() -> dict[tuple[str, str], Any]:
    return {("Subscription", "status"): subscription_status, ("Subscription", "events"): subscription_events}


async def _visible_state(call: OperationCall) -> Any:
    """The subscription's row, if the Subscription exists and the caller may see it (a clinic
    sees only the subscriptions its own token made)."""
    subscription_id = str(call.id)
    await call.rest.read("Subscription", subscription_id, call.tx)  # NotFound / Gone
    async with call.rest.store.connect() as connection:
        row = await state_row(connection, subscription_id)
    organization = current_caller().organization
    if row is None or (organization is not None and row.organization != organization):
        raise NotFound(f"Subscription/{subscription_id} not found")
    return row


async def subscription_status(call: OperationCall) -> RestResponse:
    """`GET Subscription/[id]/$status` (Backport IG OperationDefinition backport-subscription-status):
    a searchset Bundle with the subscription's query-status Parameters."""
    row = await _visible_state(call)
    return RestResponse(200, orjson.dumps(status_bundle(call.request.base, [state_of(row)])))


_CONTENT_ORDER: Final = ("empty", "id-only", "full-resource")


async def subscription_events(call: OperationCall) -> RestResponse:
    """`GET Subscription/[id]/$events?eventsSinceNumber=&eventsUntilNumber=&content=` (Backport IG
    backport-subscription-events): the events replayed as a query-event history Bundle, with the
    subscription's payload content (`content` may ask for less, never for more)."""
    row = await _visible_state(call)
    query = dict(call.request.params)
    since = _event_number(query, "eventsSinceNumber", 1)
    until = _event_number(query, "eventsUntilNumber", row.events_since_start)
    content = row.content
    asked = query.get("content")
    if asked is not None:
        if asked not in _CONTENT_ORDER:
            raise InvalidInput(f"content must be one of {', '.join(_CONTENT_ORDER)}", expression=["content"])
        content = min(content, asked, key=_CONTENT_ORDER.index)
    n = subscription_notifications
    async with call.rest.store.connect() as connection:
        rows = (
            await connection.execute(
                sa.select(n)
                .where(n.c.subscription_id == row.subscription_id, n.c.event_number.between(since, until))
                .order_by(n.c.event_number)
                .limit(MAX_EVENTS_PER_QUERY)
            )
        ).all()
    events = [event_of(r) for r in rows]
    resources = await focus_versions(call.rest, events) if content == "full-resource" else {}
    state = dataclasses.replace(state_of(row), content=content)
    bundle = notification_bundle(
        call.request.base, state, "query-event", datetime.now(UTC), events, resources
    )
    return RestResponse(200, orjson.dumps(bundle))


def _event_number(query: dict[str, str], name: str, default: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise InvalidInput(f"{name} must be an event number (a whole number)", expression=[name])
    return int(value)
