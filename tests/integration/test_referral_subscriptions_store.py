"""Topic-based Subscriptions on both databases, without HTTP on the server side: the Subscription
hooks (requested, the secret shown once and never stored, the allowlist, statuses a client may
set), the fan-out consumer (matching, numbering, the same event twice, concurrent events without
gaps), and the delivery worker against an endpoint simulated by httpx.MockTransport (handshake,
order, batching by maxCount, error after N failures, recovery with the backlog in order,
heartbeats, a deleted subscription). Synthetic data only."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from services.referral import referrals, sla, subscription_operations, subscriptions
from services.referral.domain.notifications import SIGNATURE_HEADER, signature_valid
from services.referral.domain.subscription_endpoints import parse_allowlist
from services.referral.domain.subscriptions import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    MAX_COUNT,
    SECRET_EXTENSION,
)
from services.referral.subscription_delivery import DeliveryWorker
from services.referral.subscriptions import subscription_notifications, subscription_state
from shared.errors import BusinessRuleViolation, Forbidden
from shared.events import CloudEvent, topics
from shared.fhir.ownership import OWNED_TYPES
from shared.fhir.rest import Caller, FhirRest, calling_as
from shared.fhir.subscription_topics import TASK_TOPIC
from shared.settings import ReferralSettings
from shared.store import Store

ENDPOINT = "https://clinic.example.org/hooks/carebridge"
SECRET = "clinic-shared-secret-0123456789"
SETTINGS = dict(
    database_url="unused",
    subscription_endpoint_allowlist="https://clinic.example.org/hooks",
    subscription_fhir_base_url="https://carebridge.example.org/fhir",
    subscription_max_failures=3,
    subscription_retry_initial_s=0.01,
    subscription_max_backoff_s=0.02,
)


@dataclass
class Holder:
    store: Store
    settings: ReferralSettings


@pytest.fixture
async def rest(database_url: str) -> AsyncIterator[FhirRest]:
    store = await Store.open(
        database_url, extra_migrations=(*referrals.MIGRATIONS, *sla.MIGRATIONS, *subscriptions.MIGRATIONS)
    )
    settings = ReferralSettings(**SETTINGS)  # type: ignore[arg-type]
    hooks = subscriptions.SubscriptionHooks(parse_allowlist(settings.subscription_endpoint_allowlist))
    yield FhirRest(
        Holder(store, settings),
        OWNED_TYPES["referral"],
        hooks={"Subscription": hooks},
        operations=subscription_operations.operations(),
    )
    await store.close()


@dataclass
class Endpoint:
    """The clinic's endpoint, simulated: records each POST and answers `status`."""

    status: int = 200
    received: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.received.append(request)
        return httpx.Response(self.status)

    def bundles(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.content) for r in self.received]

    def kinds(self) -> list[str]:
        return [param(b, "type") for b in self.bundles()]

    def event_numbers(self) -> list[list[int]]:
        return [numbers(b) for b in self.bundles() if param(b, "type") == "event-notification"]


def param(bundle: dict[str, Any], name: str) -> Any:
    for p in bundle["entry"][0]["resource"]["parameter"]:
        if p["name"] == name:
            return next(v for k, v in p.items() if k.startswith("value"))
    return None


def numbers(bundle: dict[str, Any]) -> list[int]:
    return [
        int(part["valueString"])
        for p in bundle["entry"][0]["resource"]["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]


def subscription(
    *filters: str, extension: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Referrals addressed to clinic-1",
        "criteria": TASK_TOPIC,
        "_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": f} for f in filters]},
        "channel": {
            "type": "rest-hook",
            "endpoint": ENDPOINT,
            "payload": "application/fhir+json",
            "extension": extension or [],
        },
        **extra,
    }


def task(task_id: str, version: int, status: str = "requested", owner: str = "clinic-1") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": task_id,
        "meta": {"versionId": str(version), "lastUpdated": datetime.now(UTC).isoformat()},
        "status": status,
        "intent": "order",
        "owner": {"reference": f"Organization/{owner}"},
    }


def task_event(resource: dict[str, Any], action: str = "updated") -> CloudEvent:
    return CloudEvent(
        type=topics.resource_event_type("Task", action),  # type: ignore[arg-type]
        source="carebridge/referral",
        subject=f"Task/{resource['id']}",
        data=resource,
    )


