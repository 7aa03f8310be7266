"""Topic-based Subscriptions as referral reads them (services/referral/domain/subscriptions.py,
subscription_endpoints.py):
the Backport IG R4 profile, the Gravity Task and ServiceRequest topics and their filters, the
endpoint allowlist, channel headers, the secret, and what a clinic may subscribe to. Synthetic
references only."""

from __future__ import annotations

from typing import Any

import pytest

from services.referral.domain import subscription_endpoints as endpoints
from services.referral.domain import subscriptions as rules
from services.referral.domain.subscriptions import (
    FILTER_CRITERIA,
    HEARTBEAT_PERIOD,
    MAX_COUNT,
    PAYLOAD_CONTENT,
    SECRET_EXTENSION,
    TIMEOUT,
)
from shared.errors import BusinessRuleViolation, Forbidden
from shared.fhir.subscription_topics import SERVICE_REQUEST_TOPIC, TASK_TOPIC
from shared.fhir.validation import validate_resource

ALLOWLIST = endpoints.parse_allowlist(
    "http://127.0.0.1,https://clinic.example.org/hooks,*.partner.example.org"
)


def subscription(*filters: str, topic: str = TASK_TOPIC, **channel: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Referrals addressed to the clinic",
        "criteria": topic,
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://clinic.example.org/hooks/carebridge",
            "payload": "application/fhir+json",
            **channel,
        },
    }
    if filters:
        body["_criteria"] = {"extension": [{"url": FILTER_CRITERIA, "valueString": f} for f in filters]}
    return body


def task(**overrides: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": "t1",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "focus": {"reference": "ServiceRequest/sr1"},
        "for": {"reference": "Patient/p1"},
        "requester": {"reference": "PractitionerRole/cm1"},
        "owner": {"reference": "Organization/clinic-1"},
        **overrides,
    }


def matches(sub: dict[str, Any], resource: dict[str, Any], action: str = "updated") -> bool:
    request = rules.read_subscription(sub)
    return rules.triggers(rules.TOPICS[request.topic], request.filters, action, resource)


# --- reading the Subscription ------------------------------------------------------------------------


def test_a_backport_subscription_is_read_with_its_channel_extensions() -> None:
    sub = subscription(
        "Task?owner=Organization/clinic-1",
        header=["Authorization: Bearer abc", "X-Clinic: north"],
        _payload={"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "full-resource"}]},
        extension=[
            {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 60},
            {"url": TIMEOUT, "valueUnsignedInt": 5},
            {"url": MAX_COUNT, "valuePositiveInt": 20},
        ],
    )
    validate_resource(sub, "Subscription")
    request = rules.read_subscription(sub)
    assert request.topic == TASK_TOPIC
    assert request.filters == (rules.Filter("owner", ("Organization/clinic-1",)),)
    assert request.content == "full-resource"
    assert request.headers == (("Authorization", "Bearer abc"), ("X-Clinic", "north"))
    assert (request.heartbeat_s, request.timeout_s, request.max_count) == (60, 5, 20)


def test_the_payload_is_id_only_unless_asked_otherwise() -> None:
    request = rules.read_subscription(subscription())
    assert request.content == "id-only"
    assert request.max_count == 1
    assert request.heartbeat_s is None


def test_gravitys_servicerequest_topic_is_accepted_in_either_spelling() -> None:
    spelled = "http://hl7.org/fhir/us/sdoh-clinicalcare/SubscriptionTopic/ServiceRequest"
    assert rules.read_subscription(subscription(topic=spelled)).topic == SERVICE_REQUEST_TOPIC
    assert rules.read_subscription(subscription(topic=SERVICE_REQUEST_TOPIC)).topic == SERVICE_REQUEST_TOPIC


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"criteria": "Task?status=requested"}, "Unsupported topic"),
        ({"criteria": "http://example.org/SubscriptionTopic/admission"}, "Unsupported topic"),
        ({"channel": {"type": "websocket", "payload": "application/fhir+json"}}, "rest-hook"),
        (
            {
                "channel": {
                    "type": "rest-hook",
                    "endpoint": "https://clinic.example.org/hooks",
                    "payload": "text/plain",
                }
            },
            "Unsupported payload",
        ),
        (
            {
                "channel": {
                    "type": "rest-hook",
                    "endpoint": "https://clinic.example.org/hooks",
                    "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": "everything"}]},
                }
            },
            "payload content",
        ),
        ({"channel": {"type": "rest-hook", "payload": "application/fhir+json"}}, "channel.endpoint"),
    ],
)
def test_what_the_server_does_not_support_is_rejected(change: dict[str, Any], says: str) -> None:
    with pytest.raises(BusinessRuleViolation) as caught:
        rules.read_subscription({**subscription(), **change})
    assert says in caught.value.diagnostics


