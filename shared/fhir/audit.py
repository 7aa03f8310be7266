"""AuditEvents a service records about what it did, for the gateway to keep (DESIGN.md,
Security: every read and write leaves an AuditEvent; the gateway owns them).

A service puts `AUDIT_RECORDED_EVENT` in its outbox, in the transaction of what it audits, so the
record exists exactly when the change does; the gateway stores it as an AuditEvent
(http://hl7.org/fhir/R4/auditevent.html) with the event id as its id, so a replay stores it once.
The gateway tells a service who is asking in ACTOR_HEADER (the token's subject).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.events import topics
from shared.fhir.events import enqueue_domain_event
from shared.settings import ServiceSettings
from shared.store import Transaction

#: Request header the gateway sets on what it forwards: the authenticated subject.
ACTOR_HEADER = "x-carebridge-actor"

#: http://dicom.nema.org/resources/ontology/DCM (R4 valueset-audit-event-type): 110110 Patient Record.
PATIENT_RECORD_EVENT = {
    "system": "http://dicom.nema.org/resources/ontology/DCM",
    "code": "110110",
    "display": "Patient Record",
}
#: R4 CodeSystem audit-entity-type 1 Person, 2 System Object.
_ENTITY_PERSON = {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}


async def record_audit(
    tx: Transaction,
    settings: ServiceSettings,
    *,
    action: str,
    subtype: str,
    actor: str,
    entities: Sequence[tuple[str, str]],
    patient: str | None,
    description: str | None = None,
) -> None:
    """Audit one action (`action`: C R U D E, R4 audit-event-action) named by `subtype` (e.g.
    "merge", "unmerge"), done by `actor`, on `entities` ((reference, role display) pairs)."""
    audit_id = uuid.uuid4().hex
    audit: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": audit_id,
        "type": PATIENT_RECORD_EVENT,
        "subtype": [{"system": "http://carebridge.example/fhir/CodeSystem/audit-subtype", "code": subtype}],
        "action": action,
        "recorded": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "outcome": "0",
        "agent": [{"who": {"display": actor}, "requestor": True}],
        "source": {"observer": {"display": f"carebridge/{settings.service_name}"}},
        "entity": [
            {"what": {"reference": reference}, "type": _ENTITY_PERSON, "description": role}
            for reference, role in entities
        ],
    }
    if description:
        audit["outcomeDesc"] = description
    await enqueue_domain_event(
        tx,
        settings,
        topic=topics.AUDIT,
        event_type=topics.AUDIT_RECORDED_EVENT,
        subject=f"AuditEvent/{audit_id}",
        key=patient,
        data=audit,
        event_id=audit_id,
    )
