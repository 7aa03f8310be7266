"""Resource lifecycle events: what a write puts in the outbox, in the same transaction.

The record key is the patient's logical id wherever there is a patient (DESIGN.md, Events), so
one patient's events stay in order on one partition.
"""

from __future__ import annotations

from typing import Any

import orjson

from shared.events import CloudEvent, topics
from shared.events.topics import Action
from shared.settings import ServiceSettings
from shared.store import StoredResource, Transaction
from shared.telemetry import kafka_headers_from_context

#: Where each resource type points at its patient (FHIR R4 compartment definitions,
#: http://hl7.org/fhir/R4/compartmentdefinition-patient.html, the subject/patient elements).
_PATIENT_REFERENCE_ELEMENTS = ("subject", "patient", "for", "beneficiary")


def patient_id_of(resource_type: str, resource: dict[str, Any]) -> str | None:
    if resource_type == "Patient":
        return resource.get("id")
    for element in _PATIENT_REFERENCE_ELEMENTS:
        ref = resource.get(element)
        if isinstance(ref, dict):
            text = ref.get("reference")
            if isinstance(text, str) and text.startswith("Patient/"):
                return text[len("Patient/") :].split("/", 1)[0]
    return None


async def enqueue_resource_event(
    tx: Transaction,
    settings: ServiceSettings,
    stored: StoredResource,
    action: Action,
    resource: dict[str, Any],
) -> CloudEvent:
    """Put the lifecycle event of a write into the outbox of the write's own transaction."""
    rtype = stored.resource_type
    if stored.deleted:
        # A deleted version has no content; consumers still need to know which version it was.
        body = orjson.dumps(
            {"resourceType": rtype, "id": stored.id, "meta": {"versionId": str(stored.version_id)}}
        )
    else:
        body = stored.content
    event = CloudEvent(
        type=topics.resource_event_type(rtype, action),
        source=f"carebridge/{settings.service_name}",
        subject=f"{rtype}/{stored.id}",
        data_bytes=body,
    )
    # A created Patient's id is the one just assigned, not whatever the client's body held.
    patient = stored.id if rtype == "Patient" else patient_id_of(rtype, resource)
    await tx.add_outbox(
        event_id=event.id,
        topic=settings.topic(topics.TOPIC_BY_RESOURCE_TYPE[rtype]),
        key=patient.encode() if patient else None,
        value=event.to_json(),
        headers=kafka_headers_from_context(),
    )
    return event


async def enqueue_domain_event(
    tx: Transaction,
    settings: ServiceSettings,
    *,
    topic: str,
    event_type: str,
    subject: str,
    key: str | None,
    data: Any,
    event_id: str | None = None,
    time: str | None = None,
) -> CloudEvent:
    """Put a service's own event (not a resource lifecycle event) in the outbox of `tx`: `topic`
    is the logical topic (topics.PATIENT, ...), `key` usually the patient id, so the event keeps
    its place among that patient's events."""
    extra: dict[str, Any] = {}
    if event_id is not None:
        extra["id"] = event_id
    if time is not None:
        extra["time"] = time
    event = CloudEvent(
        type=event_type, source=f"carebridge/{settings.service_name}", subject=subject, data=data, **extra
    )
    await tx.add_outbox(
        event_id=event.id,
        topic=settings.topic(topic),
        key=key.encode() if key else None,
        value=event.to_json(),
        headers=kafka_headers_from_context(),
    )
    return event
