"""Subscription notifications as plain data: the R4 notification Bundle and its
SubscriptionStatus Parameters, the `$status` answer, the HMAC signature and the retry schedule.
No I/O.

Sources (HL7 Subscriptions R5 Backport IG STU 1.1, repository HL7/fhir-subscription-backport-ig):
- input/fsh/BackportNotificationR4.fsh: every notification is a `history` Bundle whose first
  entry is a Parameters with profile `backport-subscription-status-r4`: `subscription`, `topic`,
  `status`, `type` (handshake | heartbeat | event-notification | query-status | query-event),
  `events-since-subscription-start` (a string), `notification-event` parts (`event-number`,
  `timestamp`, `focus`) and `error` (a CodeableConcept; codes of
  http://terminology.hl7.org/CodeSystem/subscription-error).
- notifications.md: history Bundles need `request` (bdl-3) and `response` (bdl-4) on every entry;
  entry[0].request mirrors a `$status` call; event entries may say POST/PUT on the resource.
- payloads.md: `empty` has no focus and no entries but the status; `id-only` has the focus and
  entries with fullUrl and request only; `full-resource` has the resources (and, when one cannot
  be included, request/response only).
- Operations.fsh: `$status` returns a `searchset` Bundle of status Parameters (type
  query-status); `$events` a `history` notification Bundle (type query-event).

Decisions:
- `events-since-subscription-start` in an event notification is the number of its last event,
  so a client that has seen every notification up to it has seen every event; handshakes,
  heartbeats and `$status` give the subscription's counter.
- Signature: header `X-CareBridge-Signature: sha256=<hex HMAC-SHA256 of the body bytes>` with the
  subscription's secret (as GitHub and Medplum sign webhooks). The body carries
  `Bundle.timestamp` and a fresh `Bundle.id`, so a receiver can refuse replays too.
- Retries: the n-th consecutive failure waits `initial * 2**(n-1)` seconds, capped at
  `max_backoff` (REFERRAL_SUBSCRIPTION_MAX_BACKOFF_S), and keeps trying at the cap: a clinic that
  comes back after a weekend gets its backlog (HAPI's retries giving up after about a minute is
  the cautionary tale, DOMAIN.md §3.5).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from shared.fhir.subscription_topics import BACKPORT

NOTIFICATION_PROFILE: Final = BACKPORT + "StructureDefinition/backport-subscription-notification-r4"
STATUS_PROFILE: Final = BACKPORT + "StructureDefinition/backport-subscription-status-r4"
ERROR_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/subscription-error"
SIGNATURE_HEADER: Final = "X-CareBridge-Signature"
SUBSCRIPTION_HEADER: Final = "X-CareBridge-Subscription"
SIGNATURE_SCHEME: Final = "sha256"

NotificationType = Literal["handshake", "heartbeat", "event-notification", "query-status", "query-event"]


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One event of a subscription: its number and the version of the resource it is about."""

    number: int
    occurred_at: datetime
    focus_type: str
    focus_id: str
    focus_version: int
    #: created | updated (shared.events.topics.Action)
    action: str

    @property
    def focus(self) -> str:
        return f"{self.focus_type}/{self.focus_id}"


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """What a notification says about its subscription."""

    subscription_id: str
    topic: str
    status: str
    events_since_start: int
    content: str
    #: The delivery error, when the last attempts failed: (subscription-error code, text).
    error: tuple[str, str] | None = None


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def status_parameters(
    base: str,
    state: SubscriptionState,
    kind: NotificationType,
    events: Sequence[NotificationEvent] = (),
    *,
    events_since_start: int | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus as R4 Parameters (profile backport-subscription-status-r4)."""
    since = state.events_since_start if events_since_start is None else events_since_start
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base}/Subscription/{state.subscription_id}"},
        },
    ]
    if state.content != "empty":  # the IG: topic SHOULD NOT be present with empty payloads
        parameters.append({"name": "topic", "valueCanonical": state.topic})
    parameters += [
        {"name": "status", "valueCode": state.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(since)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": _instant(event.occurred_at)},
        ]
        if state.content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{event.focus}"}})
        parameters.append({"name": "notification-event", "part": parts})
    if state.error is not None:
        code, text = state.error
        parameters.append(
            {
                "name": "error",
                "valueCodeableConcept": {"coding": [{"system": ERROR_SYSTEM, "code": code}], "text": text},
            }
        )
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def _status_entry(base: str, state: SubscriptionState, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{parameters['id']}",
        "resource": parameters,
        "request": {"method": "GET", "url": f"{base}/Subscription/{state.subscription_id}/$status"},
        "response": {"status": "200"},
    }


def _event_entry(
    base: str, event: NotificationEvent, content: str, resource: dict[str, Any] | None
) -> dict[str, Any]:
    created = event.action == "created"
    entry: dict[str, Any] = {
        "fullUrl": f"{base}/{event.focus}",
        "request": {
            "method": "POST" if created else "PUT",
            "url": event.focus_type if created else event.focus,
        },
        "response": {
            "status": "201" if created else "200",
            "etag": f'W/"{event.focus_version}"',
            "lastModified": _instant(event.occurred_at),
        },
    }
    if content == "full-resource" and resource is not None:
        entry["resource"] = resource
    return entry


def notification_bundle(
    base: str,
    state: SubscriptionState,
    kind: NotificationType,
    now: datetime,
    events: Sequence[NotificationEvent] = (),
    resources: Mapping[tuple[str, str, int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A notification (handshake, heartbeat, event-notification) or a `$events` answer
    (query-event). `resources` holds the focus versions for full-resource payloads, keyed by
    (type, id, version); a version missing there goes out as request/response only."""
    since = events[-1].number if events and kind == "event-notification" else None
    parameters = status_parameters(base, state, kind, events, events_since_start=since)
    entries = [_status_entry(base, state, parameters)]
    if state.content != "empty":
        held = resources or {}
        for event in events:
            resource = held.get((event.focus_type, event.focus_id, event.focus_version))
            entries.append(_event_entry(base, event, state.content, resource))
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": _instant(now),
        "entry": entries,
    }


def status_bundle(base: str, states: Sequence[SubscriptionState]) -> dict[str, Any]:
    """`$status`: a searchset Bundle of query-status Parameters, one per subscription."""
    entries = []
    for state in states:
        parameters = status_parameters(base, state, "query-status")
        entries.append(
            {"fullUrl": f"urn:uuid:{parameters['id']}", "resource": parameters, "search": {"mode": "match"}}
        )
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


# --- signing and retrying -----------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """The `X-CareBridge-Signature` value of a notification body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver checks (in constant time)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def retry_delay(failures: int, initial_s: float, max_s: float) -> timedelta:
    """How long to wait after the `failures`-th consecutive failure (1, 2, ...)."""
    exponent = min(max(failures - 1, 0), 30)
    return timedelta(seconds=min(initial_s * 2**exponent, max_s))


def delivery_error(status_code: int | None, detail: str) -> tuple[str, str]:
    """(subscription-error code, text) of a failed attempt: an HTTP answer other than 2xx is
    `error-response` (the actual status in the text, as the code system recommends); no answer
    is `no-response`, a name that does not resolve `dns-resolution-error`."""
    if status_code is not None:
        return "error-response", f"The endpoint answered HTTP {status_code}"
    if "name resolution" in detail.lower() or "name or service not known" in detail.lower():
        return "dns-resolution-error", detail
    return "no-response", detail
