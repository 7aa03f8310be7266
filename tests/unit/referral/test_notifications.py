"""Subscription notifications as data (services/referral/domain/notifications.py): the R4
notification Bundles of the Subscriptions Backport IG (handshake, heartbeat, event-notification
with each payload content, query-event, $status), checked with fhir.resources' R4B models and the
store's own validation; the HMAC signature; the retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from services.referral.domain.notifications import (
    NOTIFICATION_PROFILE,
    STATUS_PROFILE,
    NotificationEvent,
    SubscriptionState,
    delivery_error,
    notification_bundle,
    retry_delay,
    signature,
    signature_valid,
    status_bundle,
)
from shared.fhir.subscription_topics import TASK_TOPIC
from shared.fhir.validation import validate_resource

BASE = "https://carebridge.example.org/fhir"
NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
EVENTS = (
    NotificationEvent(7, NOW - timedelta(minutes=2), "Task", "t1", 3, "updated"),
    NotificationEvent(8, NOW - timedelta(minutes=1), "Task", "t2", 1, "created"),
)
TASK_T1_V3 = {
    "resourceType": "Task",
    "id": "t1",
    "meta": {"versionId": "3"},
    "status": "accepted",
    "intent": "order",
}


def state(content: str = "id-only", status: str = "active", **kw: Any) -> SubscriptionState:
    return SubscriptionState("sub1", TASK_TOPIC, status, kw.pop("since", 8), content, **kw)


def valid(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle passes the R4B model and the store's strict validation, and every history
    entry has request and response (bdl-3, bdl-4)."""
    get_fhir_model_class("Bundle").model_validate(bundle)
    validate_resource(orjson.loads(orjson.dumps(bundle)), "Bundle")
    if bundle["type"] == "history":
        assert all("request" in e and "response" in e for e in bundle["entry"])
        assert bundle["meta"]["profile"] == [NOTIFICATION_PROFILE]
    return bundle


def parameters(bundle: dict[str, Any]) -> dict[str, Any]:
    status = bundle["entry"][0]["resource"]
    assert status["resourceType"] == "Parameters"
    assert status["meta"]["profile"] == [STATUS_PROFILE]
    found: dict[str, Any] = {}
    for p in status["parameter"]:
        value = p.get("part") or next(v for k, v in p.items() if k.startswith("value"))
        found.setdefault(p["name"], []).append(value)
    return found


def test_the_handshake_is_a_history_bundle_with_the_status_first() -> None:
    bundle = valid(notification_bundle(BASE, state(status="requested", since=0), "handshake", NOW))
    assert len(bundle["entry"]) == 1
    first = bundle["entry"][0]
    assert first["request"] == {"method": "GET", "url": f"{BASE}/Subscription/sub1/$status"}
    got = parameters(bundle)
    assert got["subscription"] == [{"reference": f"{BASE}/Subscription/sub1"}]
    assert got["topic"] == [TASK_TOPIC]
    assert got["status"] == ["requested"]
    assert got["type"] == ["handshake"]
    assert got["events-since-subscription-start"] == ["0"]
    assert "notification-event" not in got


def test_a_heartbeat_carries_the_counter_and_no_event() -> None:
    bundle = valid(notification_bundle(BASE, state(since=12), "heartbeat", NOW))
    got = parameters(bundle)
    assert got["type"] == ["heartbeat"] and got["events-since-subscription-start"] == ["12"]
    assert len(bundle["entry"]) == 1


