"""Topic-based Subscriptions (Subscriptions R5 Backport IG, R4) on referral's Tasks and
ServiceRequests: the Subscription write hooks and the fan-out of lifecycle events to
subscriptions. The rules are in domain/subscriptions.py, domain/subscription_endpoints.py and
domain/notifications.py; the delivery worker is subscription_delivery.py; `$status` and
`$events` are subscription_operations.py.

Tables (referral's own database):
- `subscription_state`: one row per Subscription: what it asks for (topic, filters, channel),
  its HMAC secret (never in the resource), its durable event counter `events_since_start`, how
  far delivery got (`delivered_through`, the last event number the endpoint acknowledged), and
  the delivery schedule (`next_attempt_at`, consecutive `failures`, the last error, the next
  heartbeat, a lease so one worker at a time delivers for a subscription).
- `subscription_notifications`: the outbox: one row per event of a subscription (its number,
  the focus and its version, when it happened). Rows stay after delivery: `$events` replays them.

Flow: a client creates a Subscription (status `requested`; the endpoint checked against
REFERRAL_SUBSCRIPTION_ENDPOINT_ALLOWLIST) -> the worker sends the handshake and sets it `active`
-> each Task or ServiceRequest event the `subscriptions` consumer reads is matched against the
live subscriptions of its topic, in the consumer's transaction: a match increments the counter
and adds a notification row (the same event twice adds nothing: the inbox and a unique
(subscription, event id) both say so) -> the worker delivers them in order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from services.referral.domain import subscriptions as rules
from services.referral.domain.notifications import (
    NotificationEvent,
    SubscriptionState,
)
from services.referral.domain.subscription_endpoints import AllowedEndpoint, check_endpoint
from shared.errors import BusinessRuleViolation, Gone, NotFound
from shared.events import CloudEvent, Handler, topics
from shared.fhir.rest import FhirRest, Proceed, WriteHooks, Written
from shared.fhir.rest.caller import current_caller
from shared.store import Migration, StoredResource, Transaction, UtcDateTime, create_tables

#: Statuses in which a subscription counts events (the Backport IG, errors.md: a server in error
#: still increments the counter) and the worker delivers.
LIVE: Final = ("requested", "active", "error")

metadata = sa.MetaData()
subscription_state = sa.Table(
    "subscription_state",
    metadata,
    sa.Column("subscription_id", sa.String(64), primary_key=True),
    #: The Subscription version this row reflects, and its status.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("topic", sa.String(200), nullable=False),
    #: JSON list of [name, [values], negated].
    sa.Column("filters", sa.Text, nullable=False),
    sa.Column("endpoint", sa.Text, nullable=False),
    sa.Column("content_type", sa.String(100), nullable=False),
    sa.Column("content", sa.String(16), nullable=False),
    #: JSON list of [name, value] from channel.header.
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("heartbeat_s", sa.Integer),
    sa.Column("timeout_s", sa.Integer),
    sa.Column("max_count", sa.Integer, nullable=False),
    sa.Column("end_at", UtcDateTime()),
    sa.Column("secret", sa.String(256), nullable=False),
    #: The clinic whose token created it (its Organization id), if any.
    sa.Column("organization", sa.String(64)),
    sa.Column("events_since_start", sa.Integer, nullable=False),
    sa.Column("delivered_through", sa.Integer, nullable=False),
    sa.Column("handshake_done", sa.Boolean, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
    sa.Column("heartbeat_due_at", UtcDateTime()),
    sa.Column("lease_until", UtcDateTime()),
    sa.Column("error_code", sa.String(32)),
    sa.Column("error_text", sa.String(500)),
    sa.Column("last_delivered_at", UtcDateTime()),
    sa.Index("ix_subscription_state_topic", "topic", "status"),
    sa.Index("ix_subscription_state_due", "next_attempt_at"),
)
subscription_notifications = sa.Table(
    "subscription_notifications",
    metadata,
    sa.Column("subscription_id", sa.String(64), primary_key=True),
    sa.Column("event_number", sa.Integer, primary_key=True),
    #: The CloudEvent id of the lifecycle event: one notification per event and subscription.
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("focus_type", sa.String(64), nullable=False),
    sa.Column("focus_id", sa.String(64), nullable=False),
    sa.Column("focus_version", sa.Integer, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("occurred_at", UtcDateTime(), nullable=False),
    sa.Column("delivered_at", UtcDateTime()),
    sa.UniqueConstraint("subscription_id", "event_id", name="uq_subscription_notifications_event"),
)
MIGRATIONS = (
    Migration(
        "referral.subscriptions",
        1,
        create_tables(subscription_state, subscription_notifications),
        "topic-based subscriptions: state, event counter and notification outbox",
    ),
)

#: Set while the server itself writes a Subscription (its status after a handshake or failures).
_SERVER_WRITE: ContextVar[bool] = ContextVar("carebridge_subscription_server_write", default=False)


@contextlib.contextmanager
def server_write() -> Iterator[None]:
    token = _SERVER_WRITE.set(True)
    try:
        yield
    finally:
        _SERVER_WRITE.reset(token)


# --- the rows, as plain values ------------------------------------------------------------------


def filters_of(row: Any) -> list[rules.Filter]:
    return [rules.Filter(name, tuple(values), negated) for name, values, negated in orjson.loads(row.filters)]


def state_of(row: Any) -> SubscriptionState:
    error = (row.error_code, row.error_text or "") if row.error_code else None
    return SubscriptionState(
        row.subscription_id, row.topic, row.status, row.events_since_start, row.content, error
    )


def event_of(row: Any) -> NotificationEvent:
    return NotificationEvent(
        row.event_number, row.occurred_at, row.focus_type, row.focus_id, row.focus_version, row.action
    )


async def state_row(connection: Any, subscription_id: str) -> Any:
    s = subscription_state
    return (await connection.execute(sa.select(s).where(s.c.subscription_id == subscription_id))).first()


def _request_columns(request: rules.SubscriptionRequest) -> dict[str, Any]:
    return {
        "topic": request.topic,
        "filters": orjson.dumps([[f.name, list(f.values), f.negated] for f in request.filters]).decode(),
        "endpoint": request.endpoint,
        "content_type": request.content_type,
        "content": request.content,
        "headers": orjson.dumps([list(h) for h in request.headers]).decode(),
        "heartbeat_s": request.heartbeat_s,
        "timeout_s": request.timeout_s,
        "max_count": request.max_count,
        "end_at": request.end,
    }


# --- writes of a Subscription -------------------------------------------------------------------


class SubscriptionHooks(WriteHooks):
    """Every client write of a Subscription is read as the Backport profile and checked (topic,
    filters, channel, payload, endpoint allowlist, a clinic's own referrals only); rest-hook
    Subscriptions are stored `requested` until the handshake succeeds. The server's own status
    writes pass through unchanged."""

    def __init__(self, allowlist: tuple[AllowedEndpoint, ...]) -> None:
        self.allowlist = allowlist

    def _read(self, resource: dict[str, Any]) -> tuple[dict[str, Any], rules.SubscriptionRequest, str | None]:
        resource, secret = rules.take_secret(resource)
        request = rules.read_subscription(resource)
        check_endpoint(request.endpoint, self.allowlist)
        rules.check_caller_scope(request, current_caller().organization)
        return resource, request, secret

    async def create(
        self,
        rest: FhirRest,
        tx: Transaction,
        resource: dict[str, Any],
        proceed: Proceed,
        *,
        id_promised: bool,
    ) -> Written:
        if _SERVER_WRITE.get():
            return await proceed(resource)
        resource, request, given = self._read(resource)
        status = _requested_status(request.status, None, endpoint_changed=True)
        written = await proceed({**resource, "status": status})
        secret = given or secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        connection = await tx.sql_connection()
        # A Subscription re-created after its deletion is a new subscription: numbering restarts.
        for table in (subscription_notifications, subscription_state):
            await connection.execute(sa.delete(table).where(table.c.subscription_id == written.stored.id))
        await connection.execute(
            sa.insert(subscription_state).values(
                subscription_id=written.stored.id,
                version=written.stored.version_id,
                status=status,
                secret=secret,
                organization=current_caller().organization,
                events_since_start=0,
                delivered_through=0,
                handshake_done=False,
                failures=0,
                next_attempt_at=now,
                **_request_columns(request),
            )
        )
        if given is not None:
            return written
        return _with_secret(written, secret)

    async def update(
        self, rest: FhirRest, tx: Transaction, resource: dict[str, Any], proceed: Proceed
    ) -> Written:
        connection = await tx.sql_connection()
        if _SERVER_WRITE.get():
            written = await proceed(resource)
            await connection.execute(
                sa.update(subscription_state)
                .where(subscription_state.c.subscription_id == written.stored.id)
                .values(version=written.stored.version_id, status=resource["status"])
            )
            return written
        before = await state_row(connection, str(resource["id"]))
        try:
            await tx.read("Subscription", str(resource["id"]))  # locks it until commit
        except (NotFound, Gone):
            before = None
        if before is None:
            return await self.create(rest, tx, resource, proceed, id_promised=True)
        resource, request, given = self._read(resource)
        changed = request.endpoint != before.endpoint
        status = _requested_status(request.status, before.status, endpoint_changed=changed)
        written = await proceed({**resource, "status": status})
        values: dict[str, Any] = {
            "version": written.stored.version_id,
            "status": status,
            **_request_columns(request),
        }
        if given is not None:
            values["secret"] = given
        if status == "requested":
            # A (re)requested subscription shakes hands again before anything else is sent;
            # its counter and the events not yet delivered are kept.
            values |= {"handshake_done": False, "failures": 0, "next_attempt_at": datetime.now(UTC)}
        await connection.execute(
            sa.update(subscription_state)
            .where(subscription_state.c.subscription_id == before.subscription_id)
            .values(**values)
        )
        return written


def _requested_status(asked: str, current: str | None, *, endpoint_changed: bool) -> str:
    """The status a client's write leaves: `off` stops delivery; `requested` (or `active` on a
    subscription that is not active on that endpoint) asks for a handshake (channels.md:
    rest-hook Subscriptions start requested); only the server sets `error`."""
    if asked == "off":
        return "off"
    if asked == "error":
        if current == "error" and not endpoint_changed:
            return "error"
        raise BusinessRuleViolation(
            "Only the server sets a Subscription's status to error; set requested to have it "
            "re-activated (Backport IG errors.md)",
            expression=["Subscription.status"],
        )
    if asked == "active" and current == "active" and not endpoint_changed:
        return "active"
    return "requested"


def _with_secret(written: Written, secret: str) -> Written:
    """The creation's answer shows the secret the server made, once: it is not stored in the
    resource (nor its history, nor its event), only in subscription_state."""
    body = orjson.loads(written.stored.content)
    body["extension"] = [
        *(body.get("extension") or []),
        {"url": rules.SECRET_EXTENSION, "valueString": secret},
    ]
    shown: StoredResource = dataclasses.replace(written.stored, content=orjson.dumps(body))
    return Written(shown, written.status, written.message)


async def set_status(
    rest: FhirRest, tx: Transaction, subscription_id: str, status: str
) -> StoredResource | None:
    """The server's own status change: a new version of the Subscription (and its event)."""
    try:
        current = orjson.loads((await tx.read("Subscription", subscription_id)).content)
    except (NotFound, Gone):
        return None
    if current.get("status") == status:
        return None
    body = {k: v for k, v in current.items() if k != "meta"} | {"status": status}
    with server_write():
        written = await rest.update(tx, "Subscription", subscription_id, body)
    return written.stored


