"""Topic-based Subscriptions on referral's Tasks and ServiceRequests: what a Subscription asks
for and whether a change matches it. No I/O. (Which endpoints may receive notifications:
subscription_endpoints.py; the notifications themselves: notifications.py.)

Sources:
- HL7 Subscriptions R5 Backport IG, STU 1.1 (http://hl7.org/fhir/uv/subscriptions-backport/;
  repository HL7/fhir-subscription-backport-ig): the R4 profile `backport-subscription`
  (input/fsh/BackportSubscription.fsh): `criteria` holds the topic canonical, filters are
  `backport-filter-criteria` extensions on it, ANDed; `channel.payload` carries
  `backport-payload-content` (empty | id-only | full-resource); `backport-heartbeat-period`,
  `backport-timeout` and `backport-max-count` sit on `channel`; `backport-channel-type` names
  channels R4 lacks. conformance.md: a server SHALL reject a Subscription whose topic, filter,
  channel or payload it does not support. channels.md: rest-hook Subscriptions start
  `requested`, each `channel.header` is sent as an HTTP header, and plain HTTP endpoints should
  be refused in production.
- Gravity SDOH Clinical Care IG, checking_task_status.html: the Task topic (create and update of
  Tasks with `status:not=draft&intent=order`; filters `owner`, `requester`, `status`, `code`) and
  the ServiceRequest topic (update; filter `_id`). CareBridge also lets the ServiceRequest topic
  filter by `performer`, `requester` and `status`, so a clinic can follow the requests it performs.

Decisions (where the IGs leave room):
- Deletions notify nobody: Gravity says delete "is not an expected action", and a deletion has no
  content left to filter on.
- The payload defaults to `id-only` (minimum necessary for mental-health data, DOMAIN.md §3.5);
  only `application/fhir+json` (or `application/json`) bodies are sent.
- A client's token that names a clinic (organization claim) may subscribe only to what is its
  own: a filter `owner=` or `requester=` (Task), `performer=` or `requester=` (ServiceRequest)
  naming exactly its Organization.
- The HMAC secret a client gives (`SECRET_EXTENSION`) is taken out of the resource before it is
  stored, so it is never in the resource's history or on the bus (see notifications.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from shared.errors import BusinessRuleViolation, Forbidden
from shared.fhir.subscription_topics import BACKPORT, SERVICE_REQUEST_TOPIC, TASK_TOPIC

FILTER_CRITERIA: Final = BACKPORT + "StructureDefinition/backport-filter-criteria"
PAYLOAD_CONTENT: Final = BACKPORT + "StructureDefinition/backport-payload-content"
HEARTBEAT_PERIOD: Final = BACKPORT + "StructureDefinition/backport-heartbeat-period"
TIMEOUT: Final = BACKPORT + "StructureDefinition/backport-timeout"
MAX_COUNT: Final = BACKPORT + "StructureDefinition/backport-max-count"
CHANNEL_TYPE: Final = BACKPORT + "StructureDefinition/backport-channel-type"
#: CareBridge's own: the shared secret notifications are signed with (HMAC-SHA256), a string of
#: 16 to 256 characters. Given on create or update, it is kept by referral and taken out of the
#: stored Subscription; without one, the server makes one and returns it once (notifications.py).
SECRET_EXTENSION: Final = "http://carebridge.example/fhir/StructureDefinition/subscription-secret"

Content = Literal["empty", "id-only", "full-resource"]
CONTENTS: Final[frozenset[str]] = frozenset({"empty", "id-only", "full-resource"})
JSON_PAYLOADS: Final = frozenset({"application/fhir+json", "application/json"})
#: Most events one notification carries when the client sets no `backport-max-count`, and the
#: most it may ask for.
DEFAULT_MAX_COUNT: Final = 1
MAX_MAX_COUNT: Final = 100
MIN_HEARTBEAT_S: Final = 1
MAX_FILTERS: Final = 10
MAX_HEADERS: Final = 10
MAX_HEADER_CHARS: Final = 1024
SECRET_MIN_CHARS, SECRET_MAX_CHARS = 16, 256
#: Headers the server sets itself; a channel.header may not replace them.
RESERVED_HEADERS: Final = frozenset(
    {"content-type", "content-length", "host", "connection", "transfer-encoding", "expect", "te", "upgrade"}
)
RESERVED_HEADER_PREFIX: Final = "x-carebridge-"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


# --- topics and their filters ------------------------------------------------------------------


def _reference_values(element: str) -> Callable[[dict[str, Any]], list[str]]:
    def read(resource: dict[str, Any]) -> list[str]:
        found = resource.get(element)
        refs = found if isinstance(found, list) else [found]
        return [r["reference"] for r in refs if isinstance(r, dict) and isinstance(r.get("reference"), str)]

    return read


def _code(resource: dict[str, Any], element: str) -> list[tuple[str | None, str]]:
    concept = resource.get(element)
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [
        (c.get("system"), c["code"])
        for c in codings or ()
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


@dataclass(frozen=True, slots=True)
class FilterParam:
    """How a filter reads the resource: `reference` values are `Type/id` references; `token`
    values are (system, code) pairs."""

    kind: Literal["reference", "token"]
    read: Callable[[dict[str, Any]], list[Any]]


_ID = FilterParam("token", lambda r: [(None, r["id"])] if isinstance(r.get("id"), str) else [])
_STATUS = FilterParam("token", lambda r: [(None, r["status"])] if isinstance(r.get("status"), str) else [])
_CODE = FilterParam("token", lambda r: _code(r, "code"))


@dataclass(frozen=True, slots=True)
class Topic:
    url: str
    resource_type: str
    #: Lifecycle actions that trigger it (shared.events.topics.Action).
    actions: frozenset[str]
    filters: Mapping[str, FilterParam]
    #: The topic's own test on the resource (Gravity's queryCriteria.current).
    current: Callable[[dict[str, Any]], bool]


TOPICS: Final[dict[str, Topic]] = {
    TASK_TOPIC: Topic(
        TASK_TOPIC,
        "Task",
        frozenset({"created", "updated"}),
        {
            "_id": _ID,
            "owner": FilterParam("reference", _reference_values("owner")),
            "requester": FilterParam("reference", _reference_values("requester")),
            "status": _STATUS,
            "code": _CODE,
        },
        # Gravity: resourceTrigger.queryCriteria.current = status:not=draft&intent=order
        lambda task: task.get("status") != "draft" and task.get("intent") == "order",
    ),
    SERVICE_REQUEST_TOPIC: Topic(
        SERVICE_REQUEST_TOPIC,
        "ServiceRequest",
        frozenset({"updated"}),
        {
            "_id": _ID,
            "performer": FilterParam("reference", _reference_values("performer")),
            "requester": FilterParam("reference", _reference_values("requester")),
            "status": _STATUS,
            "code": _CODE,
        },
        lambda request: True,
    ),
}
#: Other spellings clients use for a topic, stored as the canonical one.
_TOPIC_ALIASES: Final = {
    "http://hl7.org/fhir/us/sdoh-clinicalcare/SubscriptionTopic/ServiceRequest": SERVICE_REQUEST_TOPIC,
}
#: Per filter key and topic, the clinic filters that make a Subscription the clinic's own.
_OWN_FILTERS: Final = {TASK_TOPIC: ("owner", "requester"), SERVICE_REQUEST_TOPIC: ("performer", "requester")}


def topics_for(resource_type: str) -> list[Topic]:
    return [t for t in TOPICS.values() if t.resource_type == resource_type]


@dataclass(frozen=True, slots=True)
class Filter:
    """One `name[:modifier]=v1,v2` test: any value matches (OR); filters are ANDed."""

    name: str
    values: tuple[str, ...]
    negated: bool = False

    def to_text(self) -> str:
        return f"{self.name}{':not' if self.negated else ''}={','.join(self.values)}"


def parse_filter_criteria(topic: Topic, text: str) -> list[Filter]:
    """`Task?owner=Organization/1&status=requested,accepted` (or without the `Task?`) as
    Filters; anything this topic cannot filter by is a BusinessRuleViolation."""
    query = text.strip()
    prefix, sep, rest = query.partition("?")
    if sep:
        if prefix != topic.resource_type:
            raise _unsupported_filter(f"{text!r} filters {prefix or 'nothing'}, not {topic.resource_type}")
        query = rest
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    if not pairs:
        raise _unsupported_filter(f"{text!r} has no filter")
    found = []
    for key, value in pairs:
        name, _, modifier = key.partition(":")
        param = topic.filters.get(name)
        if param is None:
            allowed = ", ".join(sorted(topic.filters))
            raise _unsupported_filter(f"the topic cannot be filtered by {name!r} (it can by {allowed})")
        if modifier not in ("", "not") or (modifier == "not" and param.kind != "token"):
            raise _unsupported_filter(f"the modifier :{modifier} is not supported on {name}")
        values = tuple(v.strip() for v in value.split(","))
        if not all(values):
            raise _unsupported_filter(f"{key} needs a value")
        found.append(Filter(name, values, negated=modifier == "not"))
    return found


def _unsupported_filter(why: str) -> BusinessRuleViolation:
    return BusinessRuleViolation(
        f"Unsupported filter criteria: {why}",
        expression=["Subscription.criteria"],
        issue_code="not-supported",
    )


def _reference_key(reference: str) -> tuple[str | None, str]:
    """(type, id) of `Type/id`, `[base]/Type/id[/_history/n]` or a bare `id`."""
    parts = [p for p in reference.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None, parts[-1] if parts else ""


def _reference_matches(wanted: str, actual: str) -> bool:
    wanted_type, wanted_id = _reference_key(wanted)
    actual_type, actual_id = _reference_key(actual)
    return wanted_id == actual_id and (wanted_type is None or wanted_type == actual_type)


def _token_matches(wanted: str, actual: tuple[str | None, str]) -> bool:
    system, code = actual
    if "|" not in wanted:
        return wanted == code
    wanted_system, _, wanted_code = wanted.partition("|")
    if not wanted_code:
        return wanted_system == (system or "")
    return wanted_code == code and (wanted_system or None) == system


def filter_matches(topic: Topic, flt: Filter, resource: dict[str, Any]) -> bool:
    param = topic.filters[flt.name]
    actual = param.read(resource)
    if param.kind == "reference":
        return any(_reference_matches(w, a) for w in flt.values for a in actual)
    hit = any(_token_matches(w, a) for w in flt.values for a in actual)
    return not hit if flt.negated else hit


def triggers(topic: Topic, filters: Sequence[Filter], action: str, resource: dict[str, Any]) -> bool:
    """Whether a lifecycle event (`action` on `resource`) is an event of this subscription."""
    if resource.get("resourceType") != topic.resource_type or action not in topic.actions:
        return False
    return topic.current(resource) and all(filter_matches(topic, f, resource) for f in filters)


# --- what a Subscription asks for ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """A Subscription as referral serves it, read from the resource."""

    topic: str
    filters: tuple[Filter, ...]
    status: str
    endpoint: str
    content_type: str
    content: Content
    #: (name, value) pairs from channel.header.
    headers: tuple[tuple[str, str], ...]
    heartbeat_s: int | None
    timeout_s: int | None
    max_count: int
    end: datetime | None


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    return [e for e in element.get("extension") or () if isinstance(e, dict) and e.get("url") == url]


def _one_value(element: Any, url: str, key: str, where: str) -> Any:
    found = _extensions(element, url)
    if not found:
        return None
    if len(found) > 1 or key not in found[0]:
        raise _rule(f"{where} takes one {url.rsplit('/', 1)[-1]} extension with {key}", where)
    return found[0][key]


def _rule(diagnostics: str, where: str, code: str = "business-rule") -> BusinessRuleViolation:
    return BusinessRuleViolation(diagnostics, expression=[where], issue_code=code)


def read_subscription(resource: dict[str, Any]) -> SubscriptionRequest:
    """What a (validated) Subscription asks for; BusinessRuleViolation (422) for anything the
    server does not support (Backport IG conformance: the server SHALL reject it)."""
    criteria = str(resource.get("criteria") or "")
    canonical = _TOPIC_ALIASES.get(criteria.split("|", 1)[0], criteria.split("|", 1)[0])
    topic = TOPICS.get(canonical)
    if topic is None:
        raise _rule(
            f"Unsupported topic {criteria!r}: Subscription.criteria must be one of {', '.join(TOPICS)}",
            "Subscription.criteria",
            "not-supported",
        )
    texts = [e.get("valueString") for e in _extensions(resource.get("_criteria"), FILTER_CRITERIA)]
    if any(not isinstance(t, str) for t in texts):
        raise _unsupported_filter("backport-filter-criteria needs a valueString")
    filters = tuple(f for text in texts for f in parse_filter_criteria(topic, str(text)))
    if len(filters) > MAX_FILTERS:
        raise _unsupported_filter(f"at most {MAX_FILTERS} filters")
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook" or _extensions(channel.get("_type"), CHANNEL_TYPE):
        raise _rule("Only the rest-hook channel is supported", "Subscription.channel.type", "not-supported")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise _rule("A rest-hook Subscription needs channel.endpoint", "Subscription.channel.endpoint")
    content_type = str(channel.get("payload") or "application/fhir+json")
    if content_type.split(";", 1)[0].strip().lower() not in JSON_PAYLOADS:
        raise _rule(
            f"Unsupported payload {content_type!r}: notifications are sent as application/fhir+json",
            "Subscription.channel.payload",
            "not-supported",
        )
    content = _one_value(
        channel.get("_payload"), PAYLOAD_CONTENT, "valueCode", "Subscription.channel.payload"
    )
    if content is None:
        content = "id-only"
    if content not in CONTENTS:
        raise _rule(
            f"Unsupported payload content {content!r}", "Subscription.channel.payload", "not-supported"
        )
    return SubscriptionRequest(
        topic=canonical,
        filters=filters,
        status=str(resource.get("status")),
        endpoint=endpoint,
        content_type=content_type,
        content=content,
        headers=parse_headers(channel.get("header") or []),
        heartbeat_s=_seconds(channel, HEARTBEAT_PERIOD, "valueUnsignedInt", MIN_HEARTBEAT_S),
        timeout_s=_seconds(channel, TIMEOUT, "valueUnsignedInt", 1),
        max_count=_max_count(channel),
        end=_end(resource),
    )


def _seconds(channel: dict[str, Any], url: str, key: str, least: int) -> int | None:
    value = _one_value(channel, url, key, "Subscription.channel")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise _rule(f"{url.rsplit('/', 1)[-1]} must be at least {least} second(s)", "Subscription.channel")
    return value


def _max_count(channel: dict[str, Any]) -> int:
    value = _one_value(channel, MAX_COUNT, "valuePositiveInt", "Subscription.channel")
    if value is None:
        return DEFAULT_MAX_COUNT
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_MAX_COUNT:
        raise _rule(f"backport-max-count must be 1 to {MAX_MAX_COUNT}", "Subscription.channel")
    return value


def _end(resource: dict[str, Any]) -> datetime | None:
    end = resource.get("end")
    if not isinstance(end, str):
        return None
    try:
        moment = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        raise _rule(f"Subscription.end {end!r} is not an instant", "Subscription.end") from None
    return moment if moment.tzinfo is not None else None


def parse_headers(lines: Sequence[Any]) -> tuple[tuple[str, str], ...]:
    """R4 `channel.header` strings ("Name: value") as pairs; reserved or malformed ones are 422."""
    if len(lines) > MAX_HEADERS:
        raise _rule(f"At most {MAX_HEADERS} channel headers", "Subscription.channel.header")
    pairs = []
    for line in lines:
        name, sep, value = str(line).partition(":")
        name, value = name.strip(), value.strip()
        if (
            not sep
            or not _HEADER_NAME.match(name)
            or len(str(line)) > MAX_HEADER_CHARS
            or any(c in value for c in "\r\n\0")
        ):
            raise _rule(f"channel.header {line!r} is not 'Name: value'", "Subscription.channel.header")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIX):
            raise _rule(
                f"channel.header may not set {name}: the server sets it", "Subscription.channel.header"
            )
        pairs.append((name, value))
    return tuple(pairs)


def take_secret(resource: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The resource without the secret extension, and the secret it carried (if any)."""
    given = [
        e for e in resource.get("extension") or () if isinstance(e, dict) and e.get("url") == SECRET_EXTENSION
    ]
    if not given:
        return resource, None
    secret = given[0].get("valueString")
    if (
        len(given) > 1
        or not isinstance(secret, str)
        or not SECRET_MIN_CHARS <= len(secret) <= SECRET_MAX_CHARS
    ):
        raise _rule(
            f"The subscription secret is one valueString of {SECRET_MIN_CHARS} to {SECRET_MAX_CHARS} "
            "characters",
            "Subscription.extension",
        )
    kept = [
        e for e in resource["extension"] if not (isinstance(e, dict) and e.get("url") == SECRET_EXTENSION)
    ]
    stripped = {k: v for k, v in resource.items() if k != "extension"}
    if kept:
        stripped["extension"] = kept
    return stripped, secret


def check_caller_scope(request: SubscriptionRequest, organization: str | None) -> None:
    """A clinic's token may subscribe only to the Tasks or ServiceRequests of its Organization
    (DESIGN.md, Security: a clinic sees only referrals addressed to it)."""
    if organization is None:
        return
    own = f"Organization/{organization}"
    for flt in request.filters:
        if (
            flt.name in _OWN_FILTERS[request.topic]
            and not flt.negated
            and len(flt.values) == 1
            and _reference_key(flt.values[0]) == ("Organization", organization)
        ):
            return
    names = " or ".join(f"{n}={own}" for n in _OWN_FILTERS[request.topic])
    raise Forbidden(
        f"A clinic may subscribe only to its own referrals: add the filter {names}",
        expression=["Subscription.criteria"],
    )
