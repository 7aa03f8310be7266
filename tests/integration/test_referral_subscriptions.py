"""Topic-based Subscriptions through the gateway with real HTTP on both sides: a clinic's rest-hook
endpoint (a real HTTP server this test starts, recording what it receives) gets the handshake,
signed id-only notifications for its referrals only, full-resource ones on request and heartbeats;
while it is down the notifications wait, the subscription goes to error, and when it is back they
arrive in order with no gap in the event numbers, also across a restart of the referral service;
`$status` and `$events` answer from the outbox; an endpoint off the allowlist is 422.

The stack here is this module's own (tests/integration/stack.py, the same four services): its
referral retries fast (so the error status comes within a second) and is restarted by a test,
which the session's shared stack must not see. Synthetic data only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI, Request, Response

from services.referral.app import create_app as referral_app
from services.referral.domain.notifications import SIGNATURE_HEADER, signature_valid
from services.referral.domain.subscriptions import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    PAYLOAD_CONTENT,
    SECRET_EXTENSION,
)
from shared.auth import mint_token
from shared.devstack import free_port
from shared.fhir.subscription_topics import TASK_TOPIC
from shared.settings import ReferralSettings
from tests.conftest import settings_factory
from tests.integration.stack import InProcessServer, Stack, eventually, running_stack

FHIR_JSON = {"Content-Type": "application/fhir+json"}
#: Referral delivering fast: three failures make an error, retries at most 0.4 s apart.
FAST_DELIVERY = {
    "subscription_max_failures": 3,
    "subscription_retry_initial_s": 0.1,
    "subscription_max_backoff_s": 0.4,
    "subscription_worker_interval_s": 0.05,
    "subscription_delivery_timeout_s": 2.0,
}


@pytest.fixture(scope="module")
async def stack(
    broker: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    base = settings_factory(broker, redis_url, tmp_path_factory.mktemp("subscriptions"))

    def make(cls: type[Any], **overrides: Any) -> Any:
        if cls is ReferralSettings:
            overrides = {**FAST_DELIVERY, **overrides}
        return base(cls, **overrides)

    async with running_stack(make) as running:
        original = running.referral
        yield running
        if running.referral is not original:  # restarted by a test: stop the one running now
            await running.referral.stop()
            running.referral = original


# --- the clinic's endpoint ----------------------------------------------------------------------------


def events_of(bundle: dict[str, Any]) -> list[tuple[int, str]]:
    """(event number, focus reference) of each notification-event of a notification Bundle."""
    found = []
    for p in bundle["entry"][0]["resource"]["parameter"]:
        if p["name"] == "notification-event":
            parts = {part["name"]: part for part in p["part"]}
            focus = parts.get("focus", {}).get("valueReference", {}).get("reference", "")
            found.append((int(parts["event-number"]["valueString"]), focus))
    return found


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    #: What the endpoint answered.
    status: int

    @property
    def bundle(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.body)
        return loaded

    def param(self, name: str) -> Any:
        for p in self.bundle["entry"][0]["resource"]["parameter"]:
            if p["name"] == name:
                return next(v for k, v in p.items() if k.startswith("value"))
        return None

    @property
    def kind(self) -> str:
        return str(self.param("type"))

    @property
    def events(self) -> list[tuple[int, str]]:
        return events_of(self.bundle)


@dataclass
class ClinicEndpoint:
    """A rest-hook receiver on a free port: records every POST; answers 503 on the paths that
    are down."""

    received: list[Received] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    server: InProcessServer | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/{name}")
        async def hook(name: str, request: Request) -> Response:
            status = 503 if name in self.down else 200
            self.received.append(Received(name, dict(request.headers), await request.body(), status))
            return Response(status_code=status)

        return app

    def url(self, name: str) -> str:
        assert self.server is not None
        return f"{self.server.url}/hooks/{name}"

    def at(self, name: str) -> list[Received]:
        return [r for r in self.received if r.path == name]

    def notifications(self, name: str) -> list[Received]:
        """The event notifications the endpoint accepted."""
        return [r for r in self.at(name) if r.kind == "event-notification" and r.status == 200]


@pytest.fixture(scope="module")
async def clinic_endpoint() -> AsyncIterator[ClinicEndpoint]:
    endpoint = ClinicEndpoint()
    endpoint.server = InProcessServer(endpoint.app(), free_port())
    await endpoint.server.start()
    yield endpoint
    await endpoint.server.stop()


# --- helpers ------------------------------------------------------------------------------------------


async def created(http: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = await http.post(
        f"/fhir/{resource['resourceType']}", content=orjson.dumps(resource), headers={**FHIR_JSON, **headers}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def subscription(endpoint: str, *filters: str, content: str | None = None, **extra: Any) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"}
    if content:
        channel["_payload"] = {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": content}]}
    channel |= extra.pop("channel", {})
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Referrals addressed to the clinic",
        "criteria": TASK_TOPIC,
        "_criteria": {"extension": [{"url": FILTER_CRITERIA, "valueString": f} for f in filters]},
        "channel": channel,
        **extra,
    }


async def clinic(http: httpx.AsyncClient, name: str) -> str:
    return str(
        (await created(http, {"resourceType": "Organization", "name": f"{name} {uuid.uuid4().hex[:6]}"}))[
            "id"
        ]
    )


async def referral_task(http: httpx.AsyncClient, owner: str) -> dict[str, Any]:
    """A referral to `owner`: the ServiceRequest, and its Task (the one referral made for it, or,
    if it made none, one POSTed here as a Gravity Task for Referral Management)."""
    tag = uuid.uuid4().hex[:8]
    patient = await created(
        http, {"resourceType": "Patient", "name": [{"family": f"Notify{tag}", "given": ["Ari"]}]}
    )
    manager = await created(http, {"resourceType": "Practitioner", "name": [{"family": f"Manager{tag}"}]})
    request = await created(
        http,
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "code": {"text": "Housing navigation"},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "requester": {"reference": f"Practitioner/{manager['id']}"},
            "performer": [{"reference": f"Organization/{owner}"}],
        },
    )
    found = (await http.get("/fhir/Task", params={"focus": f"ServiceRequest/{request['id']}"})).json()
    if found.get("entry"):
        task: dict[str, Any] = found["entry"][0]["resource"]
        return task
    return await created(
        http,
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
            "focus": {"reference": f"ServiceRequest/{request['id']}"},
            "for": {"reference": f"Patient/{patient['id']}"},
            "owner": {"reference": f"Organization/{owner}"},
            "requester": {"reference": f"Practitioner/{manager['id']}"},
            "authoredOn": "2026-11-02T09:00:00+00:00",
        },
    )


async def move(stack: Stack, http: httpx.AsyncClient, task: dict[str, Any], status: str) -> dict[str, Any]:
    """The clinic (its own token, If-Match) moves its Task to `status`."""
    token = mint_token(
        stack.settings.jwt_hs256_secret,
        "user/Task.rus",
        organization=task["owner"]["reference"].split("/")[-1],
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "If-Match": f'W/"{task["meta"]["versionId"]}"',
        **FHIR_JSON,
    }
    body = {k: v for k, v in task.items() if k != "meta"} | {"status": status}
    response = await http.put(f"/fhir/Task/{task['id']}", content=orjson.dumps(body), headers=headers)
    assert response.status_code == 200, response.text
    moved: dict[str, Any] = response.json()
    return moved


async def subscription_status(http: httpx.AsyncClient, subscription_id: str) -> str:
    return str((await http.get(f"/fhir/Subscription/{subscription_id}")).json()["status"])


def secret_of(subscription: dict[str, Any]) -> str:
    return str(next(e["valueString"] for e in subscription["extension"] if e["url"] == SECRET_EXTENSION))


# --- tests ------------------------------------------------------------------------------------------


async def test_the_clinic_gets_the_handshake_then_signed_id_only_notifications_for_its_referrals_only(
    stack: Stack, clinic_endpoint: ClinicEndpoint
) -> None:
    async with stack.client() as http:
        mine, other = await clinic(http, "Harbor Housing"), await clinic(http, "Elm Street Clinic")
        sub = await created(
            http,
            subscription(
                clinic_endpoint.url("id-only"),
                f"Task?owner=Organization/{mine}",
                channel={"header": ["X-Clinic-Key: harbor-7"]},
            ),
        )
        assert sub["status"] == "requested"
        secret = secret_of(sub)  # made by the server, shown once
        assert "extension" not in (await http.get(f"/fhir/Subscription/{sub['id']}")).json()

        await eventually(lambda: _async(clinic_endpoint.at("id-only")))
        handshake = clinic_endpoint.at("id-only")[0]
        assert handshake.kind == "handshake"
        assert handshake.param("events-since-subscription-start") == "0"
        assert signature_valid(secret, handshake.body, handshake.headers[SIGNATURE_HEADER.lower()])
        assert handshake.headers["x-clinic-key"] == "harbor-7"
        assert handshake.headers["content-type"] == "application/fhir+json"
        await eventually(lambda: _is(http, sub["id"], "active"))

        await referral_task(http, other)  # not the clinic's: no notification
        task = await referral_task(http, mine)
        await eventually(lambda: _async(clinic_endpoint.notifications("id-only")))
        [note] = clinic_endpoint.notifications("id-only")
        assert note.events == [
            (1, f"{stack.referral.runtime.settings.subscription_fhir_base_url}/Task/{task['id']}")
        ]
        assert note.param("events-since-subscription-start") == "1"
        assert note.param("status") == "active"
        assert signature_valid(secret, note.body, note.headers[SIGNATURE_HEADER.lower()])
        assert not signature_valid(secret, note.body + b" ", note.headers[SIGNATURE_HEADER.lower()])
        entry = note.bundle["entry"][1]
        assert "resource" not in entry  # id-only: the clinic reads the Task with its own token
        assert entry["fullUrl"].endswith(f"/Task/{task['id']}")
        assert entry["request"] == {"method": "POST", "url": "Task"}


async def test_full_resource_notifications_carry_the_task_at_its_version(
    stack: Stack, clinic_endpoint: ClinicEndpoint
) -> None:
    async with stack.client() as http:
        mine = await clinic(http, "Harbor Housing")
        secret = "harbor-housing-webhook-secret-2026"
        sub = subscription(
            clinic_endpoint.url("full"), f"Task?owner=Organization/{mine}", content="full-resource"
        )
        sub["extension"] = [{"url": SECRET_EXTENSION, "valueString": secret}]
        sub = await created(http, sub)
        await eventually(lambda: _is(http, sub["id"], "active"))
        task = await referral_task(http, mine)
        task = await move(stack, http, task, "received")
        await eventually(lambda: _async(len(clinic_endpoint.notifications("full")) == 2))
        first, second = clinic_endpoint.notifications("full")
        assert [first.events[0][0], second.events[0][0]] == [1, 2]
        assert first.bundle["entry"][1]["resource"]["status"] == "requested"
        assert first.bundle["entry"][1]["resource"]["meta"]["versionId"] == "1"
        assert second.bundle["entry"][1]["resource"]["status"] == "received"
        assert second.bundle["entry"][1]["resource"]["meta"]["versionId"] == task["meta"]["versionId"]
        assert all(
            signature_valid(secret, n.body, n.headers[SIGNATURE_HEADER.lower()]) for n in (first, second)
        )


async def test_heartbeats_arrive_every_period_while_nothing_else_is_sent(
    stack: Stack, clinic_endpoint: ClinicEndpoint
) -> None:
    async with stack.client() as http:
        mine = await clinic(http, "Harbor Housing")
        beat = {"extension": [{"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 1}]}
        sub = await created(
            http, subscription(clinic_endpoint.url("beat"), f"Task?owner=Organization/{mine}", channel=beat)
        )
        await eventually(lambda: _async(len(clinic_endpoint.at("beat")) >= 3), timeout=10)
        kinds = [r.kind for r in clinic_endpoint.at("beat")]
        assert kinds[0] == "handshake" and set(kinds[1:]) == {"heartbeat"}
        assert (await http.delete(f"/fhir/Subscription/{sub['id']}")).status_code == 200  # beats stop


async def test_notifications_wait_while_the_endpoint_is_down_across_a_referral_restart_and_arrive_in_order(
    stack: Stack, clinic_endpoint: ClinicEndpoint
) -> None:
    name = "outage"
    async with stack.client() as http:
        mine = await clinic(http, "Harbor Housing")
        sub = await created(http, subscription(clinic_endpoint.url(name), f"Task?owner=Organization/{mine}"))
        await eventually(lambda: _is(http, sub["id"], "active"))
        task = await referral_task(http, mine)
        await eventually(lambda: _async(clinic_endpoint.notifications(name)))

        clinic_endpoint.down.add(name)
        for status in ("received", "accepted", "in-progress"):
            task = await move(stack, http, task, status)
        await eventually(lambda: _is(http, sub["id"], "error"), timeout=20)
        status = (await http.get(f"/fhir/Subscription/{sub['id']}/$status")).json()
        parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
        assert parameters["status"]["valueCode"] == "error"
        assert parameters["type"]["valueCode"] == "query-status"
        assert parameters["events-since-subscription-start"]["valueString"] == "4"
        assert parameters["error"]["valueCodeableConcept"]["coding"][0]["code"] == "error-response"
        failed = [r.events for r in clinic_endpoint.at(name) if r.status == 503]
        assert failed and all(events == [(2, failed[0][0][1])] for events in failed)  # event 2 retried, alone

    # The referral service stops with notifications 2..4 pending, and starts again on its database.
    settings = stack.referral.runtime.settings
    await stack.referral.stop()
    stack.referral = InProcessServer(referral_app(settings), stack.referral.port)
    await stack.referral.start()
    clinic_endpoint.down.discard(name)
    runtime = stack.referral.runtime

    async with stack.client() as http:
        await eventually(lambda: _async(len(clinic_endpoint.notifications(name)) >= 4), timeout=30)
        delivered = [number for note in clinic_endpoint.notifications(name) for number, _ in note.events]
        assert delivered == [1, 2, 3, 4]  # in order, no gap, none twice
        assert {focus for note in clinic_endpoint.notifications(name) for _, focus in note.events} == {
            f"{settings.subscription_fhir_base_url}/Task/{task['id']}"
        }
        await eventually(lambda: _is(http, sub["id"], "active"))
        history = (await http.get(f"/fhir/Subscription/{sub['id']}/_history")).json()
        statuses = [e["resource"]["status"] for e in reversed(history["entry"])]
        assert statuses == ["requested", "active", "error", "active"]
        # The restarted service's consumers are back (the next tests' Task events need them).
        await eventually(
            lambda: _async(runtime.runners and all(r.ready.is_set() for r in runtime.runners)), timeout=30
        )

        # $events replays what was sent, id-only as the subscription asks.
        replay = await http.get(
            f"/fhir/Subscription/{sub['id']}/$events",
            params={"eventsSinceNumber": "2", "eventsUntilNumber": "3"},
        )
        assert replay.status_code == 200, replay.text
        bundle = replay.json()
        assert bundle["type"] == "history"
        parameters = {
            p["name"]: p
            for p in bundle["entry"][0]["resource"]["parameter"]
            if p["name"] != "notification-event"
        }
        assert parameters["type"]["valueCode"] == "query-event"
        assert parameters["events-since-subscription-start"]["valueString"] == "4"
        assert [number for number, _ in events_of(bundle)] == [2, 3]
        assert [e["response"]["etag"] for e in bundle["entry"][1:]] == ['W/"2"', 'W/"3"']
        assert all("resource" not in e for e in bundle["entry"][1:])


async def test_events_replay_full_resources_at_the_versions_they_were_about(
    stack: Stack, clinic_endpoint: ClinicEndpoint
) -> None:
    async with stack.client() as http:
        mine = await clinic(http, "Harbor Housing")
        sub = await created(
            http,
            subscription(
                clinic_endpoint.url("replay"), f"Task?owner=Organization/{mine}", content="full-resource"
            ),
        )
        task = await referral_task(http, mine)
        for status in ("received", "accepted"):
            task = await move(stack, http, task, status)
        await eventually(lambda: _async(len(clinic_endpoint.notifications("replay")) == 3))
        replay = (await http.get(f"/fhir/Subscription/{sub['id']}/$events")).json()
        assert [e["resource"]["status"] for e in replay["entry"][1:]] == ["requested", "received", "accepted"]
        lean = (
            await http.get(f"/fhir/Subscription/{sub['id']}/$events", params={"content": "id-only"})
        ).json()
        assert all("resource" not in e for e in lean["entry"][1:])
        bad = await http.get(f"/fhir/Subscription/{sub['id']}/$events", params={"eventsSinceNumber": "two"})
        assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
        missing = await http.get("/fhir/Subscription/nope/$status")
        assert missing.status_code == 404


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("https://collector.example.net/hook", "allowlist"),
        ("http://10.20.30.40/hook", "https"),
    ],
)
async def test_an_endpoint_off_the_allowlist_is_422(stack: Stack, endpoint: str, says: str) -> None:
    async with stack.client() as http:
        response = await http.post(
            "/fhir/Subscription",
            content=orjson.dumps(subscription(endpoint, "Task?owner=Organization/x")),
            headers=FHIR_JSON,
        )
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    [issue] = outcome["issue"]
    assert issue["expression"] == ["Subscription.channel.endpoint"]
    assert says in issue["diagnostics"]


async def test_a_clinic_token_may_subscribe_only_to_its_own_referrals(
    stack: Stack, clinic_endpoint: ClinicEndpoint
) -> None:
    token = mint_token(stack.settings.jwt_hs256_secret, "user/Subscription.crs", organization="clinic-a")
    headers = {"Authorization": f"Bearer {token}"}
    async with stack.client() as http:
        others = subscription(clinic_endpoint.url("scoped"), "Task?owner=Organization/clinic-b")
        response = await http.post(
            "/fhir/Subscription", content=orjson.dumps(others), headers={**FHIR_JSON, **headers}
        )
        assert response.status_code == 403, response.text
        own = await created(
            http, subscription(clinic_endpoint.url("scoped"), "Task?owner=Organization/clinic-a"), **headers
        )
        assert (await http.get(f"/fhir/Subscription/{own['id']}/$status", headers=headers)).status_code == 200


# --- probes for eventually() ----------------------------------------------------------------------------


async def _async(value: Any) -> Any:
    return value


async def _is(http: httpx.AsyncClient, subscription_id: str, status: str) -> bool:
    return await subscription_status(http, subscription_id) == status