# --- fan-out: lifecycle events to notifications -------------------------------------------------


def on_referral_event() -> Handler:
    """The `subscriptions` consumer of topics.REFERRAL: each Task or ServiceRequest event that
    matches a live subscription becomes that subscription's next numbered notification."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        parsed = topics.parse_resource_event_type(event.type)
        if parsed is None or not isinstance(event.data, dict):
            return
        resource_type, action = parsed
        if resource_type == "Subscription":
            if action == "deleted":
                await _stop(tx, str(event.data.get("id")))
            return
        candidates = {t.url: t for t in rules.topics_for(resource_type)}
        if not candidates or action == "deleted":
            return
        s = subscription_state
        connection = await tx.sql_connection()
        rows = (
            await connection.execute(
                sa.select(s.c.subscription_id, s.c.topic, s.c.filters, s.c.end_at).where(
                    s.c.topic.in_(sorted(candidates)), s.c.status.in_(LIVE)
                )
            )
        ).all()
        occurred = _occurred_at(event)
        for row in rows:
            if row.end_at is not None and row.end_at <= occurred:
                continue
            if rules.triggers(candidates[row.topic], filters_of(row), action, event.data):
                await record_event(tx, row.subscription_id, event, action, occurred)

    return handle


def _occurred_at(event: CloudEvent) -> datetime:
    """When the change happened on the server: the version's lastUpdated, else the event time."""
    for text in ((event.data.get("meta") or {}).get("lastUpdated"), event.time):
        if isinstance(text, str) and text:
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if moment.tzinfo is not None:
                    return moment.astimezone(UTC)
    return datetime.now(UTC)


