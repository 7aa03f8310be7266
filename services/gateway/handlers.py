"""Event consumers of the gateway: it keeps the AuditEvents the services record.

Each handler runs inside the consumer's transaction, together with the inbox row that makes
it idempotent (see shared.events.consumer).
"""

from __future__ import annotations

from shared.errors import Gone, NotFound, PoisonMessage
from shared.events import CloudEvent, Handler, topics
from shared.fhir.rest import FhirRest
from shared.store import Transaction


def on_audit_event(rest: FhirRest) -> Handler:
    """Stores each AUDIT_RECORDED_EVENT's AuditEvent under its own id (a replay rewrites the
    same resource). The AuditEvents' own lifecycle events share the topic and are skipped."""

    async def handle(event: CloudEvent, tx: Transaction) -> None:
        if event.type != topics.AUDIT_RECORDED_EVENT:
            return
        audit = event.data
        if not isinstance(audit, dict) or audit.get("resourceType") != "AuditEvent" or not audit.get("id"):
            raise PoisonMessage("An audit event must carry an AuditEvent with an id")
        try:
            await tx.read("AuditEvent", audit["id"])
            return  # already kept: an AuditEvent is never rewritten
        except (NotFound, Gone):
            await rest.update(tx, "AuditEvent", audit["id"], audit)

    return handle
