"""The subscription topics CareBridge serves, by canonical URL: topic-based Subscriptions in R4 as
the HL7 Subscriptions R5 Backport IG defines them (STU 1.1, http://hl7.org/fhir/uv/subscriptions-backport/).

The service that owns Subscription (referral) applies the topics' rules
(services/referral/domain/subscriptions.py); its CapabilityStatement advertises them on the
Subscription entry with the IG's `capabilitystatement-subscriptiontopic-canonical` extension
(context CapabilityStatement.rest.resource, input/fsh/Capabilities.fsh), so the URLs live here,
where both can read them.
"""

from __future__ import annotations

from typing import Final

BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/"
#: Profile a topic-based Subscription follows (StructureDefinition-backport-subscription).
SUBSCRIPTION_PROFILE: Final = BACKPORT + "StructureDefinition/backport-subscription"
#: CapabilityStatement.rest.resource extension listing a topic the server supports.
TOPIC_CANONICAL_EXTENSION: Final = (
    BACKPORT + "StructureDefinition/capabilitystatement-subscriptiontopic-canonical"
)

#: Gravity SDOH Clinical Care IG (checking_task_status.html, "Task topic"): new Tasks and
#: changes to assigned or requested Tasks; filters owner, requester, status, code.
TASK_TOPIC: Final = "http://hl7.org/fhir/us/sdoh-clinicalcare/SubscriptionTopic/Task"
#: Gravity's "ServiceRequest topic" (same page): changes to a ServiceRequest an organization
#: fulfils. The IG spells the canonical with a lower-case "r"; it is kept as published.
SERVICE_REQUEST_TOPIC: Final = "http://hl7.org/fhir/us/sdoh-clinicalcare/SubscriptionTopic/Servicerequest"

TOPICS: Final = (TASK_TOPIC, SERVICE_REQUEST_TOPIC)