async def create(
    rest: FhirRest, resource: dict[str, Any], caller: Caller = Caller("case-manager")
) -> dict[str, Any]:
    with calling_as(caller):
        async with rest.store.transaction() as tx:
            written = await rest.create(tx, "Subscription", resource)
    created: dict[str, Any] = orjson.loads(written.stored.content)
    return created


async def read(rest: FhirRest, subscription_id: str) -> dict[str, Any]:
    stored: dict[str, Any] = orjson.loads((await rest.store.read("Subscription", subscription_id)).content)
    return stored


async def row(rest: FhirRest, subscription_id: str) -> Any:
    async with rest.store.connect() as connection:
        return await subscriptions.state_row(connection, subscription_id)


async def consume(rest: FhirRest, event: CloudEvent) -> None:
    async with rest.store.transaction() as tx:
        await subscriptions.on_referral_event()(event, tx)


def worker_for(rest: FhirRest, endpoint: Endpoint) -> DeliveryWorker:
    client = httpx.AsyncClient(transport=httpx.MockTransport(endpoint.handle))
    return DeliveryWorker(rest, rest.settings, client)  # type: ignore[arg-type]


async def run_until(
    worker: DeliveryWorker, subscription_id: str, done: Callable[[], Any], rounds: int = 400
) -> None:
    """Attempt deliveries (as the loop would) until `done()` (a bool, or an awaitable one);
    waits out the short backoff."""
    for _ in range(rounds):
        answer = done()
        if await answer if inspect.isawaitable(answer) else answer:
            return
        if subscription_id in await worker.due(datetime.now(UTC)):
            await worker.attempt(subscription_id)
        else:
            await asyncio.sleep(0.005)
    raise AssertionError("not done")


# --- the Subscription resource ----------------------------------------------------------------------


async def test_a_subscription_is_stored_requested_and_the_secret_is_shown_once(rest: FhirRest) -> None:
    created = await create(rest, {**subscription("Task?owner=Organization/clinic-1"), "status": "active"})
    assert created["status"] == "requested"  # channels.md: rest-hook starts requested
    [shown] = [e for e in created["extension"] if e["url"] == SECRET_EXTENSION]
    assert len(shown["valueString"]) >= 32
    stored = await read(rest, created["id"])
    assert "extension" not in stored  # not in the resource, its history or its event
    state = await row(rest, created["id"])
    assert state.secret == shown["valueString"]
    assert (state.status, state.events_since_start, state.handshake_done) == ("requested", 0, False)


async def test_a_secret_the_client_gives_is_kept_but_not_stored_in_the_resource(rest: FhirRest) -> None:
    given = {"extension": [{"url": SECRET_EXTENSION, "valueString": SECRET}]}
    created = await create(rest, {**subscription("Task?owner=Organization/clinic-1"), **given})
    assert "extension" not in created and "extension" not in await read(rest, created["id"])
    assert (await row(rest, created["id"])).secret == SECRET


async def test_an_endpoint_off_the_allowlist_is_refused_and_nothing_is_stored(rest: FhirRest) -> None:
    bad = subscription("Task?owner=Organization/clinic-1")
    bad["channel"]["endpoint"] = "https://elsewhere.example.org/hook"
    with pytest.raises(BusinessRuleViolation, match="allowlist"):
        await create(rest, bad)
    async with rest.store.connect() as connection:
        assert (
            await connection.execute(sa.select(sa.func.count()).select_from(subscription_state))
        ).scalar() == 0


async def test_a_clinic_subscribes_only_to_its_own_referrals(rest: FhirRest) -> None:
    clinic = Caller("clinic-user", "clinic-1")
    with pytest.raises(Forbidden):
        await create(rest, subscription("Task?status=requested"), clinic)
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"), clinic)
    assert (await row(rest, created["id"])).organization == "clinic-1"