async def record_event(
    tx: Transaction, subscription_id: str, event: CloudEvent, action: str, occurred: datetime
) -> int | None:
    """Number the event for the subscription and put its notification in the outbox; None if
    this event was recorded for it before. The counter's UPDATE holds the row's lock until
    commit, so concurrent consumers number one subscription's events without gaps."""
    n = subscription_notifications
    connection = await tx.sql_connection()
    seen = await connection.execute(
        sa.select(n.c.event_number).where(n.c.subscription_id == subscription_id, n.c.event_id == event.id)
    )
    if seen.first() is not None:
        return None
    s = subscription_state
    number = (
        await connection.execute(
            sa.update(s)
            .where(s.c.subscription_id == subscription_id)
            .values(events_since_start=s.c.events_since_start + 1)
            .returning(s.c.events_since_start)
        )
    ).scalar_one()
    resource = event.data
    dialect_insert = postgresql.insert if tx.dialect == "postgresql" else sqlite.insert
    await connection.execute(
        dialect_insert(n)
        .values(
            subscription_id=subscription_id,
            event_number=number,
            event_id=event.id,
            focus_type=resource["resourceType"],
            focus_id=str(resource["id"]),
            focus_version=int((resource.get("meta") or {}).get("versionId") or 0),
            action=action,
            occurred_at=occurred,
        )
        .on_conflict_do_nothing()
    )
    return int(number)


async def _stop(tx: Transaction, subscription_id: str) -> None:
    """A deleted Subscription delivers nothing more (its rows stay for the record)."""
    connection = await tx.sql_connection()
    await connection.execute(
        sa.update(subscription_state)
        .where(subscription_state.c.subscription_id == subscription_id)
        .values(status="off", lease_until=None)
    )


async def focus_versions(
    rest: FhirRest, events: list[NotificationEvent]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The resources events are about, at the versions they were about (full-resource)."""
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    for event in events:
        key = (event.focus_type, event.focus_id, event.focus_version)
        if key in found:
            continue
        with contextlib.suppress(NotFound, Gone):
            stored = await rest.store.vread(event.focus_type, event.focus_id, event.focus_version)
            found[key] = orjson.loads(stored.content)
    return found