def test_an_id_only_notification_names_each_focus_and_carries_no_resource() -> None:
    bundle = valid(notification_bundle(BASE, state(since=20), "event-notification", NOW, EVENTS))
    got = parameters(bundle)
    # The number of its last event, not the counter: events 9..20 are still to come.
    assert got["events-since-subscription-start"] == ["8"]
    numbers = [
        [p["valueString"] for p in parts if p["name"] == "event-number"]
        for parts in got["notification-event"]
    ]
    assert numbers == [["7"], ["8"]]
    focus = [
        [p["valueReference"] for p in parts if p["name"] == "focus"] for parts in got["notification-event"]
    ]
    assert focus == [[{"reference": f"{BASE}/Task/t1"}], [{"reference": f"{BASE}/Task/t2"}]]
    updated, created = bundle["entry"][1:]
    assert updated == {
        "fullUrl": f"{BASE}/Task/t1",
        "request": {"method": "PUT", "url": "Task/t1"},
        "response": {"status": "200", "etag": 'W/"3"', "lastModified": "2026-11-02T09:28:00.000+00:00"},
    }
    assert created["request"] == {"method": "POST", "url": "Task"} and created["response"]["status"] == "201"


def test_a_full_resource_notification_carries_each_version_it_has() -> None:
    resources = {("Task", "t1", 3): TASK_T1_V3}
    bundle = valid(
        notification_bundle(BASE, state("full-resource"), "event-notification", NOW, EVENTS, resources)
    )
    assert bundle["entry"][1]["resource"] == TASK_T1_V3
    # A version that cannot be included goes out as request and response only (payloads.md).
    assert "resource" not in bundle["entry"][2] and bundle["entry"][2]["request"]["method"] == "POST"


def test_an_empty_notification_has_no_focus_no_topic_and_no_entries() -> None:
    bundle = valid(notification_bundle(BASE, state("empty"), "event-notification", NOW, EVENTS))
    got = parameters(bundle)
    assert len(bundle["entry"]) == 1
    assert "topic" not in got
    assert all(p["name"] != "focus" for parts in got["notification-event"] for p in parts)


def test_an_error_is_reported_as_a_subscription_error_code() -> None:
    errored = state(status="error", error=delivery_error(503, ""))
    got = parameters(valid(notification_bundle(BASE, errored, "heartbeat", NOW)))
    [error] = got["error"]
    assert error["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/subscription-error", "code": "error-response"}
    ]
    assert "503" in error["text"]
    assert delivery_error(None, "ConnectTimeout: timed out")[0] == "no-response"
    assert (
        delivery_error(None, "ConnectError: [Errno -2] Name or service not known")[0]
        == "dns-resolution-error"
    )


def test_status_is_a_searchset_of_query_status_parameters() -> None:
    bundle = valid(status_bundle(BASE, [state(status="error", since=5, error=("no-response", "timed out"))]))
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    got = parameters(bundle)
    assert got["type"] == ["query-status"]
    assert got["status"] == ["error"]
    assert got["events-since-subscription-start"] == ["5"]


def test_a_replay_is_a_query_event_bundle() -> None:
    bundle = valid(notification_bundle(BASE, state(since=30), "query-event", NOW, EVENTS))
    got = parameters(bundle)
    assert got["type"] == ["query-event"]
    assert got["events-since-subscription-start"] == ["30"]
    assert len(bundle["entry"]) == 3


# --- signing and retrying ---------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_the_body_in_hex() -> None:
    body = b'{"resourceType":"Bundle"}'
    # Computed independently with openssl:
    # printf '%s' '{"resourceType":"Bundle"}' | openssl dgst -sha256 -hmac kkkkkkkkkkkkkkkk
    expected = "sha256=ed23968140926e2f3979dd893d907cb02fc154a89c6a0857154fca152632ceee"
    assert signature("k" * 16, body) == expected
    assert signature_valid("k" * 16, body, expected)
    assert not signature_valid("k" * 16, body + b" ", expected)
    assert not signature_valid("x" * 16, body, expected)
    assert not signature_valid("k" * 16, body, None)


@pytest.mark.parametrize(
    ("failures", "seconds"), [(1, 1), (2, 2), (3, 4), (6, 32), (9, 256), (10, 300), (500, 300)]
)
def test_retries_back_off_exponentially_up_to_the_cap(failures: int, seconds: float) -> None:
    assert retry_delay(failures, 1.0, 300.0) == timedelta(seconds=seconds)