@pytest.mark.parametrize(
    "criteria",
    [
        "Task?focus=ServiceRequest/sr1",
        "ServiceRequest?status=active",
        "Task?owner:missing=true",
        "Task?owner=",
        "Task?",
    ],
)
def test_filters_the_topic_cannot_apply_are_rejected(criteria: str) -> None:
    with pytest.raises(BusinessRuleViolation, match="Unsupported filter criteria"):
        rules.read_subscription(subscription(criteria))


def test_heartbeat_timeout_and_max_count_must_be_sensible() -> None:
    for extension in (
        {"url": HEARTBEAT_PERIOD, "valueUnsignedInt": 0},
        {"url": TIMEOUT, "valueUnsignedInt": 0},
        {"url": MAX_COUNT, "valuePositiveInt": 1000},
    ):
        with pytest.raises(BusinessRuleViolation):
            rules.read_subscription(subscription(extension=[extension]))


@pytest.mark.parametrize(
    "header",
    [
        "no colon here",
        "Content-Type: text/plain",
        "X-CareBridge-Signature: sha256=forged",
        "Bad Name: x",
        "X-A: a\r\nX-B: b",
    ],
)
def test_channel_headers_must_be_well_formed_and_not_the_servers_own(header: str) -> None:
    with pytest.raises(BusinessRuleViolation):
        rules.read_subscription(subscription(header=[header]))


def test_the_secret_is_taken_out_of_the_resource() -> None:
    sub = subscription(extension=None) | {"extension": [{"url": SECRET_EXTENSION, "valueString": "s" * 32}]}
    stripped, secret = rules.take_secret(sub)
    assert secret == "s" * 32
    assert "extension" not in stripped
    assert rules.take_secret(subscription()) == (subscription(), None)
    with pytest.raises(BusinessRuleViolation):
        rules.take_secret(sub | {"extension": [{"url": SECRET_EXTENSION, "valueString": "short"}]})


# --- filters and the topics' own tests --------------------------------------------------------------


def test_the_task_topic_matches_by_owner_in_any_reference_form() -> None:
    assert matches(subscription("Task?owner=Organization/clinic-1"), task())
    assert matches(subscription("owner=clinic-1"), task())
    assert matches(
        subscription("Task?owner=Organization/clinic-1"),
        task(owner={"reference": "https://x.example/fhir/Organization/clinic-1"}),
    )
    assert not matches(subscription("Task?owner=Organization/clinic-2"), task())
    assert not matches(subscription("Task?owner=Practitioner/clinic-1"), task())


def test_filters_are_anded_and_values_ored() -> None:
    sub = subscription("Task?owner=Organization/clinic-1", "Task?status=accepted,in-progress")
    assert matches(sub, task(status="accepted"))
    assert matches(sub, task(status="in-progress"))
    assert not matches(sub, task(status="requested"))
    assert not matches(sub, task(status="accepted", owner={"reference": "Organization/clinic-2"}))


def test_token_filters_take_systems_and_the_not_modifier() -> None:
    fulfil = "http://hl7.org/fhir/CodeSystem/task-code|fulfill"
    assert matches(subscription(f"Task?code={fulfil}"), task())
    assert matches(subscription("Task?code=fulfill"), task())
    assert not matches(subscription("Task?code=http://other.example|fulfill"), task())
    assert not matches(subscription("Task?code=|fulfill"), task())
    assert matches(subscription("Task?status:not=completed"), task())
    assert not matches(subscription("Task?status:not=requested"), task())


def test_the_task_topic_follows_gravitys_trigger() -> None:
    sub = subscription("Task?owner=Organization/clinic-1")
    assert matches(sub, task(), "created")
    assert not matches(sub, task(status="draft"), "created")  # status:not=draft
    assert not matches(sub, task(intent="plan"), "updated")  # intent=order
    assert not matches(sub, task(), "deleted")
    assert not matches(sub, {**task(), "resourceType": "ServiceRequest"})


