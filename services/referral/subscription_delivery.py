"""The delivery worker of topic-based Subscriptions: handshakes, event notifications in order,
heartbeats, retries with backoff, and the `error` status after repeated failure.

Every `REFERRAL_SUBSCRIPTION_WORKER_INTERVAL_S` the worker looks in `subscription_state` for
subscriptions with something due: a handshake not yet acknowledged, events past
`delivered_through`, a heartbeat (`backport-heartbeat-period` elapsed with nothing sent) or an
`end` that has passed, and whose `next_attempt_at` (the backoff) has come. For each it takes a
lease (a conditional UPDATE of `lease_until`, so one worker of any replica at a time), builds the
notification (domain/notifications.py), signs it, POSTs it with httpx, and records the outcome:

- 2xx: `delivered_through` moves to the last event sent, the failure count resets, the next
  heartbeat is due a period later, and a subscription that was `requested` (the handshake) or
  `error` becomes `active` (a new version of the Subscription).
- anything else (an HTTP error status, a redirect, a timeout, no connection): `failures` + 1 and
  `next_attempt_at` = now + backoff (domain/notifications.retry_delay). A failed handshake makes
  the subscription `error` at once (Backport IG channels.md); `subscription_max_failures`
  consecutive failures make an `active` one `error`. The counter and the pending notifications
  stay; the worker keeps trying at the capped backoff and, when the endpoint answers again,
  delivers the backlog in order and the status returns to `active`. (The Backport IG, errors.md,
  leaves re-activation to the client because a client may have missed notifications; here none
  was dropped: the backlog arrives in full, numbered without a gap, and the Subscription's
  history keeps the error version for the client to see.)

Ordering: a subscription's notifications leave strictly by event number, one request in flight
per subscription (the lease), and `delivered_through` only moves forward, so a later event never
overtakes an earlier one. Delivery is at least once: a crash between the endpoint's 2xx and the
recording sends that notification again, with the same event numbers (receivers dedupe on them).
Everything the worker needs is in the database, so a restart picks up where it stopped.

Nothing is sent while a Subscription's endpoint is off the allowlist: the hooks check it on every
write, and redirects are not followed (they could lead anywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import orjson
import sqlalchemy as sa

from services.referral.domain.notifications import (
    SIGNATURE_HEADER,
    SUBSCRIPTION_HEADER,
    NotificationEvent,
    NotificationType,
    delivery_error,
    notification_bundle,
    retry_delay,
    signature,
)
from services.referral.subscriptions import (
    LIVE,
    event_of,
    focus_versions,
    set_status,
    state_of,
    state_row,
    subscription_notifications,
    subscription_state,
)
from shared.errors import Gone, NotFound
from shared.fhir.rest import FhirRest
from shared.service import ServiceRuntime
from shared.settings import ReferralSettings

log = logging.getLogger(__name__)

#: Subscriptions one worker delivers to at the same time (each has one request in flight).
MAX_CONCURRENT: Final = 16
#: Due subscriptions looked up per round.
BATCH: Final = 200
#: Notifications one subscription may send back to back before the others get a turn.
DRAIN_PER_TURN: Final = 100
#: A lease outlives the request it covers by this much.
LEASE_MARGIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification ready to send, and what it was built from."""

    subscription_id: str
    version: int
    status: str
    kind: NotificationType
    events: tuple[NotificationEvent, ...]
    endpoint: str
    headers: dict[str, str]
    body: bytes
    timeout_s: float
    heartbeat_s: int | None


def delivery_worker(
    rest: FhirRest, settings: ReferralSettings
) -> Callable[[ServiceRuntime], Coroutine[Any, Any, None]]:
    """The background loop (ServiceRuntime.background) delivering subscription notifications."""

    async def subscription_delivery(_runtime: ServiceRuntime) -> None:
        # Redirects are not followed: the allowlisted endpoint is where notifications go.
        async with httpx.AsyncClient(follow_redirects=False) as client:
            await DeliveryWorker(rest, settings, client).run()

    return subscription_delivery