async def test_only_the_server_sets_error_and_a_client_re_request_shakes_hands_again(rest: FhirRest) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    body = {k: v for k, v in created.items() if k not in ("meta", "extension")}
    with pytest.raises(BusinessRuleViolation, match="Only the server"):
        async with rest.store.transaction() as tx:
            await rest.update(tx, "Subscription", created["id"], {**body, "status": "error"})
    async with rest.store.transaction() as tx:  # as the worker leaves it after failures
        await (await tx.sql_connection()).execute(
            sa.update(subscription_state).values(handshake_done=True, status="error", failures=4)
        )
        await subscriptions.set_status(rest, tx, created["id"], "error")
    async with rest.store.transaction() as tx:
        written = await rest.update(tx, "Subscription", created["id"], {**body, "status": "requested"})
    assert orjson.loads(written.stored.content)["status"] == "requested"
    state = await row(rest, created["id"])
    assert (state.status, state.handshake_done, state.failures) == ("requested", False, 0)
    shown = next(e for e in created["extension"] if e["url"] == SECRET_EXTENSION)
    assert state.secret == shown["valueString"]  # kept across the update that did not give one


# --- fan-out ----------------------------------------------------------------------------------------


async def test_matching_events_are_numbered_per_subscription_and_others_ignored(rest: FhirRest) -> None:
    mine = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    theirs = await create(rest, subscription("Task?owner=Organization/clinic-2"))
    await consume(rest, task_event(task("t1", 1), "created"))
    await consume(rest, task_event(task("t9", 1, owner="clinic-2"), "created"))
    await consume(rest, task_event(task("t1", 2, "accepted")))
    await consume(rest, task_event(task("t2", 1, "draft"), "created"))  # Gravity: not drafts
    async with rest.store.connect() as connection:
        rows = (
            await connection.execute(
                sa.select(subscription_notifications).order_by("subscription_id", "event_number")
            )
        ).all()
    got = {(r.subscription_id, r.event_number, r.focus_id, r.focus_version, r.action) for r in rows}
    assert got == {
        (mine["id"], 1, "t1", 1, "created"),
        (mine["id"], 2, "t1", 2, "updated"),
        (theirs["id"], 1, "t9", 1, "created"),
    }
    assert (await row(rest, mine["id"])).events_since_start == 2


async def test_the_same_event_twice_is_one_notification(rest: FhirRest) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    event = task_event(task("t1", 1))
    await consume(rest, event)
    await consume(rest, event)
    state = await row(rest, created["id"])
    assert state.events_since_start == 1


async def test_concurrent_events_are_numbered_without_gaps(rest: FhirRest) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    await asyncio.gather(*(consume(rest, task_event(task(f"t{i}", 1))) for i in range(20)))
    async with rest.store.connect() as connection:
        numbers_seen = (
            await connection.execute(
                sa.select(subscription_notifications.c.event_number).where(
                    subscription_notifications.c.subscription_id == created["id"]
                )
            )
        ).scalars()
        assert sorted(numbers_seen) == list(range(1, 21))
    assert (await row(rest, created["id"])).events_since_start == 20


async def test_a_deleted_subscription_counts_nothing_more(rest: FhirRest) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    async with rest.store.transaction() as tx:
        deleted = await rest.delete(tx, "Subscription", created["id"])
    assert deleted.stored is not None
    await consume(
        rest,
        CloudEvent(
            type=topics.resource_event_type("Subscription", "deleted"),
            source="carebridge/referral",
            data={"resourceType": "Subscription", "id": created["id"], "meta": {"versionId": "2"}},
        ),
    )
    await consume(rest, task_event(task("t1", 1)))
    state = await row(rest, created["id"])
    assert (state.status, state.events_since_start) == ("off", 0)


# --- delivery ---------------------------------------------------------------------------------------


async def test_the_handshake_activates_and_events_follow_in_order_signed(rest: FhirRest) -> None:
    given = {"extension": [{"url": SECRET_EXTENSION, "valueString": SECRET}]}
    created = await create(rest, {**subscription("Task?owner=Organization/clinic-1"), **given})
    endpoint = Endpoint()
    worker = worker_for(rest, endpoint)
    for version in (1, 2, 3):
        await consume(rest, task_event(task("t1", version)))
    await run_until(worker, created["id"], lambda: len(endpoint.received) == 4)
    assert endpoint.kinds() == ["handshake", "event-notification", "event-notification", "event-notification"]
    assert endpoint.event_numbers() == [[1], [2], [3]]
    for request in endpoint.received:
        assert signature_valid(SECRET, request.content, request.headers[SIGNATURE_HEADER])
        assert request.headers["content-type"] == "application/fhir+json"
    stored = await read(rest, created["id"])
    assert (stored["status"], stored["meta"]["versionId"]) == ("active", "2")
    assert (await row(rest, created["id"])).delivered_through == 3