def test_the_servicerequest_topic_reports_changes_to_requests_a_clinic_performs() -> None:
    request = {
        "resourceType": "ServiceRequest",
        "id": "sr1",
        "status": "revoked",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "HealthcareService/hs1"}, {"reference": "Organization/clinic-1"}],
    }
    sub = subscription("ServiceRequest?performer=Organization/clinic-1", topic=SERVICE_REQUEST_TOPIC)
    assert matches(sub, request, "updated")
    assert not matches(sub, request, "created")  # Gravity: update (and delete) only
    assert matches(subscription("ServiceRequest?_id=sr1", topic=SERVICE_REQUEST_TOPIC), request)


def test_a_clinic_may_subscribe_only_to_its_own_referrals() -> None:
    own = rules.read_subscription(subscription("Task?owner=Organization/clinic-1"))
    rules.check_caller_scope(own, "clinic-1")
    rules.check_caller_scope(own, None)  # a case manager or the system: any filter
    for filters in (
        ("Task?owner=Organization/clinic-2",),
        ("Task?status=requested",),
        ("Task?owner=Organization/clinic-1,Organization/clinic-2",),
    ):
        with pytest.raises(Forbidden):
            rules.check_caller_scope(rules.read_subscription(subscription(*filters)), "clinic-1")
    performed = subscription("ServiceRequest?performer=Organization/clinic-1", topic=SERVICE_REQUEST_TOPIC)
    rules.check_caller_scope(rules.read_subscription(performed), "clinic-1")


# --- the endpoint allowlist -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:9000/hook",
        "https://127.0.0.1/hook",
        "https://clinic.example.org/hooks",
        "https://clinic.example.org/hooks/carebridge?token=1",
        "https://a.partner.example.org/anything",
        "https://a.b.partner.example.org:8443/x",
    ],
)
def test_allowed_endpoints(endpoint: str) -> None:
    endpoints.check_endpoint(endpoint, ALLOWLIST)


@pytest.mark.parametrize(
    ("endpoint", "says"),
    [
        ("http://clinic.example.org/hooks", "must use https"),
        ("http://a.partner.example.org/x", "must use https"),
        ("https://clinic.example.org/hooksevil", "allowlist"),
        ("https://clinic.example.org/other", "allowlist"),
        ("https://evil.example.org/hooks", "allowlist"),
        ("https://partner.example.org/x", "allowlist"),
        ("http://127.0.0.1.evil.example/x", "must use https"),
        ("https://user:pw@clinic.example.org/hooks", "credentials"),
        ("ftp://clinic.example.org/hooks", "absolute http(s) URL"),
        ("/relative/hook", "absolute http(s) URL"),
        ("http://[::1/x", "not a URL"),
    ],
)
def test_endpoints_off_the_allowlist_are_refused(endpoint: str, says: str) -> None:
    with pytest.raises(BusinessRuleViolation) as caught:
        endpoints.check_endpoint(endpoint, ALLOWLIST)
    assert says in caught.value.diagnostics
    assert caught.value.expression == ["Subscription.channel.endpoint"]


def test_an_allowlist_entry_with_a_port_allows_only_that_port() -> None:
    allowlist = endpoints.parse_allowlist("https://clinic.example.org:8443, localhost:9443")
    endpoints.check_endpoint("https://clinic.example.org:8443/x", allowlist)
    endpoints.check_endpoint("https://localhost:9443/x", allowlist)
    for endpoint in ("https://clinic.example.org/x", "https://localhost:9444/x", "http://localhost:9443/x"):
        with pytest.raises(BusinessRuleViolation):
            endpoints.check_endpoint(endpoint, allowlist)


def test_an_empty_allowlist_allows_nothing_and_a_bad_entry_is_a_configuration_error() -> None:
    with pytest.raises(BusinessRuleViolation):
        endpoints.check_endpoint("https://clinic.example.org/hooks", endpoints.parse_allowlist(" , "))
    with pytest.raises(ValueError, match="not an http"):
        endpoints.parse_allowlist("ftp://clinic.example.org")