class DeliveryWorker:
    def __init__(self, rest: FhirRest, settings: ReferralSettings, client: httpx.AsyncClient) -> None:
        self.rest = rest
        self.settings = settings
        self.client = client
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def run(self) -> None:
        try:
            while True:
                try:
                    for subscription_id in await self.due(datetime.now(UTC)):
                        if subscription_id not in self._in_flight:
                            self._in_flight[subscription_id] = asyncio.create_task(
                                self.attempt(subscription_id)
                            )
                except Exception:  # a bad round must not stop the worker; the next one retries
                    log.exception("referral: looking for due subscription notifications failed")
                await asyncio.sleep(self.settings.subscription_worker_interval_s)
        finally:
            running = list(self._in_flight.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def due(self, now: datetime) -> list[str]:
        s = subscription_state
        something_due = sa.or_(
            s.c.handshake_done.is_(False),
            s.c.delivered_through < s.c.events_since_start,
            s.c.heartbeat_due_at <= now,
            s.c.end_at <= now,
        )
        async with self.rest.store.connect() as connection:
            rows = await connection.execute(
                sa.select(s.c.subscription_id)
                .where(
                    s.c.status.in_(LIVE),
                    s.c.next_attempt_at <= now,
                    sa.or_(s.c.lease_until.is_(None), s.c.lease_until < now),
                    something_due,
                )
                .order_by(s.c.next_attempt_at)
                .limit(BATCH)
            )
            return [row.subscription_id for row in rows]

    async def attempt(self, subscription_id: str) -> None:
        """Deliver what is due; while the endpoint takes notifications and more are pending,
        go on without waiting for the next round (a backlog drains at the endpoint's pace, in
        order), up to DRAIN_PER_TURN before yielding the slot to other subscriptions."""
        try:
            async with self._slots:
                for _ in range(DRAIN_PER_TURN):
                    if not await self._attempt(subscription_id):
                        break
        finally:
            self._in_flight.pop(subscription_id, None)

    async def _attempt(self, subscription_id: str) -> bool:
        """True when a notification was delivered (there may be more)."""
        now = datetime.now(UTC)
        if not await self._lease(subscription_id, now):
            return False
        recorded = delivered = False
        try:
            delivery = await self.prepare(subscription_id, now)
            if delivery is not None:
                status_code, detail = await self.send(delivery)
                await self.record(delivery, status_code, detail)
                recorded = True
                delivered = status_code is not None and 200 <= status_code < 300
        except Exception:
            log.exception("referral: delivering to Subscription/%s failed", subscription_id)
        finally:
            if not recorded:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release(subscription_id))
        return delivered

    async def _lease(self, subscription_id: str, now: datetime) -> bool:
        s = subscription_state
        until = now + timedelta(seconds=self.settings.subscription_delivery_timeout_s + LEASE_MARGIN_S)
        async with self.rest.store.transaction() as tx:
            result = await (await tx.sql_connection()).execute(
                sa.update(s)
                .where(
                    s.c.subscription_id == subscription_id,
                    sa.or_(s.c.lease_until.is_(None), s.c.lease_until < now),
                )
                .values(lease_until=until)
            )
            return bool(result.rowcount == 1)

    async def _release(self, subscription_id: str) -> None:
        s = subscription_state
        async with self.rest.store.transaction() as tx:
            await (await tx.sql_connection()).execute(
                sa.update(s).where(s.c.subscription_id == subscription_id).values(lease_until=None)
            )

    # --- building ------------------------------------------------------------------------------

    async def prepare(self, subscription_id: str, now: datetime) -> Delivery | None:
        """The notification due for the subscription, or None (nothing due; or it was deleted
        or has ended, which turns it off)."""
        async with self.rest.store.connect() as connection:
            row = await state_row(connection, subscription_id)
        if row is None or row.status not in LIVE:
            return None
        try:
            await self.rest.store.read("Subscription", subscription_id)
        except (NotFound, Gone):
            await self._turn_off(subscription_id, set_resource=False)
            return None
        if row.end_at is not None and row.end_at <= now:
            await self._turn_off(subscription_id, set_resource=True)
            return None
        kind: NotificationType
        events: tuple[NotificationEvent, ...] = ()
        if not row.handshake_done:
            kind = "handshake"
        elif row.delivered_through < row.events_since_start:
            kind = "event-notification"
            events = await self._pending_events(row)
        elif row.heartbeat_due_at is not None and row.heartbeat_due_at <= now:
            kind = "heartbeat"
        else:
            return None
        resources = await focus_versions(self.rest, list(events)) if row.content == "full-resource" else {}
        base = self.settings.subscription_fhir_base_url.rstrip("/")
        bundle = notification_bundle(base, state_of(row), kind, now, events, resources)
        body = orjson.dumps(bundle)
        headers = {name: value for name, value in orjson.loads(row.headers)}
        headers |= {
            "Content-Type": row.content_type,
            SIGNATURE_HEADER: signature(row.secret, body),
            SUBSCRIPTION_HEADER: f"{base}/Subscription/{subscription_id}",
        }
        timeout = self.settings.subscription_delivery_timeout_s
        if row.timeout_s:
            timeout = min(timeout, float(row.timeout_s))
        return Delivery(
            subscription_id,
            row.version,
            row.status,
            kind,
            events,
            row.endpoint,
            headers,
            body,
            timeout,
            row.heartbeat_s,
        )

    async def _pending_events(self, row: Any) -> tuple[NotificationEvent, ...]:
        n = subscription_notifications
        async with self.rest.store.connect() as connection:
            rows = await connection.execute(
                sa.select(n)
                .where(n.c.subscription_id == row.subscription_id, n.c.event_number > row.delivered_through)
                .order_by(n.c.event_number)
                .limit(row.max_count)
            )
            return tuple(event_of(r) for r in rows)

    async def _turn_off(self, subscription_id: str, *, set_resource: bool) -> None:
        async with self.rest.store.transaction() as tx:
            if set_resource:
                await set_status(self.rest, tx, subscription_id, "off")
            await (await tx.sql_connection()).execute(
                sa.update(subscription_state)
                .where(subscription_state.c.subscription_id == subscription_id)
                .values(status="off", lease_until=None)
            )

    # --- sending and recording -----------------------------------------------------------------

    async def send(self, delivery: Delivery) -> tuple[int | None, str]:
        """(HTTP status, detail); the status is None when no answer came."""
        try:
            response = await self.client.post(
                delivery.endpoint, content=delivery.body, headers=delivery.headers, timeout=delivery.timeout_s
            )
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        return response.status_code, ""

    async def record(self, delivery: Delivery, status_code: int | None, detail: str) -> None:
        now = datetime.now(UTC)
        ok = status_code is not None and 200 <= status_code < 300
        s, n = subscription_state, subscription_notifications
        async with self.rest.store.transaction() as tx:
            connection = await tx.sql_connection()
            row = await state_row(connection, delivery.subscription_id)
            if row is None:
                return
            values: dict[str, Any] = {"lease_until": None}
            new_status: str | None = None
            # A client's write since the notification was built decides the status itself.
            untouched = row.version == delivery.version
            if ok:
                values |= {
                    "failures": 0,
                    "error_code": None,
                    "error_text": None,
                    "next_attempt_at": now,
                    "last_delivered_at": now,
                    "heartbeat_due_at": now + timedelta(seconds=delivery.heartbeat_s)
                    if delivery.heartbeat_s
                    else None,
                }
                if delivery.kind == "handshake" and untouched:
                    values["handshake_done"] = True
                if delivery.events:
                    last = delivery.events[-1].number
                    values["delivered_through"] = max(row.delivered_through, last)
                    await connection.execute(
                        sa.update(n)
                        .where(
                            n.c.subscription_id == delivery.subscription_id,
                            n.c.event_number.in_([e.number for e in delivery.events]),
                        )
                        .values(delivered_at=now)
                    )
                if untouched and row.status in ("requested", "error"):
                    new_status = "active"
            else:
                failures = row.failures + 1
                code, text = delivery_error(status_code, detail)
                delay = retry_delay(
                    failures,
                    self.settings.subscription_retry_initial_s,
                    self.settings.subscription_max_backoff_s,
                )
                values |= {
                    "failures": failures,
                    "error_code": code,
                    "error_text": text[:500],
                    "next_attempt_at": now + delay,
                }
                handshake_failed = delivery.kind == "handshake" and row.status == "requested"
                too_many = failures >= self.settings.subscription_max_failures and row.status == "active"
                if untouched and (handshake_failed or too_many):
                    new_status = "error"
                log.warning(
                    "referral: %s to Subscription/%s failed (%s; attempt %d); next in %.1fs",
                    delivery.kind,
                    delivery.subscription_id,
                    text,
                    failures,
                    delay.total_seconds(),
                )
            await connection.execute(
                sa.update(s).where(s.c.subscription_id == delivery.subscription_id).values(**values)
            )
            if new_status is not None:
                await set_status(self.rest, tx, delivery.subscription_id, new_status)