async def test_max_count_batches_the_backlog(rest: FhirRest) -> None:
    created = await create(
        rest,
        subscription(
            "Task?owner=Organization/clinic-1", extension=[{"url": MAX_COUNT, "valuePositiveInt": 2}]
        ),
    )
    for version in range(1, 6):
        await consume(rest, task_event(task("t1", version)))
    endpoint = Endpoint()
    worker = worker_for(rest, endpoint)
    await run_until(worker, created["id"], lambda: len(endpoint.event_numbers()) == 3)
    assert endpoint.event_numbers() == [[1, 2], [3, 4], [5]]


async def test_repeated_failure_is_error_and_the_backlog_follows_in_order_when_the_endpoint_returns(
    rest: FhirRest,
) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    endpoint = Endpoint()
    worker = worker_for(rest, endpoint)
    await consume(rest, task_event(task("t1", 1)))
    await run_until(worker, created["id"], lambda: len(endpoint.event_numbers()) == 1)
    endpoint.status = 503
    for version in (2, 3, 4):
        await consume(rest, task_event(task("t1", version)))

    async def errored() -> bool:
        return (await read(rest, created["id"]))["status"] == "error"

    await run_until(worker, created["id"], errored)
    state = await row(rest, created["id"])
    assert state.status == "error" and state.failures >= 3
    assert (state.events_since_start, state.delivered_through, state.error_code) == (4, 1, "error-response")
    assert all(numbers == [2] for numbers in endpoint.event_numbers()[1:])  # event 2 retried, never 3 first
    endpoint.status = 200
    await run_until(worker, created["id"], lambda: [4] in endpoint.event_numbers())
    delivered = [n for ns in endpoint.event_numbers() for n in ns]
    assert sorted(set(delivered)) == [1, 2, 3, 4]
    assert delivered == sorted(delivered)  # retries repeat the head; nothing overtakes it
    state = await row(rest, created["id"])
    assert (state.status, state.failures, state.error_code, state.delivered_through) == ("active", 0, None, 4)
    assert (await read(rest, created["id"]))["status"] == "active"


async def test_a_failed_handshake_is_error_at_once_and_retried(rest: FhirRest) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    endpoint = Endpoint(status=500)
    worker = worker_for(rest, endpoint)
    await worker.attempt(created["id"])
    assert (await read(rest, created["id"]))["status"] == "error"  # channels.md: at once
    endpoint.status = 204

    async def active() -> bool:
        return (await read(rest, created["id"]))["status"] == "active"

    await run_until(worker, created["id"], active)
    assert endpoint.kinds() == ["handshake", "handshake"]


async def test_heartbeats_follow_the_period_when_nothing_else_is_sent(rest: FhirRest) -> None:
    created = await create(
        rest,
        subscription(
            "Task?owner=Organization/clinic-1", extension=[{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 1}]
        ),
    )
    endpoint = Endpoint()
    worker = worker_for(rest, endpoint)
    await run_until(worker, created["id"], lambda: endpoint.kinds() == ["handshake"])
    assert created["id"] not in await worker.due(datetime.now(UTC))  # nothing due within the period
    assert created["id"] in await worker.due(datetime.now(UTC) + timedelta(seconds=1.1))
    await asyncio.sleep(1.05)
    await run_until(worker, created["id"], lambda: endpoint.kinds() == ["handshake", "heartbeat"])
    assert param(endpoint.bundles()[-1], "events-since-subscription-start") == "0"


async def test_a_deleted_subscription_is_not_delivered_to(rest: FhirRest) -> None:
    created = await create(rest, subscription("Task?owner=Organization/clinic-1"))
    async with rest.store.transaction() as tx:
        await rest.delete(tx, "Subscription", created["id"])
    endpoint = Endpoint()
    await worker_for(rest, endpoint).attempt(created["id"])
    assert endpoint.received == []
    assert (await row(rest, created["id"])).status == "off"
